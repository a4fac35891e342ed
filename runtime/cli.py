"""The ``deepsmote`` command line.

Runtime commands import no torch. Commands that need torch (``train`` and ``export`` in
``deepsmote.training``, ``evaluate`` in ``deepsmote.evaluation``) are imported only when called,
with an install hint when torch is missing.

Ctrl-C (SIGINT) and SIGTERM stop a command the same clean way: the work in progress unwinds
(temporary files removed, locks released, finished shards and checkpoints kept), and one line
says what was kept and how to resume. The exit status is 128 + the signal number. A signal
also ends every onnxruntime run in flight (``RunOptions.terminate``): Python runs its handler
only between bytecodes, so a thread woken by the C-level handler (``signal.set_wakeup_fd``) ends
the runs, and a graph that would run for ever cannot keep the command from stopping.

Whatever the arguments and files, a command ends in success or one line ``Error: ...`` on stderr
and a non-zero exit, never a traceback: a :class:`DeepSMOTEError` names the problem and the fix
(exit 1), a usage error names the bad argument (exit 2: click's checks and every
:class:`InvalidInputError`, a value deepsmote checks itself), and anything else (a bug) is one
line naming the exception (exit 1).
``--debug`` or ``DEEPSMOTE_DEBUG=1`` shows the traceback instead, for a bug report. Warnings are
one line each (``UserWarning: ...``).

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import os
import signal
import sys

_COMMAND = os.path.basename(sys.argv[0]) in ("deepsmote", "cli.py") if sys.argv else False


def _stopped_while_starting(kind: type[BaseException], value: BaseException, tb: object) -> None:
    """Ctrl-C before the command has started (while modules load): one line and exit 130."""
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write("Interrupted.\n")
        sys.stderr.flush()
        os._exit(128 + signal.SIGINT)  # nothing has started, so nothing to clean up
    _previous_hook(kind, value, tb)


# Only in the `deepsmote` command itself (its script or `python -m deepsmote.runtime.cli`): a
# KeyboardInterrupt that escapes an import at the top of the script would be a traceback.
_previous_hook = sys.excepthook
if _COMMAND:
    sys.excepthook = _stopped_while_starting

import errno  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from types import FrameType  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from .console import NORMAL, QUIET, VERBOSE, one_line_warnings, set_verbosity  # noqa: E402
from .errors import TRAINING_MODULES, DeepSMOTEError, InvalidInputError, cli_message, missing_training_extra  # noqa: E402

# name -> "module:attribute"; imported on first use only.
_LAZY_COMMANDS = {
    "train": ("deepsmote.training.commands:train", "train an encoder/decoder and export a bundle"),
    "export": ("deepsmote.training.commands:export", "export a training checkpoint as a bundle"),
    "add-classifier": (
        "deepsmote.training.commands:add_classifier_command",
        "train the quality gate's classifier into a bundle (generate --filter)",
    ),
    "encode": ("deepsmote.runtime.commands.encode:encode", "DATA's codes as a latent cache for generate (torch-free)"),
    "generate": ("deepsmote.runtime.commands.generate:generate", "oversample DATA or CODES with a bundle (torch-free)"),
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
DEBUG_ENV = "DEEPSMOTE_DEBUG"
# click's exit status for a usage error; every option value deepsmote checks itself exits with it too.
USAGE_ERROR = 2


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
@click.option("--debug", is_flag=True, help=f"Show the traceback of an error (or set {DEBUG_ENV}=1).")
@click.version_option(package_name="deepsmote")
def cli(verbose: bool, quiet: bool, debug: bool) -> None:
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


_SESSION_MODULE = "deepsmote.runtime.bundle.session"


def _end_runs_on_signal(read_fd: int) -> None:
    """Until the write end closes: end every onnxruntime run at each SIGINT or SIGTERM written to ``read_fd``."""
    try:
        while data := os.read(read_fd, 512):
            # The module is imported where a command runs graphs; before that there is no run to end.
            session = sys.modules.get(_SESSION_MODULE)
            for signum in data:
                if signum in (signal.SIGINT, signal.SIGTERM) and session is not None:
                    session.terminate_runs(signum)
    finally:
        os.close(read_fd)


@contextmanager
def _signals_end_runs() -> Iterator[None]:
    """While a command runs, SIGINT and SIGTERM end its onnxruntime runs at once, from a thread.

    Left alone where this is not the main thread or another wakeup fd is set (a host's event loop).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    if previous != -1:
        signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)
        yield
        return
    watcher = threading.Thread(target=_end_runs_on_signal, args=(read_fd,), name="deepsmote-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(-1)
        os.close(write_fd)  # the watcher reads the end of the pipe and closes its end
        watcher.join(timeout=5)
        session = sys.modules.get(_SESSION_MODULE)
        if session is not None:
            # A process that goes on (a test, a host calling main) may run graphs again.
            session.allow_runs()


def _report_stop(interrupt: KeyboardInterrupt) -> None:
    """One line on what a signal stopped, what was kept and how to resume; exit 128 + signal."""
    terminated = isinstance(interrupt, _Terminated)
    notes = "; ".join(getattr(interrupt, "__notes__", []))
    # A blank line first closes the terminal's ^C echo, as click does.
    lead = "\n" if sys.stderr.isatty() and not terminated else ""
    click.echo(f"{lead}{'Terminated' if terminated else 'Interrupted'}{f': {notes}' if notes else '.'}", err=True)
    sys.exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))


