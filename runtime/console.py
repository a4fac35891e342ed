"""What the command line prints besides results: how much (``-q``/``-v``), progress, warnings.

One home for the habits every command shares. A progress bar goes to a terminal; where stderr is
not one (CI, a log file) each finished shard or epoch is one line instead, so a long run is never
silent. ``-q`` silences both. Library loggers (onnxscript, onnx-ir, torch.onnx, Ray) stay at
WARNING unless ``-v``. A Python warning is one line, ``Warning: ...``, without a source path.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from .errors import cli_message

QUIET, NORMAL, VERBOSE = -1, 0, 1
_level = NORMAL
# Loggers of libraries that report INFO on every export or start-up; quiet unless -v.
NOISY_LIBRARIES = ("onnxscript", "onnx_ir", "torch.onnx", "torch._dynamo", "torch.export", "ray", "numba")


def verbosity() -> int:
    """QUIET, NORMAL or VERBOSE, as the command line set it."""
    return _level


def set_verbosity(level: int) -> None:
    """Set how much commands print, and the loggers' levels to match."""
    global _level
    _level = level
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.INFO if level >= VERBOSE else logging.WARNING)
    logging.getLogger("deepsmote").setLevel(logging.INFO if level >= VERBOSE else logging.WARNING)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO if level >= VERBOSE else logging.WARNING)


def _set_from_flag(level: int) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            set_verbosity(level)

    return callback


def verbosity_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``-q/--quiet`` and ``-v/--verbose`` for a command, accepted after the subcommand's name."""
    quiet = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_from_flag(QUIET),
        help="Print results only: no progress.",
    )
    verbose = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_set_from_flag(VERBOSE),
        help="Log details, library INFO messages included.",
    )
    return quiet(verbose(command))


def format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """``warnings.formatwarning`` for the command line: ``Warning: MESSAGE`` on one line, parameters as flags."""
    return "Warning: " + cli_message(" ".join(str(message).split())) + "\n"


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Format warnings as :func:`format_warning` does while a command runs.

    The format is replaced, not ``showwarning``, so where warnings go (stderr, or a caller's
    ``catch_warnings``) stays as it was.
    """
    previous = warnings.formatwarning
    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        warnings.formatwarning = previous


def duration(seconds: float) -> str:
    """``seconds`` as a person reads a wait: ``40 s``, ``3.5 min``, ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class LineProgress:
    """Progress where stderr is not a terminal: one line per finished step (shard, epoch), with the
    time left at this run's pace once a step is done (a bar on a terminal shows its own)."""

    def __init__(self, total: int, initial: int, what: str, unit: str) -> None:
        self.total, self.done, self.what, self.unit = total, initial, what, unit
        self.initial = initial
        self.steps = 0
        self.began = time.perf_counter()

    def update(self, count: int, detail: str = "") -> None:
        """Record ``count`` more units of work and print one line."""
        self.done += count
        self.steps += 1
        seconds = time.perf_counter() - self.began
        extra = f", {detail}" if detail else ""
        left = ""
        if 0 < self.done < self.total and self.done > self.initial:
            left = f", about {duration(seconds / (self.done - self.initial) * (self.total - self.done))} left"
        line = f"{self.what}: {self.done}/{self.total} {self.unit}{extra}, {seconds:.1f} s{left}"
        print(line, file=sys.stderr, flush=True)


def interactive() -> bool:
    """Whether progress bars are wanted: stderr is a terminal and not ``-q``."""
    return sys.stderr.isatty() and _level > QUIET


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)
