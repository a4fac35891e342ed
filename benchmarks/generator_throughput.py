"""The resize-conv generator at 64x64x3 and 128x128x3 on the CPU: training, generation, decoder FLOP/s, memory.

    .venv/bin/python benchmarks/generator_throughput.py [--sizes 64 128] [--width 16] [--latent-dim 32]
        [--threads 2] [--train-images 1000] [--generate 2000] [--rss-images 6400 12800]

Images are made here, nothing is downloaded: Fashion-MNIST train images (``/work/shared/datasets``,
else the embedded subset, repeated) resized with Pillow's bilinear filter and tinted with a colour
per class plus a fixed RGB texture, written as raw IDX files (read in place, in batches). Per size:

- training: seconds per epoch of ``--train-images`` images (the trainer's own time, the default
  loss and penalty, batch 100, ``--threads`` torch threads), one epoch; the best checkpoint is
  exported as the bundle used below;
- decoder and encoder: GFLOP/s of the decoder graph and ``encoder.onnx`` as the runtime runs them
  (``open_models``, ``--threads`` single-threaded sessions: ``decoder_cpu.onnx``, the phase graph),
  FLOPs counted from the torch model (``model_flops.flops_per_image``) and, for the phase graph,
  as it computes them (:func:`phase_graph_flops_per_image`), as a fraction of the float32 GEMM
  ceiling measured in the same run on the same threads (``gemm_ceiling.gemm_ceiling``); and the
  plain ``decoder.onnx`` on the same sessions' settings;
- generation: ``deepsmote generate`` end to end in a fresh process (``--generate`` images of one
  class, WebDataset), images/s over the whole command and over its generation phase;
- memory (the largest size only): peak RSS (``VmHWM``) of that same command for DATA of each of
  ``--rss-images`` images, with the same number generated, against DATA's size in raw pixels.
"""

from __future__ import annotations

import argparse
import itertools
import json
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import FMNIST, median_time
from deepsmote.data import fmnist_mini
from deepsmote.runtime.bundle import DECODER_FILE, create_session, load_bundle, open_models
from deepsmote.runtime.readers import LabelledImages, read_dataset
from deepsmote.training.decoder_graph import PER_PHASE_MIN_CHANNELS
from deepsmote.training.export import export_bundle
from deepsmote.training.model import ModelConfig, build_models
from deepsmote.training.trainer import TrainConfig, train
from gemm_ceiling import gemm_ceiling
from model_flops import flops_per_image
from PIL import Image

CHUNK = 1000


def tints(classes: int) -> np.ndarray:
    """One RGB colour per class, float (classes, 3) in [0.3, 1]."""
    return np.random.default_rng(7).uniform(0.3, 1.0, (classes, 3))


def write_idx_set(folder: Path, side: int, count: int) -> tuple[Path, int]:
    """``count`` tinted RGB ``side`` x ``side`` images as raw IDX files: the images file and its pixel bytes."""
    source = read_dataset(FMNIST if FMNIST.exists() else fmnist_mini())
    texture = (np.random.default_rng(3).uniform(0.85, 1.0, (side, side, 3))).astype(np.float32)
    colours = tints(len(source.classes)).astype(np.float32)
    images_path = folder / f"rgb{side}-{count}-images-idx3-ubyte"  # a name per count: the sets are kept apart
    labels_path = folder / f"rgb{side}-{count}-labels-idx1-ubyte"
    picks = np.arange(count) % len(source.labels)
    with open(images_path, "wb") as images, open(labels_path, "wb") as labels:
        images.write(struct.pack(">I4I", 0x0804, count, side, side, 3))
        labels.write(struct.pack(">II", 0x0801, count))
        for start in range(0, count, CHUNK):
            chunk = picks[start : start + CHUNK]
            grey = [
                np.asarray(Image.fromarray(source.images[i]).resize((side, side), Image.Resampling.BILINEAR))
                for i in chunk
            ]
            rgb = np.stack(grey).astype(np.float32)[..., None] * colours[source.labels[chunk]][:, None, None] * texture
            images.write(np.clip(rgb, 0, 255).astype(np.uint8).tobytes())
            labels.write(source.labels[chunk].astype(np.uint8).tobytes())
    return images_path, count * side * side * 3


