"""`deepsmote report OUT`: one self-contained HTML page about a generate job.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..console import verbosity_options
from ..outdir import REPORT_FILE
from ..report import write_report


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--html",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Page to write [default: OUT/report.html].",
)
@click.option(
    "--data",
    type=click.Path(path_type=str),
    help="The DATA the job read: real images to compare with when OUT holds none (--synthetic-only).",
)
@click.option("--names", help="Display names of the classes, comma-separated, in the job's class order.")
@verbosity_options
def report(out: Path, target: Path | None, data: str | None, names: str | None) -> None:
    """Write an HTML report of OUT: per-class counts and quality numbers, real vs synthetic images, each
    of the closest synthetic images beside its nearest real one, timings and the training loss curves."""
    target = target or out / REPORT_FILE
    write_report(out, target, data, None if names is None else [n.strip() for n in names.split(",")])
    click.echo(f"wrote {target}")
