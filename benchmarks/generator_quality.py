"""Sample quality of the paper's generator against the resize-convolution one, on Fashion-MNIST 100:1.

Each configuration (architecture, loss, penalty) is trained with the same width, latent size,
epochs and seed on the same imbalanced training set (the paper's counts divided by ``--divisor``,
from the real Fashion-MNIST train split, or the embedded 900-image subset when that is absent),
exported, and used by the torch-free runtime to add ``m = min(n_c, --per-class)`` synthetic images
to every class c. The figures, per configuration:

- Fréchet distance, precision and recall (``deepsmote.evaluation.quality``) per class against
  real held-out images of the class, in the feature space of one CNN classifier trained on other
  real, balanced images (all disjoint), averaged over the classes;
- the fraction of exactly-black pixels (value 0) in the synthetic images and in the real training
  images, and the mean of the 2x2 corner pixels (the background), real vs synthetic.

The reconstruction MSE of the last epoch is printed as well. A configuration may name a training
precision (``resize-conv:l1+ssim:reference:bf16``) to compare mixed precision with fp32, and after it
a ``conv`` algorithm (``paper:mse:reference:fp32:winograd``) to compare Winograd training. Training
and export use torch; the synthetic images come from the runtime (``DeepSMOTE.fit_resample``).

    .venv/bin/python benchmarks/generator_quality.py --epochs 25 --width 16 --latent-dim 32
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from deepsmote.data import fmnist_mini
from deepsmote.evaluation.classifiers import ClassifierConfig, embed, train_classifier
from deepsmote.evaluation.datasets import PAPER_TRAIN_COUNTS, imbalance
from deepsmote.evaluation.protocol import validation_split
from deepsmote.evaluation.quality import DEFAULT_K, compare
from deepsmote.runtime import DeepSMOTE
from deepsmote.runtime.readers import LabelledImages, read_dataset
from deepsmote.training.export import export_bundle
from deepsmote.training.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz"
DEFAULT_CONFIGS = (
    "paper:mse:reference,resize-conv:mse:reference,resize-conv:l1:reference,"
    "resize-conv:l1+ssim:reference,resize-conv:l1:paper"
)


def datasets(divisor: int, per_class: int, seed: int) -> tuple[LabelledImages, LabelledImages, LabelledImages]:
    """(training set, real reference images, feature-classifier images), disjoint."""
    if not SOURCE.exists():
        print(f"note: {SOURCE} not found; training on the embedded subset, reference from its t10k split")
        train_set = read_dataset(fmnist_mini("train"))
        held_out = read_dataset(fmnist_mini("t10k"))
        half = np.arange(len(held_out.labels)) % 2 == 0
        split = [LabelledImages(held_out.images[m], held_out.labels[m], held_out.classes) for m in (half, ~half)]
        return train_set, split[0], split[1]
    source = read_dataset(SOURCE)
    counts = [max(2, n // divisor) for n in PAPER_TRAIN_COUNTS]
    train_set, train_idx = imbalance(source, counts, seed)
    feature_train, feature_idx = imbalance(source, [per_class] * len(counts), seed + 1, exclude=train_idx)
    reference, _ = imbalance(
        source, [per_class] * len(counts), seed + 2, exclude=np.concatenate([train_idx, feature_idx])
    )
    return train_set, reference, feature_train


def black_and_corners(images: np.ndarray) -> tuple[float, float]:
    """Fraction of pixels exactly 0, and the mean of the four 2x2 corners; uint8 (N, H, W[, C])."""
    corners = np.concatenate([images[:, :2, :2], images[:, :2, -2:], images[:, -2:, :2], images[:, -2:, -2:]], axis=1)
    return float(np.mean(images == 0)), float(corners.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help="Comma-separated arch:loss:penalty[:precision[:conv]] (fp32, direct).",
    )
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--divisor", type=int, default=10, help="The paper's counts divided by this.")
    parser.add_argument("--per-class", type=int, default=200, help="Real and synthetic images per class scored.")
    parser.add_argument("--classifier-steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "generator_quality")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_set, reference, feature_train = datasets(args.divisor, args.per_class, args.seed)
    n_classes = len(train_set.classes)
    counts = train_set.class_counts()
    print(f"training set: {len(train_set.labels)} images, per class {counts.tolist()}")

    began = time.perf_counter()
    fit_idx, val_idx = validation_split(feature_train.labels, n_classes, 0.1, args.seed)
    classifier = train_classifier(
        feature_train.images[fit_idx],
        feature_train.labels[fit_idx],
        feature_train.images[val_idx],
        feature_train.labels[val_idx],
        n_classes,
        ClassifierConfig(width=16, steps=args.classifier_steps, batch_size=64, eval_every=args.classifier_steps // 4),
        args.seed,
        torch.device("cpu"),
    )
    print(f"feature classifier: validation ACSA {classifier.best_val_acsa:.3f} ({time.perf_counter() - began:.0f} s)")
    cpu = torch.device("cpu")
    reference_features = {}
    for c in range(n_classes):
        reference_features[c] = embed(classifier.model, reference.images[reference.labels == c], cpu)
    sizes = np.minimum(counts, args.per_class)
    strategy = {c: int(counts[c] + sizes[c]) for c in range(n_classes)}
    real_black, real_corner = black_and_corners(train_set.images)
    rows = []
    for spec in args.configs.split(","):
        arch, loss, penalty, precision, conv = [*spec.split(":"), "fp32", "direct"][:5]
        config = TrainConfig(
            epochs=args.epochs,
            width=args.width,
            latent_dim=args.latent_dim,
            arch=arch,
            loss=loss,  # type: ignore[arg-type]
            penalty=penalty,  # type: ignore[arg-type]
            seed=args.seed,
            device="cpu",
            precision=precision,  # type: ignore[arg-type]
            conv=conv,  # type: ignore[arg-type]
        )
        work = args.work / spec.replace(":", "-").replace("+", "")
        shutil.rmtree(work, ignore_errors=True)
        began = time.perf_counter()
        files = train(train_set, config, work / "run")
        bundle = work / "bundle"
        export_bundle(files.best, bundle)
        train_seconds = time.perf_counter() - began
        last = json.loads(files.log.read_text().splitlines()[-1])
        sampler = DeepSMOTE(bundle, sampling_strategy=strategy, k_neighbors=5, random_state=args.seed)
        images, labels = sampler.fit_resample(train_set.images, train_set.labels)
        new_images, new_labels = images[len(train_set.labels) :], labels[len(train_set.labels) :]
        scores = [
            compare(reference_features[c], embed(classifier.model, new_images[new_labels == c], cpu))
            for c in range(n_classes)
            if min(sizes[c], len(reference_features[c])) > DEFAULT_K
        ]
        black, corner = black_and_corners(new_images)
        row = {
            "config": spec,
            "frechet": float(np.mean([s.frechet for s in scores])),
            "precision": float(np.mean([s.precision for s in scores])),
            "recall": float(np.mean([s.recall for s in scores])),
            "black_synthetic": black,
            "black_real": real_black,
            "corner_synthetic": corner,
            "corner_real": real_corner,
            "last_epoch": last,
            "train_export_s": round(train_seconds, 1),
            "classes_scored": len(scores),
            "bundle": str(bundle),
            "train_config": asdict(config),
        }
        rows.append(row)
        print(
            f"{spec:32s} Fréchet {row['frechet']:.3f}  precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
            f"black {100 * black:.2f}% (real {100 * real_black:.2f}%)  corners {corner:.1f} (real {real_corner:.1f})  "
            f"last-epoch loss {last['loss']:.4f}  {train_seconds:.0f} s",
            flush=True,
        )
    print("\n| config | Fréchet | precision | recall | black px synth / real | corner mean synth / real |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['config']} | {row['frechet']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} | "
            f"{100 * row['black_synthetic']:.2f}% / {100 * row['black_real']:.2f}% | "
            f"{row['corner_synthetic']:.1f} / {row['corner_real']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
