"""Seconds per training epoch on the paper's 100:1 Fashion-MNIST training set (CPU by default).

The set is Table I's: the first 4000, 2000, 1000, 750, 500, 350, 200, 100, 60 and 40 images of
classes 0..9 of the Fashion-MNIST train split (9,000 images). Each epoch is the full loop of
`deepsmote train` (reconstruction and reference penalty, batch 100); the time per epoch is the
trainer's own, without checkpoint writing. With ``--export`` the best epoch is also exported and
the ONNX-vs-torch max_abs_diff printed.

    .venv/bin/python benchmarks/train_epoch_time.py --width 64 --epochs 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from deepsmote.runtime.readers import LabelledImages, read_dataset
from deepsmote.training.export import export_bundle
from deepsmote.training.trainer import TrainConfig, train

COUNTS = (4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40)
SOURCE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist"


def imbalanced_fmnist(source: Path) -> LabelledImages:
    """The paper's 100:1 training set: the first ``COUNTS[c]`` train images of each class c."""
    data = read_dataset(source / "train-images-idx3-ubyte.gz")
    keep = np.sort(np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in enumerate(COUNTS)]))
    return LabelledImages(data.images[keep], data.labels[keep], data.classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder with the Fashion-MNIST .gz files")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=300)
    parser.add_argument("--penalty", choices=("reference", "paper", "none"), default="reference")
    parser.add_argument("--arch", choices=("paper", "resize-conv"), default="paper")
    parser.add_argument("--loss", choices=("mse", "l1", "l1+ssim"), default="mse")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--export", action="store_true", help="also export and print max_abs_diff")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = imbalanced_fmnist(args.source)
    config = TrainConfig(
        epochs=args.epochs,
        width=args.width,
        latent_dim=args.latent_dim,
        arch=args.arch,
        loss=args.loss,
        penalty=args.penalty,
        device=args.device,
    )
    print(
        f"{len(data.images)} images, counts {data.class_counts().tolist()}, device {args.device}, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as scratch:
        began = time.perf_counter()
        files = train(data, config, Path(scratch) / "run")
        wall = time.perf_counter() - began
        history = torch.load(files.last, weights_only=True)["history"]
        for entry in history:
            seconds = entry["seconds"]
            print(
                f"width {args.width} epoch {entry['epoch']}: {seconds:.1f} s "
                f"({len(data.images) / seconds:.0f} images/s), loss {entry['loss']:.4f}"
            )
        per_epoch = sum(e["seconds"] for e in history) / len(history)
        print(f"width {args.width}: {per_epoch:.1f} s/epoch (wall {wall:.1f} s with checkpoints and plot)")
        if args.export:
            manifest = export_bundle(files.best, Path(scratch) / "bundle")
            print(f"export max_abs_diff {manifest.export.max_abs_diff:.3g}")


if __name__ == "__main__":
    main()