def train_and_export(data: Path, args: argparse.Namespace, work: Path) -> tuple[Path, float, int]:
    """Train one epoch on the first ``--train-images`` images; the bundle, seconds per epoch and images."""
    whole = read_dataset(data)
    keep = slice(0, args.train_images)
    subset = LabelledImages(whole.images[keep], whole.labels[keep], whole.classes)
    config = TrainConfig(epochs=1, width=args.width, latent_dim=args.latent_dim, device="cpu")
    files = train(subset, config, work / "run")
    history = torch.load(files.last, weights_only=True)["history"]
    seconds = float(np.mean([e["seconds"] for e in history]))
    bundle = work / "bundle"
    export_bundle(files.best, bundle, overwrite=True)
    return bundle, seconds, len(subset.labels)


def phase_graph_flops_per_image(decoder: torch.nn.Module, example: torch.Tensor) -> float:
    """2 x the multiply-adds of ``decoder_cpu.onnx`` per image: each upsampling and 3x3 conv as four 2x2 kernels.

    A stage of at least ``PER_PHASE_MIN_CHANNELS`` output channels runs each of its four phase
    convolutions over the unscaled (h, w) map, one output per input pixel; a narrower one runs them
    as one convolution of 4 x c_out channels over the map padded to (h + 1, w + 1) outputs. Either
    way with 2 x 2 taps (``training/decoder_graph.py``); the linear layer and the residual blocks
    count as in :func:`model_flops.flops_per_image`.
    """
    total = flops_per_image(decoder, example)
    layers = list(decoder.deconv)
    upsampled = [conv for before, conv in itertools.pairwise(layers) if isinstance(before, torch.nn.Upsample)]

    def recount(layer: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        _, height, width = inputs[0][0].shape
        total -= 2.0 * output[0].numel() * layer.in_channels * 9
        border = 0 if layer.out_channels >= PER_PHASE_MIN_CHANNELS else 1
        outputs = (height // 2 + border) * (width // 2 + border)
        total += 2.0 * outputs * 4 * layer.out_channels * layer.in_channels * 4

    hooks = [conv.register_forward_hook(recount) for conv in upsampled]
    with torch.no_grad():
        decoder.eval()(example[:1])
    for hook in hooks:
        hook.remove()
    return total


def model_rates(bundle_path: Path, args: argparse.Namespace) -> dict[str, float]:
    """GFLOP/s of the runtime's decoder and encoder, and the GEMM ceiling, same threads, same run."""
    bundle = load_bundle(bundle_path)
    models = open_models(bundle, "cpu", args.threads)
    encoder, decoder = build_models(ModelConfig(bundle.image_shape, args.width, args.latent_dim, arch="resize-conv"))
    rng = np.random.default_rng(0)
    n = args.flop_images
    codes = rng.standard_normal((n, bundle.latent_dim), dtype=np.float32)
    images = rng.uniform(-1, 1, (n, *bundle.image_shape)).astype(np.float32)
    decode_flops = flops_per_image(decoder, torch.from_numpy(codes))
    phase_flops = phase_graph_flops_per_image(decoder, torch.from_numpy(codes))
    encode_flops = flops_per_image(encoder, torch.from_numpy(images))
    # The same sessions' settings, running the plain graph.
    plain = replace(models, decoder=create_session(bundle.decoder_bytes, "cpu", 1)[0], decoder_file=DECODER_FILE)
    ceiling = gemm_ceiling(args.threads)
    decode_s = median_time(lambda: models.decode(codes), repeats=3)
    plain_s = median_time(lambda: plain.decode(codes), repeats=3)
    encode_s = median_time(lambda: models.encode(images), repeats=3)
    return {
        "ceiling": ceiling.rate,
        "ceiling_text": ceiling.describe(),
        "graph": models.decoder_file,
        "decode_gflop": decode_flops / 1e9,
        "decode_images_s": n / decode_s,
        "decode_rate": decode_flops * n / decode_s / 1e9,
        "phase_gflop": phase_flops / 1e9,
        "phase_rate": phase_flops * n / decode_s / 1e9,
        "plain_images_s": n / plain_s,
        "plain_rate": decode_flops * n / plain_s / 1e9,
        "encode_gflop": encode_flops / 1e9,
        "encode_images_s": n / encode_s,
        "encode_rate": encode_flops * n / encode_s / 1e9,
    }


# Runs `deepsmote generate` and prints the process's peak RSS (VmHWM) last on stderr. ru_maxrss of a
# child is no use here: Linux carries the high-water mark of the address space the child was forked
# from (this process, which holds torch and the training set) across exec.
PEAK_RSS_CHILD = """
import sys
from deepsmote.runtime.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exit_:
    code = exit_.code
with open("/proc/self/status") as status:
    print(next(line for line in status if line.startswith("VmHWM")).split()[1], file=sys.stderr)
sys.exit(code)
"""


def run_generate(bundle: Path, data: Path, out: Path, extra: int, threads: int) -> dict[str, float]:
    """``deepsmote generate`` in a fresh process: wall seconds, peak RSS and the summary's figures."""
    counts = np.bincount(read_dataset_labels(data))
    strategy = json.dumps({"0": int(counts[0]) + extra})
    start = time.perf_counter()
    result = subprocess.run(
        [
            *(sys.executable, "-c", PEAK_RSS_CHILD, "generate", str(bundle), str(data), "--out", str(out)),
            *("--format", "webdataset", "--strategy", strategy, "--threads", str(threads), "--quiet"),
            "--synthetic-only",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"generate failed: {result.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "wall": wall,
        "rss_mb": int(result.stderr.split()[-1]) / 1024,
        "generate_images_s": summary["images_per_s"],
        "fit_s": summary["timings_s"]["load_and_fit"],
    }


def read_dataset_labels(images: Path) -> np.ndarray:
    labels = images.with_name(images.name.replace("images-idx3", "labels-idx1"))
    return np.frombuffer(labels.read_bytes()[8:], dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--generate", type=int, default=2000, help="images each generate run makes")
    parser.add_argument("--flop-images", type=int, default=512, help="codes / images per FLOP/s timing")
    parser.add_argument("--rss-images", type=int, nargs="*", default=[6400, 12800])
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        print(
            f"resize-conv, width {args.width}, latent {args.latent_dim}, loss l1+ssim, penalty reference; "
            f"{args.threads} threads; torch {torch.__version__}"
        )
        for side in args.sizes:
            folder = work / f"s{side}"
            folder.mkdir(exist_ok=True)
            data, _ = write_idx_set(folder, side, args.train_images)
            bundle, epoch_s, trained = train_and_export(data, args, folder)
            print(
                f"{side}x{side}x3: training {epoch_s:.1f} s/epoch for {trained} images "
                f"({trained / epoch_s:.0f} images/s, {1000 * epoch_s / trained:.1f} s per 1,000 images)"
            )
            rates = model_rates(bundle, args)
            print(f"  {rates['ceiling_text']}")
            ceiling = rates["ceiling"]
            print(
                f"  decoder as the runtime runs it ({rates['graph']}): {rates['decode_images_s']:.0f} images/s; "
                f"{rates['decode_gflop']:.3f} GFLOP/image as trained: {rates['decode_rate']:.1f} GFLOP/s = "
                f"{rates['decode_rate'] / ceiling:.0%} of the GEMM ceiling; {rates['phase_gflop']:.3f} GFLOP/image "
                f"computed by the phase graph: {rates['phase_rate']:.1f} GFLOP/s = {rates['phase_rate'] / ceiling:.0%}"
            )
            print(
                f"  plain decoder.onnx, same sessions' settings: {rates['plain_images_s']:.0f} images/s, "
                f"{rates['plain_rate']:.1f} GFLOP/s = {rates['plain_rate'] / ceiling:.0%} of the GEMM ceiling; "
                f"the runtime's graph {rates['decode_images_s'] / rates['plain_images_s']:.2f}x its images/s"
            )
            print(
                f"  encoder: {rates['encode_gflop']:.3f} GFLOP/image, {rates['encode_images_s']:.0f} images/s, "
                f"{rates['encode_rate']:.1f} GFLOP/s = {rates['encode_rate'] / ceiling:.0%} of the GEMM ceiling"
            )
            made = run_generate(bundle, data, folder / "out", args.generate, args.threads)
            print(
                f"  generate {args.generate} images end to end: {made['wall']:.1f} s = "
                f"{args.generate / made['wall']:.0f} images/s (generation phase {made['generate_images_s']:.0f} "
                f"images/s; load and fit {made['fit_s']:.1f} s); peak RSS {made['rss_mb']:.0f} MB"
            )
            if side == max(args.sizes):
                for count in args.rss_images:
                    big, raw = write_idx_set(folder, side, count)
                    made = run_generate(bundle, big, folder / f"out{count}", args.generate, args.threads)
                    print(
                        f"  peak RSS, DATA of {count} images ({raw / 1e6:.0f} MB of pixels), {args.generate} "
                        f"generated: {made['rss_mb']:.0f} MiB = {made['rss_mb'] * 2**20 / raw:.0%} of DATA's size, "
                        f"{made['wall']:.1f} s (load and fit {made['fit_s']:.1f} s)"
                    )
                    big.unlink()


if __name__ == "__main__":
    main()