_OS_HINTS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.ENAMETOOLONG: "use a shorter name (at most 255 bytes a name)",
    errno.EROFS: "write to a writable place",
    errno.EACCES: "check the permissions or use another place",
    errno.EPERM: "check the permissions or use another place",
}


def _os_error_message(exc: OSError) -> str:
    """One line for a failed file operation: what failed, on which file, and what to do."""
    name = exc.filename if exc.filename is not None else ""
    shown = os.fsdecode(name) if isinstance(name, bytes | str) else str(name)
    if len(shown) > 120:
        shown = f"{shown[:60]}...{shown[-40:]}"
    hint = _OS_HINTS.get(exc.errno or 0, "check the path and the disk")
    return f"{shown + ': ' if shown else ''}{exc.strerror}; {hint}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(message: str, code: int = 1) -> None:
    click.echo(f"Error: {_one_line(message)}", err=True)
    sys.exit(code)


def _debugging(argv: list[str]) -> bool:
    # Read before click parses anything, so a usage error can show its traceback too.
    return os.environ.get(DEBUG_ENV, "") not in ("", "0") or "--debug" in argv[: _command_index(argv)]


def _command_index(argv: list[str]) -> int:
    return next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))


def _usage_hint(argv: list[str]) -> str:
    command = argv[_command_index(argv)] if _command_index(argv) < len(argv) else ""
    return f"see 'deepsmote {command} --help'" if command in _LAZY_COMMANDS else "see 'deepsmote --help'"


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: one-line errors and a non-zero exit for bad input, a bug or a signal."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debugging(args)
    try:
        with _sigterm_as_interrupt(), _signals_end_runs(), one_line_warnings():
            return cli.main(args=args, prog_name="deepsmote", standalone_mode=False)
    except _Stopped as stopped:
        _report_stop(stopped.interrupt)
    except KeyboardInterrupt as interrupt:
        _report_stop(interrupt)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, InvalidInputError):
            # A value the project checks itself is a usage error, as click's own checks are: exit 2.
            _error(cli_message(str(exc)), USAGE_ERROR)
        if isinstance(exc, DeepSMOTEError):
            _error(cli_message(str(exc)))
        if isinstance(exc, click.UsageError):
            _error(f"{exc.format_message()} ({_usage_hint(args)})", exc.exit_code)
        if isinstance(exc, click.ClickException):
            _error(exc.format_message(), exc.exit_code)
        if isinstance(exc, OSError) and exc.strerror:
            # The system refused a file operation no check foresaw: the environment, not a bug.
            _error(_os_error_message(exc))
        if isinstance(exc, MemoryError):
            _error("out of memory; ask for less (fewer samples, smaller batches) or use a larger machine")
        # A bug: one line naming it, and how to get the traceback for a report.
        detail = _one_line(str(exc))[:300]
        _error(
            f"unexpected {type(exc).__name__}{f': {detail}' if detail else ''} "
            f"(a bug: rerun with --debug or {DEBUG_ENV}=1 for the traceback and report it)"
        )


def entry_point(argv: list[str] | None = None) -> None:
    """The ``deepsmote`` command: :func:`main`, then an exit without the last garbage collection.

    The interpreter's last collection at exit walks every object numba and onnxruntime made: 0.25
    s of a 1.2 s job on a 2-core EPYC once numba is loaded. Frozen objects are left out of it; the
    atexit handlers and the modules' teardown still run, every output was closed before ``main``
    returned, and the system takes the process's memory back whole.
    """
    try:
        main(argv)
    finally:
        gc.freeze()


if __name__ == "__main__":
    entry_point()
