"""`deepsmote report OUT`: one self-contained HTML page about a generate job.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..console import verbosity_options
from ..report import write_report


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--html",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Page to write [default: OUT/report.html].",
)
@verbosity_options
def report(out: Path, target: Path | None) -> None:
    """Write an HTML report of OUT: per-class counts, real vs synthetic images, timings, training loss."""
    target = target or out / "report.html"
    write_report(out, target)
    click.echo(f"wrote {target}")
