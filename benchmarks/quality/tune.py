"""Tune DeepSMOTE's settings for the protocol on the validation split only; test sets are never read.

Each variant ``PENALTY:LATENT:EPOCHS[:WIDTH]`` trains an autoencoder on the preset's fit split and
runs the protocol's classifier on its oversampled set; ``--baselines`` adds the methods that need
no autoencoder. Every classifier is scored on the validation split (the split its weights were
selected on, so the scores are optimistic alike for every method). Writes
``results/tuning-NAME.{json,md}`` after every finished variant.

    .venv/bin/python benchmarks/quality/tune.py --preset cpu --baselines --variants reference:300:25,none:300:25
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from deepsmote.evaluation.protocol import METHODS, evaluate, split_fit, write_tables
from deepsmote.training.trainer import TrainConfig
from run import HERE, PRESETS, ROOT, SOURCE, make_datasets, train_autoencoder


def parse_variant(text: str, base: TrainConfig) -> TrainConfig:
    """``reference:300:25[:16]`` → the base config with that penalty, latent size, epochs (and width)."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise SystemExit(f"a variant is PENALTY:LATENT:EPOCHS[:WIDTH], got {text!r}")
    config = replace(base, penalty=parts[0], latent_dim=int(parts[1]), epochs=int(parts[2]))
    return replace(config, width=int(parts[3])) if len(parts) == 4 else config


def markdown(rows: list[dict[str, Any]]) -> str:
    """One row per method or variant: validation ACSA, GM, F1 (mean ± std over seeds, %)."""
    lines = ["| method | validation ACSA | validation GM | validation F1 | AE s |", "|---|---|---|---|---|"]
    for row in rows:
        cells = " | ".join(f"{100 * row[m][0]:.2f} ± {100 * row[m][1]:.2f}" for m in ("acsa", "gm", "f1"))
        lines.append(f"| {row['label']} | {cells} | {row.get('ae_seconds', 0):.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--name", required=True, help="results/tuning-NAME.{json,md}")
    parser.add_argument("--variants", default="", help="comma-separated PENALTY:LATENT:EPOCHS[:WIDTH]")
    parser.add_argument("--baselines", action="store_true", help="also none, random and smote")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="override the preset's device")
    parser.add_argument("--steps", type=int, help="override the classifier's optimizer steps")
    parser.add_argument("--seeds", help="override the preset's seeds, e.g. 0,1,2")
    parser.add_argument("--source", default=SOURCE)
    parser.add_argument("--threads", type=int, default=1, help="torch/onnxruntime/numba threads per process")
    args = parser.parse_args()

    preset = PRESETS[args.preset]
    # The recorded tuning (results/tuning-*) varies the paper's model.
    protocol, autoencoder = preset.protocol, preset.generators["paper"]
    classifier = protocol.classifier
    if args.steps:
        classifier = replace(classifier, steps=args.steps, eval_every=max(1, args.steps // 10))
    protocol = replace(protocol, classifier=classifier, threads=args.threads)
    if args.seeds:
        protocol = replace(protocol, seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.device:
        protocol = replace(protocol, device=args.device)
        autoencoder = replace(autoencoder, device=args.device)
    torch.set_num_threads(args.threads)
    work = ROOT / "benchmarks" / ".cache" / "quality" / f"tuning-{args.name}"
    work.mkdir(parents=True, exist_ok=True)
    data = make_datasets(Path(args.source), work, preset, tests=False)
    fit, val = split_fit(data["train"], protocol)
    validation = {"validation": val}
    rows: list[dict[str, Any]] = []
    record: dict[str, Any] = {"preset": args.preset, "protocol": None, "rows": rows}

    if args.baselines:
        began = time.perf_counter()
        config = replace(protocol, methods=("none", "random", "smote"))
        results = evaluate(data["train"], validation, config, log=print)
        for method in config.methods:
            rows.append({"label": METHODS[method].title, **results["summary"]["tests"]["validation"][method]})
        record["protocol"] = results["protocol"]
        print(f"baselines: {time.perf_counter() - began:.0f} s")
        write_tables(HERE / "results", f"tuning-{args.name}", record, markdown(rows))
    for text in filter(None, args.variants.split(",")):
        config = parse_variant(text, autoencoder)
        began = time.perf_counter()
        bundle = train_autoencoder(fit, config, work / text.replace(":", "-"))
        ae_seconds = time.perf_counter() - began
        results = evaluate(data["train"], validation, replace(protocol, methods=("deepsmote",)), bundle=bundle)
        entry = results["summary"]["tests"]["validation"]["deepsmote"]
        rows.append({"label": f"(d) DeepSMOTE {text}", "variant": text, "ae_seconds": ae_seconds, **entry})
        record["protocol"] = record["protocol"] or results["protocol"]
        print(f"{text}: {time.perf_counter() - began:.0f} s")
        write_tables(HERE / "results", f"tuning-{args.name}", record, markdown(rows))


if __name__ == "__main__":
    main()
