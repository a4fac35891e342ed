"""The paper's Fashion-MNIST 100:1 protocol end to end, with the baselines it left out.

Stages, each timed:

1. datasets: Table I's sets made with `deepsmote dataset imbalance`'s code from the Fashion-MNIST
   IDX files: training 4000, 2000, ..., 40 images per class from the train split; imbalanced test
   1000, 500, ..., 10 and balanced test 1000 per class from the test split;
2. autoencoder-G: for each generator G (``sharp``: `train`'s default architecture, loss and
   penalty; ``paper``: the paper's), DeepSMOTE trained on the protocol's fit split (the training
   set less the validation split) and exported as a bundle;
3. gate-G: the quality gate's classifier, trained on the same fit split, added to each bundle;
4. evaluation-baselines: `deepsmote evaluate`'s protocol for the methods without a bundle: the
   same classifier trained on (a) the imbalanced set as it is, (b) random oversampling, (c) SMOTE
   on pixels, (e) balanced softmax, (f) deferred re-sampling, for every seed, scored on both test
   sets; then evaluation-G: the DeepSMOTE recipes with each generator's bundle;
5. quality-G: per-class Fréchet distance and precision/recall against real held-out images, in
   the feature space of a classifier trained on real balanced images (all from the train split,
   disjoint from the training set and from each other).

A finished evaluation group whose settings and bundle are unchanged is reused (its results file
holds the key and its wall time), so a stopped run restarts where it stopped.

Presets: ``cpu`` (reduced widths and steps; at most an hour on 2 cores), ``paper`` (width 64,
latent 300, ResNet-18; for a GPU), ``screen`` (counts divided by four, 5 seeds, 1,000 classifier
steps: where recipes are searched on validation) and ``smoke`` (counts divided by ten, one seed, a
few steps; to check the script). Tables go to ``benchmarks/quality/results/<name>/`` after every finished run,
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
from deepsmote.evaluation.classifiers import AUGMENTS, ClassifierConfig
from deepsmote.evaluation.datasets import PAPER_TEST_COUNTS, PAPER_TRAIN_COUNTS, imbalance, write_imbalanced
from deepsmote.evaluation.protocol import (
    ProtocolConfig,
    evaluate,
    method_spec,
    quality_markdown,
    results_markdown,
    sample_quality,
    split_fit,
    write_tables,
)
from deepsmote.runtime.bundle import load_bundle
from deepsmote.runtime.readers import LabelledImages, read_dataset
from deepsmote.training import GateConfig, add_classifier
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
        Seeds, classifier, validation split; its methods are the baselines, run without a bundle.
    generators : dict of str to TrainConfig
        DeepSMOTE's training, per generator.
    recipes : tuple of str
        The DeepSMOTE methods run with every generator's bundle.
    gate_steps : int
        Optimizer steps of the quality gate's classifier.
    quality_per_class : int
        Real images per class for the feature classifier and for the reference set.
    quality_classifier : ClassifierConfig
        The feature classifier of the quality stage.
    """

    divisor: int
    data_seed: int
    protocol: ProtocolConfig
    generators: dict[str, TrainConfig]
    recipes: tuple[str, ...]
    gate_steps: int
    quality_per_class: int
    quality_classifier: ClassifierConfig = field(default_factory=ClassifierConfig)


BASELINES = ("none", "random", "smote", "balanced-softmax", "deferred", "pixel-remix", "pixel-remix-per-epoch")
RECIPES = (
    "deepsmote",
    "deepsmote-filter",
    "deepsmote-mixed",
    "deepsmote-borderline",
    "deepsmote-adasyn",
    "deepsmote-deferred",
    "deepsmote-per-epoch",
    "remix",
    "remix-per-epoch",
    "remix-nearest",
    "remix-nearest-per-epoch",
    "remix-balanced-softmax",
)


def _generators(**common: Any) -> dict[str, TrainConfig]:
    """The sharp generator (`train`'s defaults) and the paper's, trained alike otherwise."""
    return {"sharp": TrainConfig(**common), "paper": TrainConfig(**common, **PAPER_MODEL)}


