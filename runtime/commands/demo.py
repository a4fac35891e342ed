"""`deepsmote demo`: the main job on the embedded Fashion-MNIST subset, start to finish.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click

from ..console import verbosity_options
from ..errors import DeepSMOTEError
from ..outdir import REPORT_FILE

MARKER = "demo.json"


def _run(command: str, args: list[str]) -> None:
    from ..cli import cli

    click.echo(f"\n$ deepsmote {command} {' '.join(args)}")
    cli.get_command(click.get_current_context(), command).main(args=args, standalone_mode=False)


@click.command()
@click.option("--out", default="demo-output", show_default=True, type=click.Path(path_type=Path))
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--width", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--latent-dim", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--overwrite", is_flag=True, help="Replace a previous demo's output.")
@verbosity_options
def demo(out: Path, epochs: int, width: int, latent_dim: int, seed: int, overwrite: bool) -> None:
    """Train a small model on the embedded 100:1 Fashion-MNIST subset, export it, generate a
    balanced set with the torch-free runtime, draw real vs synthetic images and write the report."""
    from deepsmote.data import FMNIST_CLASSES, fmnist_mini

    if out.exists():
        ours = (out / MARKER).exists() or not any(out.iterdir())
        if not ours:
            raise DeepSMOTEError(f"--out {out} exists and is not a demo output; choose another --out")
        if not overwrite:
            raise DeepSMOTEError(f"--out {out} holds a previous demo; pass --overwrite to replace it")
        shutil.rmtree(out)
    start = time.perf_counter()
    data = str(fmnist_mini("train"))
    bundle, generated, picture = out / "bundle", out / "generated", out / "grid.png"
    try:
        _run(
            "train",
            [
                data,
                "--out",
                str(bundle),
                "--run-dir",
                str(out / "training"),
                "--epochs",
                str(epochs),
                "--width",
                str(width),
                "--latent-dim",
                str(latent_dim),
                "--seed",
                str(seed),
            ],
        )
        _run("generate", [str(bundle), data, "--out", str(generated), "--seed", str(seed)])
        _run("grid", [str(bundle), data, "--out", str(picture), "--seed", str(seed), "--interpolate", "0,1"])
        _run("report", [str(generated), "--names", ",".join(FMNIST_CLASSES)])
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    summary = json.loads((generated / "summary.json").read_text())
    record = {
        "seconds": round(time.perf_counter() - start, 1),
        "bundle": str(bundle),
        "generated": str(generated),
        "grid": str(picture),
        "report": str(generated / REPORT_FILE),
        "counts": summary["counts"],
    }
    (out / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    click.echo(
        f"\ndemo done in {record['seconds']} s: bundle {bundle}, images {generated}, grid {picture}, "
        f"report {record['report']}"
    )
