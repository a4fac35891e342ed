"""End-to-end images/s of deepsmote vs the authors' pipeline on the same architecture, same run.

    python benchmarks/end_to_end.py [--images 50000] [--threads 2]

deepsmote: onnxruntime encode → k-NN → interpolation (kernels/: numba, numpy for small classes) →
onnxruntime decode (decoder_cpu.onnx) → uint8,
through the public ``DeepSMOTE`` API. Reference (the authors' GenerateSamples.py): torch eager
encode/decode, sklearn ``NearestNeighbors`` (k + 1, self included), numpy interpolation. Both
start from the paper's 100:1 FMNIST training set and make the same number of images per class
(classes 1-9); timing covers everything after the data is in memory and the models are loaded.
Also prints the largest difference between onnxruntime's and torch's decoded images for the
same codes (target: within 1e-4 of the fp32 model).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import paper_bundle, paper_train_set
from deepsmote.runtime import DeepSMOTE
from deepsmote.runtime.bundle import load_bundle, open_models
from deepsmote.runtime.pixels import from_model, to_model
from deepsmote.training.trainer import load_checkpoint, models_from_checkpoint
from sklearn.neighbors import NearestNeighbors


def reference_pipeline(encoder, decoder, images, labels, per_class: dict[int, int], seed: int) -> list[np.ndarray]:
    """The authors' generation loop, batched for memory like ours."""
    rng = np.random.default_rng(seed)
    made = []
    with torch.no_grad():
        for c, n in per_class.items():
            x = torch.from_numpy(to_model(images[labels == c]))
            codes = torch.cat([encoder(x[i : i + 256]) for i in range(0, len(x), 256)]).numpy()
            neighbours = NearestNeighbors(n_neighbors=6, n_jobs=1).fit(codes).kneighbors(codes)[1]
            base = rng.choice(len(codes), n)
            slot = rng.choice(np.arange(1, 6), n)
            z = codes[base] + rng.random((n, 1)).astype(np.float32) * (codes[neighbours[base, slot]] - codes[base])
            for i in range(0, n, 256):
                made.append(from_model(decoder(torch.from_numpy(z[i : i + 256])).numpy()))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    data = paper_train_set()
    bundle_dir = paper_bundle()
    counts = data.class_counts()
    per_class = {c: args.images // 9 for c in range(1, 10)}
    total = sum(per_class.values())
    strategy = {c: int(counts[c]) + n for c, n in per_class.items()}
    torch.set_num_threads(args.threads)
    checkpoint = bundle_dir.with_name(bundle_dir.name + ".run") / "best.pt"
    encoder, decoder = (module.eval() for module in models_from_checkpoint(load_checkpoint(checkpoint)))
    print(f"{total} images from {len(data.labels)} real ({data.images.shape[1:]}), {args.threads} threads")

    start = time.perf_counter()
    ours = list(
        DeepSMOTE(bundle_dir, sampling_strategy=strategy, random_state=0, n_threads=args.threads).iter_synthetic(
            data.images, data.labels
        )
    )
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = reference_pipeline(encoder, decoder, data.images, data.labels, per_class, 0)
    theirs_s = time.perf_counter() - start
    assert sum(len(x) for x, _ in ours) == sum(len(x) for x in theirs) == total

    codes = np.random.default_rng(1).standard_normal((512, 300), dtype=np.float32)
    with torch.no_grad():
        expected = decoder(torch.from_numpy(codes)).numpy()
    got = open_models(load_bundle(bundle_dir), "cpu", args.threads).decode(codes)
    print(f"deepsmote : {total / ours_s:8.1f} images/s ({ours_s:.1f} s)")
    print(f"reference : {total / theirs_s:8.1f} images/s ({theirs_s:.1f} s)")
    print(f"speed-up  : {theirs_s / ours_s:.2f}x (target >= 1.15x)")
    print(f"onnxruntime vs torch decoded images: max abs diff {np.abs(got - expected).max():.2e} (target <= 1e-4)")


if __name__ == "__main__":
    main()
