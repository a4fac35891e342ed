"""The ``deepsmote`` command line.

Runtime commands import no torch. Commands that need torch (``train`` and ``export`` in
``deepsmote.training``, ``evaluate`` in ``deepsmote.evaluation``) are imported only when called,
with an install hint when torch is missing.

Ctrl-C (SIGINT) and SIGTERM stop a command the same clean way: the work in progress unwinds
(temporary files removed, locks released, finished shards and checkpoints kept), and one line
says what was kept and how to resume. The exit status is 128 + the signal number.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from .console import NORMAL, QUIET, VERBOSE, one_line_warnings, set_verbosity
from .errors import TRAINING_MODULES, DeepSMOTEError, cli_message, missing_training_extra

# name -> "module:attribute"; imported on first use only.
_LAZY_COMMANDS = {
    "train": ("deepsmote.training.commands:train", "train an encoder/decoder and export a bundle"),
    "export": ("deepsmote.training.commands:export", "export a training checkpoint as a bundle"),
    "generate": ("deepsmote.runtime.commands.generate:generate", "oversample DATA with a bundle (torch-free)"),
    "inspect": ("deepsmote.runtime.commands.inspect:inspect", "print a bundle's summary and check its hashes"),
    "grid": ("deepsmote.runtime.commands.grid:grid", "PNG of real vs synthetic images per class"),
    "report": ("deepsmote.runtime.commands.report:report", "one HTML page about a generate job's OUT"),
    "demo": ("deepsmote.runtime.commands.demo:demo", "train, export and generate on the embedded dataset"),
    "dataset": ("deepsmote.evaluation.commands:dataset", "make the protocol's imbalanced/test sets"),
    "evaluate": (
        "deepsmote.evaluation.commands:evaluate",
        "compare classifiers trained with and without oversampling",
    ),
}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise KeyboardInterrupt, so both unwind alike."""


class _Stopped(Exception):
    """A command stopped by a signal; carries the KeyboardInterrupt past click to :func:`main`.

    click turns a KeyboardInterrupt into a bare ``Abort`` and drops the notes that say what
    was kept, so the group wraps it before click sees it.
    """

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(str(interrupt))
        self.interrupt = interrupt


class _LazyGroup(click.Group):
    """A group whose subcommands are imported when invoked, so `generate` never loads torch."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        target, _ = _LAZY_COMMANDS[cmd_name]
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in TRAINING_MODULES:
                raise missing_training_extra(exc.name) from None
            raise
        return getattr(module, attribute)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            raise _Stopped(interrupt) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help lists every command without importing torch.
        rows = [(name, help_text) for name, (_, help_text) in sorted(_LAZY_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log details (also after the command's name).")
@click.option("-q", "--quiet", is_flag=True, help="Print results only (also after the command's name).")
@click.version_option(package_name="deepsmote")
def cli(verbose: bool, quiet: bool) -> None:
    """DeepSMOTE oversampling of imbalanced image data."""
    set_verbosity(VERBOSE if verbose else QUIET if quiet else NORMAL)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM stop the command like Ctrl-C, unless someone else already handles it."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _report_stop(interrupt: KeyboardInterrupt) -> None:
    """One line on what a signal stopped, what was kept and how to resume; exit 128 + signal."""
    terminated = isinstance(interrupt, _Terminated)
    notes = "; ".join(getattr(interrupt, "__notes__", []))
    # A blank line first closes the terminal's ^C echo, as click does.
    lead = "\n" if sys.stderr.isatty() and not terminated else ""
    click.echo(f"{lead}{'Terminated' if terminated else 'Interrupted'}{f': {notes}' if notes else '.'}", err=True)
    sys.exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: one-line errors and a non-zero exit for bad input or a signal."""
    try:
        with _sigterm_as_interrupt(), one_line_warnings():
            return cli.main(args=argv, prog_name="deepsmote", standalone_mode=False)
    except _Stopped as stopped:
        _report_stop(stopped.interrupt)
    except DeepSMOTEError as exc:
        click.echo(f"Error: {cli_message(str(exc))}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as interrupt:
        _report_stop(interrupt)


if __name__ == "__main__":
    main()
