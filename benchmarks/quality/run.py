"""The paper's Fashion-MNIST 100:1 protocol end to end, with the baselines it left out.

Stages, each timed:

1. datasets: Table I's sets made with `deepsmote dataset imbalance`'s code from the Fashion-MNIST
   IDX files: training 4000, 2000, ..., 40 images per class from the train split; imbalanced test
   1000, 500, ..., 10 and balanced test 1000 per class from the test split;
2. autoencoder: DeepSMOTE trained on the protocol's fit split (the training set less the
   validation split) and exported as a bundle;
3. evaluation: `deepsmote evaluate`'s protocol: the same classifier trained on (a) the imbalanced
   set as it is, (b) random oversampling, (c) SMOTE on pixels, (d) DeepSMOTE, for every seed,
   scored on both test sets;
4. quality: per-class Fréchet distance and precision/recall against real held-out images, in the
   feature space of a classifier trained on real balanced images (all from the train split,
   disjoint from the training set and from each other).

Presets: ``cpu`` (reduced widths and steps; at most an hour on 2 cores), ``paper`` (width 64,
latent 300, ResNet-18; for a GPU) and ``smoke`` (counts divided by ten, one seed, a few steps; to
check the script). Tables go to ``benchmarks/quality/results/<name>/`` after every finished run,
so a stopped run leaves what it finished; data and the bundle go to ``--work``.

    .venv/bin/python benchmarks/quality/run.py --preset cpu
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from deepsmote.evaluation.classifiers import ClassifierConfig
from deepsmote.evaluation.datasets import PAPER_TEST_COUNTS, PAPER_TRAIN_COUNTS, imbalance, write_imbalanced
from deepsmote.evaluation.protocol import (
    METHODS,
    ProtocolConfig,
    evaluate,
    quality_markdown,
    sample_quality,
    split_fit,
    write_tables,
)
from deepsmote.runtime.readers import LabelledImages, read_dataset
from deepsmote.training.export import export_bundle
from deepsmote.training.trainer import TrainConfig, train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCE = ROOT.parent / "shared" / "datasets" / "fashion-mnist"
# The recorded results (results/) are of the paper's model; train's default is another since #12.
PAPER_MODEL: dict[str, Any] = {"arch": "paper", "loss": "mse", "penalty": "reference"}
# Table II of the paper, Fashion-MNIST, imbalanced test set: ACSA / GM / F1 in %.
PAPER_TABLE_II = {
    "SMOTE (pixels)": (67.94, 74.84, 67.12),
    "BAGAN": (82.50, 90.51, 82.96),
    "GAMO": (83.05, 90.76, 83.00),
    "DeepSMOTE": (84.88, 91.63, 83.79),
}
T = TypeVar("T")


@dataclass(frozen=True)
class Preset:
    """One end-to-end configuration.

    Attributes
    ----------
    divisor : int
        Table I's counts are divided by this (1 for the paper's sets).
    data_seed : int
        Seeds the choice of images for every set.
    protocol : ProtocolConfig
        Methods, seeds, classifier, validation split.
    autoencoder : TrainConfig
        DeepSMOTE's training.
    quality_per_class : int
        Real images per class for the feature classifier and for the reference set.
    quality_classifier : ClassifierConfig
        The feature classifier of the quality stage.
    """

    divisor: int
    data_seed: int
    protocol: ProtocolConfig
    autoencoder: TrainConfig
    quality_per_class: int
    quality_classifier: ClassifierConfig = field(default_factory=ClassifierConfig)


PRESETS = {
    "smoke": Preset(
        divisor=10,
        data_seed=0,
        protocol=ProtocolConfig(
            seeds=(0,), classifier=ClassifierConfig(width=8, steps=40, eval_every=20), device="cpu", workers=2
        ),
        autoencoder=TrainConfig(epochs=2, width=8, latent_dim=32, device="cpu", **PAPER_MODEL),
        quality_per_class=100,
        quality_classifier=ClassifierConfig(width=8, steps=40, eval_every=20),
    ),
    "cpu": Preset(
        divisor=1,
        data_seed=0,
        protocol=ProtocolConfig(
            seeds=(0, 1, 2),
            classifier=ClassifierConfig(width=16, steps=3000, batch_size=64, eval_every=300),
            device="cpu",
            workers=2,
        ),
        autoencoder=TrainConfig(epochs=40, width=16, latent_dim=300, device="cpu", **PAPER_MODEL),
        quality_per_class=1000,
        quality_classifier=ClassifierConfig(width=16, steps=3000, batch_size=64, eval_every=300),
    ),
    "paper": Preset(
        divisor=1,
        data_seed=0,
        protocol=ProtocolConfig(
            seeds=(0, 1, 2, 3, 4),
            classifier=ClassifierConfig(preset="resnet18", steps=6000, batch_size=128, eval_every=300),
            device="cuda",
        ),
        autoencoder=TrainConfig(epochs=100, width=64, latent_dim=300, device="cuda", **PAPER_MODEL),
        quality_per_class=1000,
        quality_classifier=ClassifierConfig(preset="resnet18", steps=3000, batch_size=128, eval_every=300),
    ),
}


class Stages:
    """Wall time of each stage, printed and written to ``run.json`` as each one ends."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.out, self.settings, self.seconds = out, settings, {}
        self.began = time.perf_counter()

    def run(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, timed as stage ``name``."""
        print(f"== {name}", flush=True)
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - began, 1)
        print(f"== {name}: {self.seconds[name]:.0f} s (total {time.perf_counter() - self.began:.0f} s)", flush=True)
        self.write()
        return result

    def write(self) -> None:
        record = {"settings": self.settings, "stage_seconds": self.seconds}
        record["total_seconds"] = round(sum(self.seconds.values()), 1)
        (self.out / "run.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def make_datasets(source: Path, work: Path, preset: Preset, *, tests: bool = True) -> dict[str, Any]:
    """Table I's sets (counts divided by the preset's divisor), and disjoint sets for the quality stage.

    With ``tests`` False the test split is not read at all (for tuning).
    """
    train_split = read_dataset(source / "train-images-idx3-ubyte.gz")
    train_counts = [max(2, n // preset.divisor) for n in PAPER_TRAIN_COUNTS]
    seed = preset.data_seed
    train_set, train_idx = write_imbalanced(train_split, train_counts, seed, work / "train.npz", overwrite=True)
    sets: dict[str, Any] = {"train": train_set, "tests": {}}
    if tests:
        test_split = read_dataset(source / "t10k-images-idx3-ubyte.gz")
        test_counts = [max(1, n // preset.divisor) for n in PAPER_TEST_COUNTS]
        balanced = [max(1, 1000 // preset.divisor)] * len(test_counts)
        for name, counts in (("imbalanced", test_counts), ("balanced", balanced)):
            path = work / f"test-{name}.npz"
            sets["tests"][name] = write_imbalanced(test_split, counts, seed, path, overwrite=True)[0]
    per_class = [preset.quality_per_class] * len(train_counts)
    sets["feature_train"], feature_idx = imbalance(train_split, per_class, seed + 1, exclude=train_idx)
    used = np.concatenate([train_idx, feature_idx])
    sets["reference"], _ = imbalance(train_split, per_class, seed + 2, exclude=used)
    for name, data in {"train": train_set, **sets["tests"]}.items():
        print(f"{name}: {len(data.labels)} images, per class {data.class_counts().tolist()}")
    return sets


def train_autoencoder(fit: LabelledImages, config: TrainConfig, work: Path) -> Path:
    """Train DeepSMOTE on the fit split and export it; a finished bundle of the same run is reused."""
    bundle, run_dir = work / "bundle", work / "bundle.run"
    manifest = bundle / "deepsmote.json"
    if manifest.exists():
        training = json.loads(manifest.read_text())["training"]
        if training["config"] == asdict(config) and training["data_sha256"] == fit.fingerprint():
            print(f"reusing {bundle} (same config and fit split)")
            return bundle
    shutil.rmtree(run_dir, ignore_errors=True)
    files = train(fit, config, run_dir)
    history = [json.loads(line) for line in files.log.read_text().splitlines()]
    print("autoencoder losses: " + ", ".join(f"{h['epoch']}: {h['loss']:.4f}" for h in history))
    export_bundle(files.best, bundle, overwrite=True)
    return bundle


def summary_markdown(
    name: str, preset: Preset, evaluation: dict[str, Any], quality: dict | None, seconds: dict, hardware: str
) -> str:
    """The table for the README: this run beside the paper's Table II, settings, stage times."""
    classifier, ae = preset.protocol.classifier, preset.autoencoder
    lines = [
        f"### Fashion-MNIST 100:1, `{name}` preset",
        "",
        "Imbalanced test set (Table I: 1000 … 10 per class), mean ± std over seeds "
        f"{', '.join(map(str, preset.protocol.seeds))}, in %:",
        "",
        "| method | ACSA | GM | F1 |",
        "|---|---|---|---|",
    ]
    for method, entry in evaluation["summary"]["tests"].get("imbalanced", {}).items():
        cells = " | ".join(f"{100 * entry[m][0]:.2f} ± {100 * entry[m][1]:.2f}" for m in ("acsa", "gm", "f1"))
        lines.append(f"| {METHODS[method].title} (this run) | {cells} |")
    for method, values in PAPER_TABLE_II.items():
        lines.append(f"| {method} (paper, Table II) | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    balanced = evaluation["summary"]["tests"].get("balanced", {})
    if balanced:
        lines += ["", "Balanced test set (1000 per class), in %:", ""]
        lines += ["| method | ACSA | GM | F1 |", "|---|---|---|---|"]
        for method, entry in balanced.items():
            cells = " | ".join(f"{100 * entry[m][0]:.2f} ± {100 * entry[m][1]:.2f}" for m in ("acsa", "gm", "f1"))
            lines.append(f"| {METHODS[method].title} | {cells} |")
    lines += [
        "",
        f"Settings: DeepSMOTE width {ae.width}, latent {ae.latent_dim}, {ae.epochs} epochs, penalty "
        f"{ae.penalty} (λ = {ae.penalty_weight:g}), trained on the fit split; classifier `{classifier.preset}` "
        f"(width {classifier.width or 'default'}), {classifier.steps} Adam steps of {classifier.batch_size} images "
        f"(lr {classifier.lr:g}, cosine decay) for every method, weights selected on the validation split "
        f"({100 * preset.protocol.val_fraction:.0f}% of each class, never oversampled) by ACSA; "
        f"k = {evaluation['protocol']['k_neighbors_used']} for both SMOTEs; "
        f"device {evaluation['protocol']['device_used']}, torch {torch.__version__}.",
    ]
    if quality is not None:
        lines += ["", "Sample quality (mean over classes) in the feature space of a classifier of real images:", ""]
        lines += quality_markdown(quality).split("\n\n")[0].splitlines()
    lines += ["", "Wall time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())]
    lines.append(f"(total {sum(seconds.values()) / 60:.1f} min on {hardware}).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder with Fashion-MNIST's IDX .gz files")
    parser.add_argument("--name", help="results subfolder [default: the preset's name]")
    parser.add_argument("--work", type=Path, help="data and bundle [default: benchmarks/.cache/quality/NAME]")
    # One thread per process: on the 2-core machine this was written on, a second torch thread
    # made the small networks' steps several times slower, and the classifiers use both cores
    # as two worker processes instead.
    parser.add_argument("--threads", type=int, default=1, help="torch/onnxruntime/numba threads per process")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="override the preset's device")
    parser.add_argument("--seeds", help="override the preset's seeds, e.g. 0,1,2")
    parser.add_argument("--ae-epochs", type=int, help="override the autoencoder's epochs")
    parser.add_argument("--latent-dim", type=int, help="override the autoencoder's latent size")
    parser.add_argument("--penalty", choices=("reference", "none"), help="override the autoencoder's penalty")
    parser.add_argument("--steps", type=int, help="override the classifiers' optimizer steps")
    parser.add_argument("--methods", help="override the methods, e.g. none,deepsmote")
    parser.add_argument("--workers", type=int, help="override the classifier processes trained at once")
    parser.add_argument("--skip-quality", action="store_true", help="stop after the evaluation stage")
    args = parser.parse_args()

    preset = PRESETS[args.preset]
    protocol, autoencoder, classifier = preset.protocol, preset.autoencoder, preset.protocol.classifier
    quality_classifier = preset.quality_classifier
    if args.steps:
        classifier = replace(classifier, steps=args.steps, eval_every=max(1, args.steps // 10))
        quality_classifier = replace(quality_classifier, steps=args.steps, eval_every=max(1, args.steps // 10))
    protocol = replace(protocol, classifier=classifier, threads=args.threads)
    if args.seeds:
        protocol = replace(protocol, seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.methods:
        protocol = replace(protocol, methods=tuple(args.methods.split(",")))
    if args.workers:
        protocol = replace(protocol, workers=args.workers)
    if args.device:
        protocol = replace(protocol, device=args.device)
    ae_overrides = {"epochs": args.ae_epochs, "latent_dim": args.latent_dim, "penalty": args.penalty}
    ae_overrides["device"] = args.device
    autoencoder = replace(autoencoder, **{k: v for k, v in ae_overrides.items() if v is not None})
    preset = replace(preset, protocol=protocol, autoencoder=autoencoder, quality_classifier=quality_classifier)

    name = args.name or args.preset
    out = HERE / "results" / name
    work = args.work or ROOT / "benchmarks" / ".cache" / "quality" / name
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    hardware = (
        f"{os.cpu_count()} CPU cores, {args.threads} thread(s) per process, {protocol.workers} classifier worker(s)"
    )
    if torch.cuda.is_available() and protocol.device != "cpu":
        hardware += f", {torch.cuda.get_device_name()}"
    settings = {
        "hardware": hardware,
        "preset": args.preset,
        "name": name,
        "threads": args.threads,
        "config": asdict(preset),
    }
    print(f"{name}: torch {torch.__version__}, {args.threads} threads, results in {out}, data in {work}")
    stages = Stages(out, settings)

    data = stages.run("datasets", make_datasets, args.source, work, preset)
    fit, _ = split_fit(data["train"], protocol)
    needs_bundle = "deepsmote" in protocol.methods or not args.skip_quality
    bundle = stages.run("autoencoder", train_autoencoder, fit, autoencoder, work) if needs_bundle else None
    evaluation = stages.run(
        "evaluation", evaluate, data["train"], data["tests"], protocol, bundle=bundle, out_dir=out, stem="evaluation"
    )
    (out / "summary.md").write_text(
        summary_markdown(name, preset, evaluation, None, stages.seconds, hardware), encoding="utf-8"
    )
    quality = None
    if not args.skip_quality:
        quality = stages.run(
            "quality",
            sample_quality,
            fit,
            data["reference"],
            data["feature_train"],
            bundle,
            preset.quality_classifier,
            seed=preset.data_seed,
            max_per_class=preset.quality_per_class,
            k_neighbors=protocol.k_neighbors,
            device=protocol.device,
            threads=args.threads,
        )
        write_tables(out, "quality", quality, quality_markdown(quality))
    summary = summary_markdown(name, preset, evaluation, quality, stages.seconds, hardware)
    (out / "summary.md").write_text(summary, encoding="utf-8")
    print(summary)


if __name__ == "__main__":
    main()