PRESETS = {
    # A quarter of Table I's counts and 5 seeds with a short classifier schedule: where recipes are
    # searched on validation before the `cpu` preset measures the chosen one.
    "screen": Preset(
        divisor=4,
        data_seed=0,
        protocol=ProtocolConfig(
            methods=BASELINES,
            seeds=(0, 1, 2, 3, 4),
            classifier=ClassifierConfig(width=16, steps=1000, batch_size=64, eval_every=100),
            device="cpu",
            workers=2,
        ),
        generators={"sharp": TrainConfig(epochs=40, width=16, latent_dim=300, device="cpu")},
        recipes=RECIPES,
        gate_steps=1000,
        quality_per_class=250,
        quality_classifier=ClassifierConfig(width=16, steps=1000, batch_size=64, eval_every=100),
    ),
    "smoke": Preset(
        divisor=10,
        data_seed=0,
        protocol=ProtocolConfig(
            methods=BASELINES,
            seeds=(0,),
            classifier=ClassifierConfig(width=8, steps=40, eval_every=20),
            device="cpu",
            workers=2,
        ),
        generators=_generators(epochs=2, width=8, latent_dim=32, device="cpu"),
        recipes=RECIPES,
        gate_steps=40,
        quality_per_class=100,
        quality_classifier=ClassifierConfig(width=8, steps=40, eval_every=20),
    ),
    "cpu": Preset(
        divisor=1,
        data_seed=0,
        protocol=ProtocolConfig(
            methods=BASELINES,
            seeds=(0, 1, 2),
            classifier=ClassifierConfig(width=16, steps=3000, batch_size=64, eval_every=300),
            device="cpu",
            workers=2,
        ),
        generators=_generators(epochs=40, width=16, latent_dim=300, device="cpu"),
        recipes=RECIPES,
        gate_steps=2000,
        quality_per_class=1000,
        quality_classifier=ClassifierConfig(width=16, steps=3000, batch_size=64, eval_every=300),
    ),
    "paper": Preset(
        divisor=1,
        data_seed=0,
        protocol=ProtocolConfig(
            methods=BASELINES,
            seeds=(0, 1, 2, 3, 4),
            classifier=ClassifierConfig(preset="resnet18", steps=6000, batch_size=128, eval_every=300),
            device="cuda",
        ),
        generators=_generators(epochs=100, width=64, latent_dim=300, device="cuda"),
        recipes=RECIPES,
        gate_steps=3000,
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
        # A bundle recorded before `precision` existed was trained in fp32.
        recorded = {"precision": "fp32", **training["config"]}
        if recorded == asdict(config) and training["data_sha256"] == fit.fingerprint():
            print(f"reusing {bundle} (same config and fit split)")
            return bundle
    shutil.rmtree(run_dir, ignore_errors=True)
    files = train(fit, config, run_dir)
    history = [json.loads(line) for line in files.log.read_text().splitlines()]
    print("autoencoder losses: " + ", ".join(f"{h['epoch']}: {h['loss']:.4f}" for h in history))
    export_bundle(files.best, bundle, overwrite=True)
    return bundle


def add_gate(bundle: Path, fit: LabelledImages, steps: int) -> None:
    """Give the bundle the quality gate's classifier, trained on the fit split; one of the same run is kept."""
    config = GateConfig(steps=steps)
    record = load_bundle(bundle).manifest.classifier
    same = record is not None and all(record.config.get(k) == v for k, v in asdict(config).items())
    if same and record.data_sha256 == fit.fingerprint():
        print(f"reusing the classifier of {bundle} (same config and fit split)")
        return
    manifest = add_classifier(bundle, fit, config, overwrite=True)
    accuracy = manifest.classifier.train_balanced_accuracy
    print(f"gate classifier: balanced accuracy {accuracy:.4f} on the fit split it was trained on")


def evaluate_group(
    stem: str,
    data: dict[str, Any],
    protocol: ProtocolConfig,
    out: Path,
    bundle: Path | None = None,
) -> dict[str, Any]:
    """The protocol for one group of methods, or its finished results when nothing they depend on changed."""
    # As JSON gives it back (tuples as lists), to compare with a stored key.
    key = json.loads(
        json.dumps({"protocol": asdict(protocol), "bundle": load_bundle(bundle).fingerprint if bundle else None})
    )
    done = out / f"{stem}.json"
    if done.exists():
        results = json.loads(done.read_text())
        if _reusable(results.get("reuse_key"), key) and len(results["runs"]) == len(protocol.methods) * len(
            protocol.seeds
        ):
            print(f"reusing {done} (same settings and bundle, every run done; it took {results['seconds']:.0f} s)")
            return results
    began = time.perf_counter()
    results = evaluate(data["train"], data["tests"], protocol, bundle=bundle, out_dir=out, stem=stem)
    results["reuse_key"], results["seconds"] = key, round(time.perf_counter() - began, 1)
    write_tables(out, stem, results, results_markdown(results))
    return results


def _reusable(stored: dict[str, Any] | None, key: dict[str, Any]) -> bool:
    # The number of worker processes does not change the results (ProtocolConfig.workers).
    def strip(k: dict[str, Any]) -> dict[str, Any]:
        return {**k, "protocol": {n: v for n, v in k["protocol"].items() if n != "workers"}}

    return stored is not None and strip(stored) == strip(key)


def _title(method: str, generator: str | None) -> str:
    return method_spec(method).title + (f" [{generator}]" if generator else "")


def _rows(groups: dict[str | None, dict[str, Any]], test: str) -> list[str]:
    lines = ["| method | ACSA | GM | F1 |", "|---|---|---|---|"]
    for generator, evaluation in groups.items():
        for method, entry in evaluation["summary"]["tests"].get(test, {}).items():
            cells = " | ".join(f"{100 * entry[m][0]:.2f} ± {100 * entry[m][1]:.2f}" for m in ("acsa", "gm", "f1"))
            lines.append(f"| {_title(method, generator)} | {cells} |")
    return lines


def summary_markdown(
    name: str,
    preset: Preset,
    groups: dict[str | None, dict[str, Any]],
    quality: dict[str, dict],
    seconds: dict,
    hardware: str,
) -> str:
    """The tables for the README: this run beside the paper's Table II, validation, settings, stage times.

    ``groups`` maps a generator's name (None for the baselines) to its evaluation results.
    """
    classifier = preset.protocol.classifier
    lines = [
        f"### Fashion-MNIST 100:1, `{name}` preset",
        "",
        "Imbalanced test set (Table I: 1000 … 10 per class), mean ± std over seeds "
        f"{', '.join(map(str, preset.protocol.seeds))}, in %; DeepSMOTE rows name their generator:",
        "",
        *_rows(groups, "imbalanced"),
    ]
    for method, values in PAPER_TABLE_II.items():
        lines.append(f"| {method} (paper, Table II) | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    balanced = next(iter(groups.values()))["protocol"]["counts"]["balanced"][0]
    lines += ["", f"Balanced test set ({balanced} per class), in %:", "", *_rows(groups, "balanced")]
    lines += ["", "Validation split (what choices are made on), ACSA of the selected weights, in %:", ""]
    lines += ["| method | validation ACSA |", "|---|---|"]
    for generator, evaluation in groups.items():
        for method, entry in evaluation["summary"]["selection"].items():
            lines.append(
                f"| {_title(method, generator)} | {100 * entry['acsa'][0]:.2f} ± {100 * entry['acsa'][1]:.2f} |"
            )
    used = (g["protocol"]["k_neighbors_used"] for g in groups.values())
    k_used = next((k for k in used if k), None)
    generators = "; ".join(
        f"{g}: {ae.arch}, loss {ae.loss}, penalty {ae.penalty}, width {ae.width}, latent {ae.latent_dim}, "
        f"{ae.epochs} epochs"
        for g, ae in preset.generators.items()
    )
    lines += [
        "",
        f"Settings: DeepSMOTE generators ({generators}) trained on the fit split; quality gate: a classifier "
        f"trained on the fit split ({preset.gate_steps} steps); classifier `{classifier.preset}` "
        f"(width {classifier.width or 'default'}), {classifier.steps} Adam steps of {classifier.batch_size} images "
        f"(lr {classifier.lr:g}, cosine decay) for every method, weights selected on the validation split "
        f"({100 * preset.protocol.val_fraction:.0f}% of each class, never oversampled) by ACSA; "
        f"k = {k_used} for every SMOTE; classifier augmentation {classifier.augment}; torch {torch.__version__}.",
    ]
    for generator, result in quality.items():
        lines += ["", f"Sample quality of the {generator} generator (mean over classes), in the feature space of a "]
        lines[-1] += "classifier of real images:"
        lines += ["", *quality_markdown(result).split("\n\n")[0].splitlines()]
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
    parser.add_argument("--ae-epochs", type=int, help="override the autoencoders' epochs")
    parser.add_argument("--steps", type=int, help="override the classifiers' optimizer steps")
    parser.add_argument("--generators", help="only these generators, e.g. sharp [default: all of the preset's]")
    parser.add_argument("--groups", help="only these evaluation groups, e.g. baselines,sharp [default: all]")
    parser.add_argument("--workers", type=int, help="override the classifier processes trained at once")
    parser.add_argument("--skip-quality", action="store_true", help="stop after the evaluation stages")
    parser.add_argument(
        "--methods", help="the baselines group's methods, e.g. random,pixel-remix [default: the preset's]"
    )
    parser.add_argument(
        "--recipes",
        help="each generator group's methods; a name may carry overrides, e.g. remix@remix_kappa=2 "
        "or remix@remix_kappa=2+remix_tau=0.3 (deepsmote.evaluation.protocol.method_spec) [default: the preset's]",
    )
    parser.add_argument("--augment", choices=AUGMENTS, help="the classifiers' augmentation [default: none]")
    args = parser.parse_args()

    preset = PRESETS[args.preset]
    protocol, classifier = preset.protocol, preset.protocol.classifier
    quality_classifier = preset.quality_classifier
    if args.steps:
        classifier = replace(classifier, steps=args.steps, eval_every=max(1, args.steps // 10))
        quality_classifier = replace(quality_classifier, steps=args.steps, eval_every=max(1, args.steps // 10))
    if args.augment:
        classifier = replace(classifier, augment=args.augment)
    protocol = replace(protocol, classifier=classifier, threads=args.threads)
    if args.methods:
        protocol = replace(protocol, methods=tuple(args.methods.split(",")))
    if args.recipes:
        preset = replace(preset, recipes=tuple(args.recipes.split(",")))
    if args.seeds:
        protocol = replace(protocol, seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.workers:
        protocol = replace(protocol, workers=args.workers)
    if args.device:
        protocol = replace(protocol, device=args.device)
    overrides = {"epochs": args.ae_epochs, "device": args.device}
    generators = {
        g: replace(ae, **{k: v for k, v in overrides.items() if v is not None})
        for g, ae in preset.generators.items()
        if not args.generators or g in args.generators.split(",")
    }
    preset = replace(preset, protocol=protocol, generators=generators, quality_classifier=quality_classifier)
    groups = args.groups.split(",") if args.groups else ["baselines", *generators]

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
    bundles: dict[str, Path] = {}
    for g, ae in generators.items():
        if g not in groups and args.skip_quality:
            continue
        bundles[g] = stages.run(f"autoencoder-{g}", train_autoencoder, fit, ae, work / g)
        stages.run(f"gate-{g}", add_gate, bundles[g], fit, preset.gate_steps)
    results: dict[str | None, dict[str, Any]] = {}
    groups_run = [(None, "baselines", protocol, None)] + [
        (g, g, replace(protocol, methods=preset.recipes), bundles.get(g)) for g in generators
    ]
    for generator, group, group_protocol, bundle in groups_run:
        if group in groups:
            stem = f"evaluation-{group}"
            results[generator] = stages.run(stem, evaluate_group, stem, data, group_protocol, out, bundle)
            # A reused group is reported with the time it took when it ran.
            stages.seconds[stem] = results[generator]["seconds"]
            stages.write()
    quality: dict[str, dict] = {}
    for g in generators if not args.skip_quality else ():
        quality[g] = stages.run(
            f"quality-{g}",
            sample_quality,
            fit,
            data["reference"],
            data["feature_train"],
            bundles[g],
            preset.quality_classifier,
            seed=preset.data_seed,
            max_per_class=preset.quality_per_class,
            k_neighbors=protocol.k_neighbors,
            device=protocol.device,
            threads=args.threads,
        )
        write_tables(out, f"quality-{g}", quality[g], quality_markdown(quality[g]))
    summary = summary_markdown(name, preset, results, quality, stages.seconds, hardware)
    (out / "summary.md").write_text(summary, encoding="utf-8")
    print(summary)


if __name__ == "__main__":
    main()
