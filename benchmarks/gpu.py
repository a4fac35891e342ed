"""GPU figures: decoder and end-to-end images/s on onnxruntime's CUDA provider, fp32 and fp16.

    python benchmarks/gpu.py --bundle DIR [--images 200000]

Decoder: images/s at several batch sizes, the median of ``--repeats`` calls of 4 batches each
(the best is the batch to use), as float32 images (``decode``) and as uint8 pixels converted on
the device by the pixel session (``decode_pixels``, what generation runs). fp32 is the baseline,
run as the runtime runs it: sessions from ``open_models(precision="fp32")``, whose CUDA settings
are ``CUDA_DETERMINISTIC`` of ``deepsmote.runtime.bundle.session`` (cuDNN's DEFAULT algorithms,
no TF32), against fp16 with ``CUDA_FAST``; the settings are read back from each decoder session
and printed. End to end: the public ``DeepSMOTE`` API from uint8 images in memory to uint8
synthetic images in memory, its fit (sessions, encoding, k-NN; the fp16 conversion too for a bundle
exported before 0.9.0, which has no ``decoder_fp16.onnx``) timed apart from
the generation (draws, interpolation, decoding, pixels), whose rate is compared with the
decoder's uint8 rate at the same batch. fp16 vs fp32: the largest difference of decoded pixels.
Targets: >= 100,000 images/s at paper size in fp16 on one H100 (issue #5); generation end to end
>= 70% of the decoder-only rate in fp16 (issue #16).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import median_time
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, read_dataset
from deepsmote.runtime.bundle import Models, load_bundle, open_models


def decoder_settings(models: Models) -> str:
    """The decoder session's settings that decide its speed and its bytes, read back from onnxruntime."""
    options: dict[str, Any] = models.decoder.get_provider_options().get(models.provider, {})
    shown = {key: options[key] for key in ("cudnn_conv_algo_search", "use_tf32") if key in options}
    shown["use_deterministic_compute"] = models.decoder.get_session_options().use_deterministic_compute
    return ", ".join(f"{key}={value}" for key, value in shown.items())


def decode_rate(models: Models, batch: int, repeats: int, rng: np.random.Generator) -> tuple[float, float]:
    """Decoder images/s in calls of 4 batches of ``batch`` codes, median of ``repeats`` (printed):
    float32 images back, and uint8 pixels back."""
    codes = rng.standard_normal((batch * 4, models.bundle.latent_dim), dtype=np.float32)
    # median_time's warm-up call takes cuDNN's set-up for this shape out of the timing.
    rate = len(codes) / median_time(lambda: models.decode(codes, batch), repeats)
    pixel_rate = len(codes) / median_time(lambda: models.decode_pixels(codes, batch), repeats)
    print(f"  decode batch {batch:6d}: {rate:10.0f} images/s as float32, {pixel_rate:10.0f} as uint8 pixels")
    return rate, pixel_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=3, help="timed decoder calls per batch size")
    parser.add_argument("--provider", default="cuda", help="cpu only to try the script out")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    rng = np.random.default_rng(0)
    probe = np.random.default_rng(1).standard_normal((256, bundle.latent_dim), dtype=np.float32)
    best: dict[str, int] = {}
    best_rate: dict[str, float] = {}
    pixel_rate: dict[str, float] = {}
    decoded = {}
    for precision in ("fp32", "fp16"):
        models = open_models(bundle, args.provider, precision=precision)
        print(
            f"{precision}: sessions on {models.provider}; decoder {decoder_settings(models)}; "
            f"pixels converted {'on the device' if models.pixels is not None else 'by numpy'}"
        )
        rates = {batch: decode_rate(models, batch, args.repeats, rng) for batch in args.batches}
        best[precision] = max(rates, key=lambda batch: rates[batch][0])
        best_rate[precision], pixel_rate[precision] = rates[best[precision]]
        decoded[precision] = models.decode(probe)
    print(
        f"decoder fp16 {best_rate['fp16']:.0f} images/s (batch {best['fp16']}) against the fp32 baseline "
        f"{best_rate['fp32']:.0f} (batch {best['fp32']}), same run: {best_rate['fp16'] / best_rate['fp32']:.2f}x"
    )
    print(
        f"fp16 vs fp32 decoded pixels: max abs diff {np.abs(decoded['fp16'] - decoded['fp32']).max():.2e} "
        f"(in [-1, 1]; one uint8 level is {2 / 255:.2e})"
    )
    data = read_dataset(fmnist_mini())
    per_class = args.images // 9
    strategy = {c: int(n) + per_class for c, n in enumerate(data.class_counts()) if c > 0}
    for precision in ("fp32", "fp16"):
        sampler = DeepSMOTE(
            args.bundle,
            sampling_strategy=strategy,
            random_state=0,
            provider=args.provider,
            batch_size=best[precision],
            shard_size=max(best[precision], 1000),
            precision=precision,
        )
        start = time.perf_counter()
        sampler.fit(data.images, data.labels)
        fitted = time.perf_counter()
        made = sum(len(x) for x, _ in sampler.iter_synthetic())
        seconds = time.perf_counter() - fitted
        rate = made / seconds
        print(
            f"end to end {precision} (batch {best[precision]}) on {sampler.provider_}: "
            f"fit {fitted - start:.2f} s, then "
            f"{made} images in {seconds:.2f} s = {rate:.0f} images/s = {rate / pixel_rate[precision]:.0%} of the "
            f"decoder's uint8 rate ({made / (seconds + fitted - start):.0f} images/s with the fit)"
        )


if __name__ == "__main__":
    main()
