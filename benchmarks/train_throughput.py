"""Training throughput: images/s and useful FLOP/s of a `deepsmote train` epoch against the authors'
loop and the float32 GEMM ceiling, same run, same images.

    python benchmarks/train_throughput.py [--arch paper|resize-conv] [--images 1900] [--rounds 3]
        [--precisions fp32,bf16] [--convs direct,winograd] [--threads 2] [--device cpu|cuda] [--ceiling-size 4096]

Images: the paper's 100:1 Fashion-MNIST training set (9,000 images; the embedded 900-image subset
where ../shared/datasets is missing), of which ``--images`` are kept in the set's class
proportions (the first images of each class). Cases, each run one epoch in turn per round so that
a slow spell of the machine slows them all alike, after one untimed warm-up epoch each:

- the authors' loop (`authors_training.py`: their model, MSE loss and penalty, their per-step
  numpy work and ``.item()`` reads), fp32;
- `deepsmote train` with ``--arch``'s model at width 64, latent 300 (``--arch paper`` with the
  paper's MSE loss and reference penalty: the authors' computation; ``resize-conv`` with its
  default loss), once per ``--precisions`` entry, and in fp32 once more per ``--convs`` entry
  besides ``direct`` (``winograd``: `--conv winograd`, the paper's 28x28 model on the CPU). Its
  epoch time is the trainer's own (the loop, without writing checkpoints); each timed epoch is a
  ``--resume`` of the run by one epoch.

Useful FLOPs are 2 x the multiply-adds of every Conv, ConvTranspose and Linear layer (BatchNorm,
activations, the loss and Adam not counted), per epoch: for each image of a batch the forward
pass of encoder and decoder, and their backward pass at twice the forward (weights' and inputs'
gradients) less the input gradient of the encoder's first layer, which no one needs; for each
image the penalty takes the encoder's forward pass, the decoder's forward pass and its backward
pass less the input gradient of its first layer (its codes carry no gradient). The penalty takes
``min(class size, batch)`` images of a class drawn each step, so an epoch's work depends on its
draws (+-15% at 19 steps), and the two loops draw from different generators: the printed count
assumes the expected draw, and each epoch's useful FLOPs are counted from the images its penalty
really took (counted in the authors' loop, and in `deepsmote train` through the cyclic shift its
penalty builds). The ratio against the authors' loop is the median of the per-round ratios of
useful FLOP/s, the same work per second; the ratio of seconds per epoch is printed beside it.
The authors' loop's FLOPs are always those of the paper's model, which it trains; with ``--arch
resize-conv`` the two loops train different models, so only the seconds compare their epochs. The
ceiling is `gemm_ceiling.py`'s float32 GEMM on the same threads (measured before the epochs; bf16
cases are quoted against that float32 ceiling too, and so are Winograd's, which computes the same
layers in fewer multiply-adds: their useful rate may pass the ceiling). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import paper_train_set
from authors_training import AuthorsTraining
from deepsmote.runtime.console import QUIET, set_verbosity
from deepsmote.runtime.pixels import to_model
from deepsmote.runtime.readers import LabelledImages
from deepsmote.training import loss as loss_module
from deepsmote.training.model import ModelConfig, build_models
from deepsmote.training.precision import cpu_has_amx, cpu_has_bf16
from deepsmote.training.trainer import TrainConfig, load_checkpoint, train
from gemm_ceiling import gemm_ceiling
from torch import nn

LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def layer_flops(module: nn.Module, example: torch.Tensor) -> list[float]:
    """2 x the multiply-adds of one image through each Conv, ConvTranspose and Linear, in call order."""
    flops: list[float] = []

    def count(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(layer, nn.Linear):
            flops.append(2.0 * layer.in_features * layer.out_features)
        elif isinstance(layer, nn.Conv2d):
            flops.append(2.0 * output[0].numel() * layer.in_channels * np.prod(layer.kernel_size) / layer.groups)
        elif isinstance(layer, nn.ConvTranspose2d):
            flops.append(2.0 * inputs[0][0].numel() * layer.out_channels * np.prod(layer.kernel_size) / layer.groups)

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, LAYERS)]
    with torch.no_grad():
        module.eval()(example[:2])
    for hook in hooks:
        hook.remove()
    return flops


def epoch_flops(config: ModelConfig, counts: np.ndarray, batch: int) -> tuple[float, dict[str, float]]:
    """Useful FLOPs of one epoch over images of these class ``counts`` (see the module docstring)."""
    encoder, decoder = build_models(config)
    encode = layer_flops(encoder, torch.zeros(2, *config.image_shape))
    decode = layer_flops(decoder, torch.zeros(2, config.latent_dim))
    e, d = sum(encode), sum(decode)
    n = int(counts.sum())
    steps = -(-n // batch)
    penalty_images = float(np.minimum(counts, batch).mean())
    per_batch_image = 3 * e - encode[0] + 3 * d
    per_penalty_image = e + 3 * d - decode[0]
    total = n * per_batch_image + steps * penalty_images * per_penalty_image  # the expected penalty draw
    parts = {
        "encoder forward": e,
        "decoder forward": d,
        "per batch image": per_batch_image,
        "per penalty image": per_penalty_image,
        "penalty images per step": penalty_images,
        "steps": steps,
    }
    return total, parts


def proportional_subset(data: LabelledImages, images: int) -> LabelledImages:
    """The first images of each class, ``images`` in all, in the set's class proportions (at least 2 each)."""
    counts = data.class_counts()
    keep_counts = np.maximum(np.round(counts * min(1.0, images / counts.sum())).astype(int), 2)
    keep = np.sort(np.concatenate([np.flatnonzero(data.labels == c)[:k] for c, k in enumerate(keep_counts)]))
    return LabelledImages(data.images[keep], data.labels[keep], data.classes)


