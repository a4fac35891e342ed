"""Encoder and decoder GFLOP/s in onnxruntime vs the machine's float32 GEMM rate, same run.

    python benchmarks/model_flops.py [--threads 2] [--images 1024]

FLOPs are counted from the torch model (2 x multiply-adds of every Conv, ConvTranspose and
Linear). Target (issue #5): decoder >= 85% of the GEMM rate in fp32. The runtime's CPU decoder
(``decoder_cpu.onnx``) is timed beside the plain ``decoder.onnx``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from _common import gemm_rate, median_time, paper_bundle
from deepsmote.runtime.bundle import load_bundle
from deepsmote.runtime.models import CPU_DECODE_BATCH, open_models
from deepsmote.runtime.synthesis import ENCODE_BATCH
from deepsmote.training.model import ModelConfig, build_models
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

    hooks = [m.register_forward_hook(count) for m in module.modules()]
    with torch.no_grad():
        module.eval()(example[:1])
    for hook in hooks:
        hook.remove()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=300)
    args = parser.parse_args()
    bundle = load_bundle(paper_bundle(args.width, args.latent_dim))
    models = open_models(bundle, "cpu", args.threads)
    # Baseline in the same run: the plain decoder.onnx at the previous default of 256 per call.
    plain = open_models(replace(bundle, cpu_decoder_bytes=None), "cpu", args.threads)
    encoder, decoder = build_models(ModelConfig(bundle.image_shape, args.width, args.latent_dim))
    rng = np.random.default_rng(0)
    n = args.images
    images = rng.uniform(-1, 1, (n, *bundle.image_shape)).astype(np.float32)
    codes = rng.standard_normal((n, bundle.latent_dim), dtype=np.float32)
    torch.set_num_threads(args.threads)
    gemm = gemm_rate()
    print(f"numpy float32 GEMM 4096^3: {gemm:.1f} GFLOP/s ({args.threads} threads for onnxruntime)")
    encode_flops = flops_per_image(encoder, torch.from_numpy(images))
    decode_flops = flops_per_image(decoder, torch.from_numpy(codes))
    for name, flops, run in (
        (f"encoder, batches of {ENCODE_BATCH}", encode_flops, lambda: models.encode(images, ENCODE_BATCH)),
        (f"decoder_cpu.onnx, batches of {CPU_DECODE_BATCH}", decode_flops, lambda: models.decode(codes)),
        ("decoder.onnx, batches of 256", decode_flops, lambda: plain.decode(codes, 256)),
    ):
        seconds = median_time(run)
        rate = flops * n / seconds / 1e9
        print(
            f"{name}: {flops / 1e9:.3f} GFLOP/image, {n / seconds:.0f} images/s, "
            f"{rate:.1f} GFLOP/s = {rate / gemm:.0%} of GEMM"
        )


if __name__ == "__main__":
    main()
