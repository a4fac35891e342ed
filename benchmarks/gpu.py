"""GPU figures: decoder and end-to-end images/s on onnxruntime's CUDA provider, fp32 and fp16.

    python benchmarks/gpu.py --bundle DIR [--images 200000]

Decoder: images/s at several batch sizes (the best is the batch to use). End to end: the public
``DeepSMOTE`` API from uint8 images in memory to uint8 synthetic images in memory (encode,
k-NN, interpolation, decode). fp16 vs fp32: the largest difference of decoded pixels.
Target (issue #5): >= 100,000 images/s at paper size in fp16 on one H100.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, read_dataset
from deepsmote.runtime.bundle import load_bundle
from deepsmote.runtime.models import open_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--provider", default="cuda", help="cpu only to try the script out")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    rng = np.random.default_rng(0)
    probe = np.random.default_rng(1).standard_normal((256, bundle.latent_dim), dtype=np.float32)
    best: dict[str, int] = {}
    decoded = {}
    for precision in ("fp32", "fp16"):
        models = open_models(bundle, args.provider, precision=precision)
        print(f"{precision}: sessions on {models.provider}")
        rates = {}
        for batch in args.batches:
            codes = rng.standard_normal((batch * 4, bundle.latent_dim), dtype=np.float32)
            models.decode(codes[:batch], batch_size=batch)  # warm-up: cuDNN set-up for this shape
            start = time.perf_counter()
            models.decode(codes, batch_size=batch)
            rates[batch] = len(codes) / (time.perf_counter() - start)
            print(f"  decode batch {batch:6d}: {rates[batch]:10.0f} images/s")
        best[precision] = max(rates, key=rates.get)
        decoded[precision] = models.decode(probe)
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
        made = sum(len(x) for x, _ in sampler.iter_synthetic(data.images, data.labels))
        seconds = time.perf_counter() - start
        print(
            f"end to end {precision} (batch {best[precision]}): {made} images in {seconds:.1f} s = "
            f"{made / seconds:.0f} images/s on {sampler.provider_}"
        )


if __name__ == "__main__":
    main()
