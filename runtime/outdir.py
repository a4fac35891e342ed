"""The output directory of a generation job: its settings, its lock, and which shards are done.

The bookkeeping is hidden files in OUT's top folder, never a folder, so no loader takes it for a
class or a shard: ``.deepsmote-job.json`` (the settings that fix the output bytes), written before
any unit, ``.deepsmote-done-<unit>`` marks, and ``.deepsmote.lock`` while a job runs (removed when
it ends). A rerun with the same settings resumes, skipping shards marked done; other settings
are refused unless ``overwrite``. A directory with content that no job wrote is never
touched. A lock stops two jobs writing into the same directory at once. A failed write (full
disk, read-only OUT) is a one-line :class:`DeepSMOTEError` naming OUT, and leaves no
temporary file.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from .atomic import TMP_SUFFIX
from .errors import DeepSMOTEError
from .plan import Unit
from .writers import write_atomic, write_error

JOB_FILE = ".deepsmote-job.json"
LOCK_FILE = ".deepsmote.lock"
DONE_PREFIX = ".deepsmote-done-"


def is_done_mark(name: str) -> bool:
    """Whether a file name in OUT is a unit's done mark."""
    return name.startswith(DONE_PREFIX)


def done_marks(path: Path) -> list[Path]:
    """The done marks in OUT ``path``."""
    return [p for p in Path(path).iterdir() if is_done_mark(p.name)] if Path(path).is_dir() else []


class OutputDir:
    """Context manager that prepares, locks and tracks a job's output directory.

    Parameters
    ----------
    path : Path
        OUT.
    settings : dict
        JSON-serialisable settings that determine the output bytes.
    overwrite : bool
        Replace a previous job's output made with other settings.
    """

    def __init__(self, path: Path, settings: dict[str, Any], overwrite: bool = False) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings))
        self.overwrite = overwrite
        self.resumed = False
        self._created = False
        self._lock: int | None = None

    def check(self) -> None:
        """Refuse, without writing anything, an OUT that this job may not use."""
        if self.path.exists() and not self.path.is_dir():
            raise DeepSMOTEError(f"`out` {self.path} is a file; give a directory")
        if not self.path.exists():
            return
        self._refuse_if_locked()
        job_file = self.path / JOB_FILE
        if not job_file.exists():
            foreign = [p.name for p in self.path.iterdir() if p.name != LOCK_FILE and not is_done_mark(p.name)]
            if foreign:
                raise DeepSMOTEError(
                    f"`out` {self.path} is not empty and was not made by deepsmote generate "
                    f"(holds {foreign[0]!r}); choose a new or empty directory"
                )
            return
        previous = self._previous_settings()
        if previous != self.settings and not self.overwrite:
            changed = sorted(k for k in {*self.settings, *previous} if previous.get(k) != self.settings.get(k))
            raise DeepSMOTEError(
                f"`out` {self.path} holds a job made with other settings (differs in: {', '.join(changed)}); "
                "pass `overwrite` to replace it, or choose another `out`"
            )

    def __enter__(self) -> OutputDir:
        self.check()
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeepSMOTEError(f"cannot create `out` {self.path}: {exc.strerror}") from None
        try:
            self._acquire_lock()
            self._prepare()
        except BaseException:
            self.__exit__(None, None, None)
            self._discard_if_empty()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._release_lock()
        if kind is not None:
            self._discard_if_empty()

    # --- state ---------------------------------------------------------------------------------

    def _previous_settings(self) -> dict[str, Any]:
        try:
            previous = json.loads((self.path / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return previous if isinstance(previous, dict) else {}

    def _discard_if_empty(self) -> None:
        # A directory this run created and finished no shard in is removed whole: a failed
        # run leaves nothing behind. Finished shards are kept for the rerun.
        if self._created and self.path.exists() and not any(is_done_mark(p.name) for p in self.path.iterdir()):
            shutil.rmtree(self.path, ignore_errors=True)

    @contextlib.contextmanager
    def _writing(self, target: Path) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise write_error(self.path, target, exc) from None

    def _prepare(self) -> None:
        job_file = self.path / JOB_FILE
        if job_file.exists():
            if self._previous_settings() == self.settings:
                self.resumed = True
                self._remove_partials()
                return
            self._clear()
        write_atomic(self.path, job_file, json.dumps(self.settings, indent=1, sort_keys=True).encode())

    def _clear(self) -> None:
        for entry in self.path.iterdir():
            if entry.name == LOCK_FILE:
                continue
            with self._writing(entry):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def _remove_partials(self) -> None:
        for partial in self.path.rglob(f"*{TMP_SUFFIX}"):
            with self._writing(partial):
                partial.unlink()

    def _in_use(self) -> DeepSMOTEError:
        return DeepSMOTEError(
            f"`out` {self.path} is in use by another deepsmote job; wait for it or choose another `out`"
        )

    def _refuse_if_locked(self) -> None:
        # A probe before the job reads or fits anything, so a second job is refused at once; the
        # lock taken in __enter__ is what keeps jobs apart.
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._in_use() from None
        finally:
            os.close(fd)

    def _acquire_lock(self) -> None:
        with self._writing(self.path / LOCK_FILE):
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._in_use() from None
        # The job that held the lock before may have removed the file as it ended; a lock on that
        # unlinked file would keep no one out, so the lock is taken again on the file now there.
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path / LOCK_FILE).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            self._acquire_lock()
            return
        self._lock = fd

    def _release_lock(self) -> None:
        if self._lock is not None:
            # Removed while still held, so a finished run leaves no lock file behind.
            with contextlib.suppress(OSError):
                os.unlink(self.path / LOCK_FILE)
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    # --- shards --------------------------------------------------------------------------------

    def is_done(self, unit: Unit) -> bool:
        """Whether ``unit`` was completed by this job or an interrupted run of it."""
        return (self.path / f"{DONE_PREFIX}{unit.name}").exists()

    def mark_done(self, unit: Unit) -> None:
        """Record ``unit`` as complete; call after its files are in place."""
        marker = self.path / f"{DONE_PREFIX}{unit.name}"
        with self._writing(marker):
            marker.touch()

    def write_json(self, name: str, content: dict[str, Any]) -> None:
        """Write ``OUT/name`` atomically."""
        write_atomic(self.path, self.path / name, (json.dumps(content, indent=2) + "\n").encode())