class DeepSMOTECase:
    """`deepsmote train` one epoch at a time: the first call trains epoch 1, later calls resume by one."""

    def __init__(self, data: LabelledImages, config: TrainConfig, run_dir: Path) -> None:
        self.data, self.config, self.run_dir, self.epochs = data, config, run_dir, 0

    def epoch(self) -> tuple[float, float, int]:
        """Seconds of the epoch's loop (the trainer's own figure), its loss and its penalty's images."""
        self.epochs += 1
        taken: list[int] = []
        shift = loss_module.cyclic_shift
        # The penalty shifts the images it took by one: its length is their number.
        loss_module.cyclic_shift = lambda n: taken.append(n) or shift(n)
        try:
            files = train(self.data, replace(self.config, epochs=self.epochs), self.run_dir, resume=self.epochs > 1)
        finally:
            loss_module.cyclic_shift = shift
        entry = load_checkpoint(files.last)["history"][-1]
        return entry["seconds"], entry["loss"], sum(taken)


class AuthorsCase:
    """The authors' loop, timed around its epoch."""

    def __init__(self, data: LabelledImages, width: int, latent_dim: int) -> None:
        self.loop = AuthorsTraining(to_model(data.images), data.labels, width, latent_dim)

    def epoch(self) -> tuple[float, float, int]:
        before = self.loop.penalty_images
        began = time.perf_counter()
        loss = self.loop.epoch()
        return time.perf_counter() - began, loss, self.loop.penalty_images - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("paper", "resize-conv"), default="paper")
    parser.add_argument("--images", type=int, default=1900, help="images kept of the 9,000 (class proportions)")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per case")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ceiling-size", type=int, default=4096, help="the GEMM ceiling's square size")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precisions", default=None, help="comma-separated; default fp32 and bf16 where it runs")
    parser.add_argument(
        "--convs",
        default=None,
        help="comma-separated, for fp32; default direct, and winograd for --arch paper on the CPU",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_verbosity(QUIET)  # the trainer's per-epoch lines; this script prints its own
    device = torch.device(args.device)
    if args.precisions:
        precisions = args.precisions.split(",")
    elif device.type == "cuda":
        precisions = ["fp32", "bf16", "fp16"]
    else:
        precisions = ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    winograd_runs = args.arch == "paper" and device.type == "cpu"
    convs = args.convs.split(",") if args.convs else ["direct", "winograd"] if winograd_runs else ["direct"]

    data = proportional_subset(paper_train_set(), args.images)
    counts = data.class_counts()
    model = ModelConfig(data.image_shape, args.width, args.latent_dim, args.arch)
    flops, parts = epoch_flops(model, counts, 100)
    amx = cpu_has_amx()
    print(
        f"{len(data.images)} images (counts {counts.tolist()}), --arch {args.arch} width {args.width} "
        f"latent {args.latent_dim}, torch {torch.__version__} on {args.threads} threads, device {args.device}; "
        f"CPU bf16 instructions: {'yes' if cpu_has_bf16() else 'no'}, AMX: {'yes' if amx else 'no'}"
        + (" (bf16 keeps the encoder in float32 there)" if amx else "")
    )
    print(
        f"useful FLOPs per epoch {flops / 1e9:.1f} G = {flops / len(data.images) / 1e9:.3f} GFLOP/image: "
        f"encoder forward {parts['encoder forward'] / 1e6:.1f} MFLOP, decoder forward "
        f"{parts['decoder forward'] / 1e6:.1f} MFLOP; per batch image {parts['per batch image'] / 1e6:.1f} MFLOP "
        f"(forward + 2x backward, less the encoder's first input gradient), per penalty image "
        f"{parts['per penalty image'] / 1e6:.1f} MFLOP (encoder forward, decoder forward + backward less its "
        f"first input gradient) x {parts['penalty images per step']:.1f} images x {parts['steps']} steps"
    )
    # The authors' loop trains the paper's model whatever --arch is: its work is counted as such.
    authors_flops, authors_parts = epoch_flops(replace(model, arch="paper"), counts, 100)
    if args.arch != "paper":
        print(
            f"note: the authors' loop trains the paper's model ({authors_flops / len(data.images) / 1e9:.3f} "
            "GFLOP/image), so its images/s ratio compares two models; and the decoder's upsampling 3x3 "
            "convolutions are counted as written, while training computes them as phase convolutions with "
            "16/36 of those multiply-adds plus a border (training/phase.py), so the useful rate may pass the ceiling"
        )
    ceiling = gemm_ceiling(args.threads, args.ceiling_size) if device.type == "cpu" else None
    if ceiling is not None:
        print(ceiling.describe())

    loss, penalty = ("mse", "reference") if args.arch == "paper" else (TrainConfig.loss, TrainConfig.penalty)
    with tempfile.TemporaryDirectory() as scratch:
        cases: dict[str, AuthorsCase | DeepSMOTECase] = {
            "authors' loop, fp32": AuthorsCase(data, args.width, args.latent_dim)
        }
        variants = [(precision, "direct") for precision in precisions]
        variants += [("fp32", conv) for conv in convs if conv != "direct"]
        for precision, conv in variants:
            config = TrainConfig(
                width=args.width,
                latent_dim=args.latent_dim,
                arch=args.arch,
                loss=loss,
                penalty=penalty,
                device=args.device,
                precision=precision,  # type: ignore[arg-type]
                conv=conv,  # type: ignore[arg-type]
            )
            name = f"deepsmote train, {precision}" + (f", {conv}" if conv != "direct" else "")
            cases[name] = DeepSMOTECase(data, config, Path(scratch) / f"{precision}-{conv}")
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        rates: dict[str, list[float]] = {name: [] for name in cases}
        losses: dict[str, list[float]] = {name: [] for name in cases}
        for name, case in cases.items():
            warm, first_loss, _ = case.epoch()
            losses[name].append(first_loss)
            print(f"warm-up epoch, {name}: {warm:.1f} s, loss {first_loss:.4f}")
        for round_ in range(1, args.rounds + 1):
            report = []
            for name, case in cases.items():
                took, epoch_loss, penalty_images = case.epoch()
                counted = authors_parts if isinstance(case, AuthorsCase) else parts
                work = len(data.images) * counted["per batch image"] + penalty_images * counted["per penalty image"]
                seconds[name].append(took)
                rates[name].append(work / took / 1e9)
                losses[name].append(epoch_loss)
                report.append(f"{name} {took:.1f} s ({penalty_images} penalty images, {rates[name][-1]:.1f} GFLOP/s)")
            print(f"round {round_}: " + ", ".join(report))

    baseline = "authors' loop, fp32"
    print(f"medians of {args.rounds} epochs:")
    for name, values in seconds.items():
        median = statistics.median(values)
        rate = statistics.median(rates[name])
        ratio = statistics.median(r / b for b, r in zip(rates[baseline], rates[name], strict=True))
        time_ratio = statistics.median(b / s for b, s in zip(seconds[baseline], values, strict=True))
        share = f" = {rate / ceiling.rate:.0%} of the float32 GEMM ceiling" if ceiling is not None else ""
        print(
            f"  {name}: {median:.2f} s/epoch ({min(values):.2f}-{max(values):.2f}), "
            f"{len(data.images) / median:.0f} images/s, {rate:.1f} useful GFLOP/s{share}; "
            f"{ratio:.2f}x the authors' loop in useful FLOP/s ({time_ratio:.2f}x in seconds per epoch); "
            f"losses by epoch {', '.join(f'{v:.4f}' for v in losses[name])}"
        )


if __name__ == "__main__":
    main()
