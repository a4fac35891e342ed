"""Encoder and decoder GFLOP/s in onnxruntime vs the machine's float32 GEMM ceiling, same run.

    python benchmarks/model_flops.py [--threads 2] [--images 1024] [--runs 5] [--ceiling-size 4096]
        [--provider cpu|openvino] [--ceiling-python PYTHON]

FLOPs are counted from the torch model (2 x multiply-adds of every Conv, ConvTranspose and
Linear): the useful FLOPs, those of the direct form, whatever arrangement runs them. The 28x28
paper model's ``decoder_cpu.onnx`` (0.12.0) computes its first two transposed convolutions by
Winograd's F(5, 4) in fewer multiply-adds; the FLOPs it executes, counted from
`training.winograd_graph.WinogradDecoder`, are printed beside, with their rate. The ceiling is
the fastest 4096^3 float32 GEMM of numpy, onnxruntime and torch on the same ``--threads``, with
numpy's BLAS on the kernels of this CPU (`gemm_ceiling.gemm_ceiling`).
The share of onnxruntime's own 4096^3 MatMul, whose kernels run the models' products, is printed too.
Target (issues #5, #16): decoder >= 85% of the GEMM rate in fp32. The runtime's decoder on
``--provider`` (``decoder_cpu.onnx`` on onnxruntime's CPU provider; ``decoder.onnx`` on OpenVINO's,
which needs onnxruntime-openvino, and torch beside it for the FLOP count) is timed beside the plain
``decoder.onnx`` on onnxruntime's CPU provider at 256 codes per call.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np
import torch
from _common import median_time, paper_bundle
from deepsmote.runtime.bundle import CPU_DECODER_FILE, CPU_PROVIDER, default_decode_batch, load_bundle, open_models
from deepsmote.training.decoder_graph import cpu_decoder
from deepsmote.training.model import ModelConfig, build_models
from deepsmote.training.winograd_graph import WinogradConvTranspose, WinogradDecoder
from gemm_ceiling import gemm_ceiling
from torch import nn


def flops_per_image(module: nn.Module, example: torch.Tensor) -> float:
    """2 x multiply-adds of one image through ``module``."""
    total = 0.0

    def count(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Linear):
            total += 2.0 * layer.in_features * layer.out_features
        elif isinstance(layer, nn.Conv2d):
            total += 2.0 * output[0].numel() * layer.in_channels * np.prod(layer.kernel_size) / layer.groups
        elif isinstance(layer, nn.ConvTranspose2d):
            total += 2.0 * inputs[0][0].numel() * layer.out_channels * np.prod(layer.kernel_size) / layer.groups
        elif isinstance(layer, WinogradDecoder):  # its linear layer, as a product with buffers
            total += 2.0 * layer.linear_weight.numel()
        elif isinstance(layer, WinogradConvTranspose):
            total += 2.0 * winograd_multiply_adds(layer, inputs[0].shape[0])

    hooks = [m.register_forward_hook(count) for m in module.modules()]
    with torch.no_grad():
        module.eval()(example[:1])
    for hook in hooks:
        hook.remove()
    return total


def winograd_multiply_adds(layer: WinogradConvTranspose, side: int) -> int:
    """Multiply-adds per image of one Winograd layer: its four side transforms and its 64 products."""
    tiled, out = layer.tiling_in.shape[0], layer.out_side
    transforms = tiled * side * side * layer.c_in + tiled * tiled * side * layer.c_in
    transforms += out * tiled * tiled * layer.c_out + out * out * tiled * layer.c_out
    return transforms + tiled * tiled * layer.c_in * layer.c_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ceiling-size", type=int, default=4096, help="the GEMM ceiling's square size")
    parser.add_argument(
        "--provider", choices=("cpu", "openvino"), default="cpu", help="where the runtime's encoder and decoder run"
    )
    parser.add_argument(
        "--ceiling-python", default=sys.executable, help="the interpreter measuring the ceiling (default: this one)"
    )
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=300)
    parser.add_argument("--runs", type=int, default=1, help="ceiling-then-models runs; medians printed")
    args = parser.parse_args()
    bundle = load_bundle(paper_bundle(args.width, args.latent_dim))
    models = open_models(bundle, args.provider, args.threads)
    # Baseline in the same run: the plain decoder.onnx at the previous default of 256 per call.
    without_cpu_decoder = {name: digest for name, digest in bundle.manifest.files.items() if name != CPU_DECODER_FILE}
    plain = open_models(
        replace(bundle, manifest=replace(bundle.manifest, files=without_cpu_decoder)), "cpu", args.threads
    )
    encoder, decoder = build_models(ModelConfig(bundle.image_shape, args.width, args.latent_dim))
    rng = np.random.default_rng(0)
    n = args.images
    images = rng.uniform(-1, 1, (n, *bundle.image_shape)).astype(np.float32)
    codes = rng.standard_normal((n, bundle.latent_dim), dtype=np.float32)
    shape = bundle.image_shape
    torch.set_num_threads(args.threads)
    if models.provider == CPU_PROVIDER:
        print(f"onnxruntime: {args.threads} single-threaded sessions running batches concurrently")
    else:
        print(f"{models.provider}: one session on {args.threads} threads, its calls in turn")
    encode_flops = flops_per_image(encoder, torch.from_numpy(images))
    decode_flops = flops_per_image(decoder, torch.from_numpy(codes))
    arranged = cpu_decoder(decoder.eval())
    executed = None
    if models.decoder_file == CPU_DECODER_FILE and isinstance(arranged, WinogradDecoder):
        executed = flops_per_image(arranged, torch.from_numpy(codes))
        print(
            f"{CPU_DECODER_FILE} computes {decode_flops / 1e9:.3f} useful GFLOP/image (the direct form's) by Winograd "
            f"products: it executes {executed / 1e9:.3f} GFLOP/image ({decode_flops / executed:.2f}x fewer)"
        )
    cases = {
        f"encoder, batches of {models.encode_batch}": (encode_flops, lambda: models.encode(images)),
        f"{models.decoder_file} on {models.provider}, batches of {default_decode_batch(models.provider, shape)}": (
            decode_flops,
            lambda: models.decode(codes),
        ),
        f"decoder.onnx on {CPU_PROVIDER}, batches of 256": (decode_flops, lambda: plain.decode(codes, 256)),
    }
    runtime_decoder = list(cases)[1]
    ceilings: list[float] = []
    speed: dict[str, list[float]] = {name: [] for name in cases}
    share: dict[str, list[float]] = {name: [] for name in cases}
    for run in range(1, args.runs + 1):
        # Each run's ceiling is measured right before its models, as this machine's speed drifts.
        ceiling = gemm_ceiling(args.threads, args.ceiling_size, python=args.ceiling_python)
        ceilings.append(ceiling.rate)
        print(f"run {run}: {ceiling.describe()}")
        for name, (flops, call) in cases.items():
            seconds = median_time(call)
            rate = flops * n / seconds / 1e9
            speed[name].append(n / seconds)
            share[name].append(rate / ceiling.rate)
            print(
                f"  {name}: {flops / 1e9:.3f} GFLOP/image, {n / seconds:.0f} images/s, "
                f"{rate:.1f} GFLOP/s = {rate / ceiling.rate:.0%} of the GEMM ceiling "
                f"({rate / ceiling.onnxruntime:.0%} of onnxruntime's own MatMul)"
            )
            if executed is not None and name == runtime_decoder:
                done = executed * n / seconds / 1e9
                print(f"    executed: {done:.1f} GFLOP/s = {done / ceiling.rate:.0%} of the GEMM ceiling")
    if args.runs > 1:
        print(
            f"medians of {args.runs} runs (range): ceiling {np.median(ceilings):.1f} GFLOP/s "
            f"({min(ceilings):.1f}-{max(ceilings):.1f})"
        )
        for name in cases:
            print(
                f"  {name}: {np.median(speed[name]):.0f} images/s ({min(speed[name]):.0f}-{max(speed[name]):.0f}), "
                f"{np.median(share[name]):.0%} of the ceiling ({min(share[name]):.0%}-{max(share[name]):.0%})"
            )
        cpu, plain_name = runtime_decoder, list(cases)[2]
        ratios = np.array(speed[cpu]) / np.array(speed[plain_name])
        print(f"  the runtime's decoder / decoder.onnx on the CPU: median of per-run ratios {np.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
