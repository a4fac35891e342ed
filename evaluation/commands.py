"""`deepsmote dataset imbalance` (numpy only) and `deepsmote evaluate` (torch, imported when called).

This module imports no torch, so that `deepsmote dataset` runs with the runtime alone; the
evaluation protocol is imported inside `evaluate`, which gives the CLI's install hint when torch is
missing (docs/design.md §5).
"""

from __future__ import annotations

from pathlib import Path

import click
from deepsmote.runtime.bundle import PROVIDERS
from deepsmote.runtime.console import verbosity_options
from deepsmote.runtime.errors import TRAINING_MODULES, DeepSMOTEError, missing_training_extra
from deepsmote.runtime.readers import read_dataset

from .datasets import parse_counts, write_imbalanced


@click.group()
def dataset() -> None:
    """Make datasets for the evaluation protocol."""


@dataset.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--counts", help="Images per class in class order, e.g. 4000,2000,1000 (later classes left out).")
@click.option("--per-class", type=int, help="The same number of images from every class (a balanced set).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .npz to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the choice of images.")
@click.option("--labels", type=click.Path(path_type=Path), help="IDX labels file, if not found by name.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@verbosity_options
def imbalance(
    src: Path, counts: str | None, per_class: int | None, out: Path, seed: int, labels: Path | None, overwrite: bool
) -> None:
    """Write a seeded subset of SRC with the given number of images per class.

    SRC is any DATA (ImageFolder directory, .npz, IDX images file). Classes are in DATA's order
    (numeric labels numerically). The paper's Fashion-MNIST/MNIST sets (Table I):
    train 4000,2000,1000,750,500,350,200,100,60,40 from the training split; imbalanced test
    1000,500,250,187,125,87,50,25,15,10 and balanced test --per-class 1000 from the test split.
    The .npz holds uint8 `images` and the source's label values as `labels`.
    """
    if (counts is None) == (per_class is None):
        raise DeepSMOTEError("give exactly one of --counts and --per-class")
    if per_class is not None and per_class < 1:
        raise DeepSMOTEError(f"--per-class must be a positive integer, got {per_class}")
    wanted = parse_counts(counts) if counts is not None else None
    if out.exists() and not overwrite:
        raise DeepSMOTEError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    data = read_dataset(src, labels)
    if wanted is None:
        wanted = (per_class,) * len(data.classes)
    subset, _ = write_imbalanced(data, wanted, seed, out, overwrite=overwrite)
    left_out = data.classes[len(wanted) :]
    per = ", ".join(f"{name}: {n}" for name, n in zip(subset.classes, subset.class_counts(), strict=True))
    click.echo(
        f"wrote {out}: {len(subset.labels)} images (seed {seed}; {per})"
        + (f"; classes left out: {', '.join(left_out)}" if left_out else "")
    )


def _parse_tests(specs: tuple[str, ...]) -> dict[str, Path]:
    tests: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).stem, spec
        if not name or not path or name in tests:
            raise DeepSMOTEError(f"--test must be NAME=DATA with distinct names, got {spec!r}")
        tests[name] = Path(path)
    return tests


def _parse_ints(text: str, option: str) -> tuple[int, ...]:
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise DeepSMOTEError(f"{option} must be comma-separated non-negative integers, got {text!r}")
    return tuple(int(part) for part in parts)


@click.command()
@click.argument("train", type=click.Path(path_type=Path))
@click.option(
    "--test", "tests", multiple=True, required=True, help="A test set as NAME=DATA; repeat, e.g. imbalanced=... ."
)
@click.option("--bundle", type=click.Path(path_type=Path), help="DeepSMOTE bundle (for the deepsmote method).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory for results.json/.md.")
@click.option(
    "--methods",
    default="none,random,smote,deepsmote,balanced-softmax,deferred",
    show_default=True,
    help="Comma-separated; see the command's help for the names.",
)
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated; one classifier per seed.")
@click.option("--classifier", type=click.Choice(["cnn", "resnet18"]), default="cnn", show_default=True)
@click.option("--width", type=int, help="Classifier width [default: cnn 16, resnet18 64].")
@click.option("--steps", type=int, default=2000, show_default=True, help="Optimizer steps per classifier.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate (cosine decay).")
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--eval-every", type=int, default=200, show_default=True, help="Steps between validation scorings.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Validation share of each class.")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seeds the validation split.")
@click.option("--k", "k_neighbors", type=int, default=5, show_default=True, help="Neighbours of both SMOTEs.")
@click.option("--device", type=click.Choice(PROVIDERS), default="auto", show_default=True)
@click.option("--threads", type=int, help="torch/onnxruntime/numba threads [default: the libraries' own].")
@click.option("--workers", type=int, default=1, show_default=True, help="Classifiers trained at once, in processes.")
@click.option("--overwrite", is_flag=True, help="Replace results already in --out.")
@verbosity_options
def evaluate(
    train: Path,
    tests: tuple[str, ...],
    bundle: Path | None,
    out: Path,
    methods: str,
    seeds: str,
    classifier: str,
    width: int | None,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    eval_every: int,
    val_fraction: float,
    split_seed: int,
    k_neighbors: int,
    device: str,
    threads: int | None,
    workers: int,
    overwrite: bool,
) -> None:
    """Train the same classifier on TRAIN as each method leaves it; score it on every --test.

    Methods: none (TRAIN as it is), random (RandomOverSampler), smote (SMOTE on pixels),
    deepsmote (with --bundle), balanced-softmax (TRAIN as it is, balanced softmax loss), deferred
    (TRAIN as it is, then random oversampling for the last 20% of the steps), and DeepSMOTE recipes
    (with --bundle): deepsmote-filter (the bundle's classifier keeps candidates with p >= 0.9),
    deepsmote-mixed (half the gap synthetic, half real repeats), deepsmote-borderline,
    deepsmote-adasyn (latent samplers), deepsmote-deferred (DeepSMOTE's set for the last 20%).
    A validation split carved from TRAIN selects each classifier's
    weights; the oversamplers see only the rest of TRAIN, and test sets are never resampled.
    Reports ACSA, macro GM, macro F1 and per-class recall, mean ± std over seeds.
    """
    try:
        from .classifiers import ClassifierConfig
        from .protocol import ProtocolConfig, results_markdown
        from .protocol import evaluate as run_protocol
    except ModuleNotFoundError as exc:
        # The CLI's hint fires when a command's module fails to import; this one imports torch
        # only here, so it gives the same hint itself.
        if exc.name and exc.name.split(".")[0] in TRAINING_MODULES:
            raise missing_training_extra(exc.name) from None
        raise

    config = ProtocolConfig(
        methods=tuple(m.strip() for m in methods.split(",")),
        seeds=_parse_ints(seeds, "--seeds"),
        classifier=ClassifierConfig(
            preset=classifier,  # type: ignore[arg-type]  # click.Choice has checked it
            width=width,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            eval_every=eval_every,
        ),
        val_fraction=val_fraction,
        split_seed=split_seed,
        k_neighbors=k_neighbors,
        device=device,
        threads=threads,
        workers=workers,
    )
    test_paths = _parse_tests(tests)
    if (out / "results.json").exists() and not overwrite:
        raise DeepSMOTEError(f"{out} already holds results; pass --overwrite to replace them or choose another --out")
    results = run_protocol(
        read_dataset(train),
        {name: read_dataset(path) for name, path in test_paths.items()},
        config,
        bundle=bundle,
        out_dir=out,
        log=lambda line: click.echo(line, err=True),
    )
    click.echo(results_markdown(results))
