"""The output directory of a generation job: its settings, its lock, and which shards are done.

The bookkeeping is hidden files in OUT's top folder, never a folder, so no loader takes it for a
class or a shard: ``.deepsmote-job.json`` (the settings that fix the output bytes), written before
any unit, ``.deepsmote-done-<unit>`` marks, and ``.deepsmote.lock`` while a job runs (removed when
it ends). A rerun with the same settings resumes, skipping shards marked done; other settings
are refused unless ``overwrite``. A directory with content that no job wrote is never
touched, and ``overwrite`` removes only the files that the recorded job's plan names. A lock
stops two jobs writing into the same directory at once: it is taken before anything in OUT is
written or cleared, and a run removes OUT on failure only if it created OUT and held the lock,
so a job that loses the race removes nothing. A failed write (full disk, read-only OUT) is a
one-line :class:`DeepSMOTEError` naming OUT, and leaves no temporary file.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from .atomic import TMP_SUFFIX, fsync_dir
from .errors import DeepSMOTEError
from .plan import Unit
from .writers import METADATA_FILE, ROWS_PREFIX, write_atomic, write_error

JOB_FILE = ".deepsmote-job.json"
LOCK_FILE = ".deepsmote.lock"
DONE_PREFIX = ".deepsmote-done-"
# One line per unit, appended before the unit's files are written: with the done marks, the
# job's own record of the files it may have written, the only ones `overwrite` removes.
UNITS_FILE = ".deepsmote-units"
MANIFEST_FILE = "manifest.csv"
SUMMARY_FILE = "summary.json"
# Written after a job by `deepsmote report` (runtime/report.py): a new job's OUT must not keep it.
REPORT_FILE = "report.html"
# The names the writers give a unit's files (writers.py): per-class units and mixed shards.
_UNIT_FILE = re.compile(r"(real-)?class-\d{4,}-shard-\d{6,}(-\d{5,}\.png|\.npz)|train-\d{6,}\.(tar|parquet)")


def is_done_mark(name: str) -> bool:
    """Whether a file name in OUT is a unit's done mark."""
    return name.startswith(DONE_PREFIX)


def done_marks(path: Path) -> list[Path]:
    """The done marks in OUT ``path``."""
    return [p for p in Path(path).iterdir() if is_done_mark(p.name)] if Path(path).is_dir() else []


def refuse_out_inside_data(out: str | os.PathLike, data: str | os.PathLike) -> None:
    """Refuse an OUT inside (or equal to) a DATA directory: its shards would become DATA on the next read."""
    data_dir, out_dir = Path(data).resolve(), Path(out).resolve()
    if data_dir.is_dir() and out_dir.is_relative_to(data_dir):
        raise DeepSMOTEError(
            f"`out` {out} is inside DATA {data}; the next read of DATA would take the synthetic images "
            "for real ones, choose an `out` outside it"
        )


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

    def check(self, settings_known: bool = True) -> None:
        """Refuse, without writing anything, an OUT that this job may not use.

        With ``settings_known`` False, all but the comparison with a recorded job's settings: for a
        job that knows its settings only once DATA has been read.
        """
        if self._lock is not None:
            # Under our own lock: a probe of it would see this very job.
            return self._check_content(settings_known)
        if self.path.exists() and not self.path.is_dir():
            raise DeepSMOTEError(f"`out` {self.path} is a file; give a directory")
        if not self.path.exists():
            return None
        self._refuse_if_locked()
        return self._check_content(settings_known)

    def _check_content(self, settings_known: bool = True) -> None:
        job_file = self.path / JOB_FILE
        if not settings_known and job_file.exists():
            return
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Created by this run only if this mkdir made it: a concurrent job may make it first.
            self.path.mkdir()
            self._created = True
        except FileExistsError:
            self._created = False
        except OSError as exc:
            raise DeepSMOTEError(f"cannot create `out` {self.path}: {exc.strerror}") from None
        # Outside the try below: a run that did not get the lock removes nothing, not even an
        # OUT it created, which the job holding the lock is writing.
        self._acquire_lock()
        try:
            # Checked again under the lock: the first check ran before another job could finish.
            self.check()
            self._prepare()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is not None and self._lock is not None:
                self._discard_if_empty()
        finally:
            self._release_lock()

    # --- state ---------------------------------------------------------------------------------

    def _previous_settings(self) -> dict[str, Any]:
        try:
            previous = json.loads((self.path / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return previous if isinstance(previous, dict) else {}

    def _discard_if_empty(self) -> None:
        # A directory this run created, locked and finished no unit in is removed whole: a
        # failed run leaves nothing behind. Finished units are kept for the rerun.
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
        # Only what the job's own records name: the files and metadata rows of the units its done
        # marks and its units file name (also those of a unit that a killed run left unmarked), its
        # hidden partial files, its manifest, metadata, settings, summary and report. A forged or
        # foreign job file cannot make deepsmote delete or replace anything else: a file named like
        # a unit's that no record names is refused, before anything is removed.
        units = {mark.name.removeprefix(DONE_PREFIX) for mark in done_marks(self.path)} | self._started_units()
        remove, foreign = [], []
        for entry in self._entries():
            if entry.name.startswith(ROWS_PREFIX):
                if entry.name.removeprefix(ROWS_PREFIX).removesuffix(TMP_SUFFIX).removesuffix(".csv") in units:
                    remove.append(entry)
                continue
            name = entry.name.removeprefix(".").removesuffix(TMP_SUFFIX)
            ours = any(unit in units for unit in _units_named(name))
            if ours or (entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX)):
                remove.append(entry)
            elif _UNIT_FILE.fullmatch(name):
                foreign.append(entry)
        if foreign:
            raise DeepSMOTEError(
                f"`out` {self.path} holds {foreign[0].relative_to(self.path)}, named like a deepsmote output file "
                "but not recorded by the job there; move it away or choose another `out`"
            )
        for entry in remove:
            self._remove(entry)
        for folder in sorted({e.parent for e in remove} - {self.path}, reverse=True):
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                self._remove(folder)
        records = (MANIFEST_FILE, METADATA_FILE, SUMMARY_FILE, REPORT_FILE, UNITS_FILE, JOB_FILE)
        for record in (*done_marks(self.path), *(self.path / n for n in records)):
            if record.is_file() and not record.is_symlink():
                self._remove(record)

    def _started_units(self) -> set[str]:
        try:
            text = (self.path / UNITS_FILE).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
        return {line for line in text.splitlines() if line}

    def _entries(self) -> list[Path]:
        """The files in OUT and in its folders one level down (where writers put files), links left alone."""
        found = []
        for entry in self.path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                found += [e for e in entry.iterdir() if e.is_file() and not e.is_symlink()]
            elif entry.is_file() and not entry.is_symlink() and not is_done_mark(entry.name):
                found.append(entry)
        return found

    def _remove(self, entry: Path) -> None:
        with self._writing(entry):
            if entry.is_dir() and not entry.is_symlink():
                entry.rmdir()
            else:
                entry.unlink()

    def _remove_partials(self) -> None:
        # Hidden, as atomic_path names them: a user's file that ends in .partial is not ours.
        for partial in self.path.rglob(f".*{TMP_SUFFIX}"):
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

    def done_names(self) -> Iterator[str]:
        """The names of the units marked done, read from OUT one entry at a time."""
        with os.scandir(self.path) as entries:
            for entry in entries:
                if is_done_mark(entry.name):
                    yield entry.name.removeprefix(DONE_PREFIX)

    def mark_started(self, unit: Unit) -> None:
        """Record ``unit`` in the job's units file; call before writing any of its files."""
        target = self.path / UNITS_FILE
        with self._writing(target):
            # One short append per unit: whole lines, also from several processes (Ray).
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{unit.name}\n".encode())
            finally:
                os.close(fd)

    def mark_done(self, unit: Unit) -> None:
        """Record ``unit`` as complete; call after its files are in place."""
        marker = self.path / f"{DONE_PREFIX}{unit.name}"
        with self._writing(marker):
            marker.touch()
            # The unit's files were synced as they were written; now the mark itself.
            fsync_dir(self.path)

    def write_json(self, name: str, content: dict[str, Any]) -> None:
        """Write ``OUT/name`` atomically."""
        write_atomic(self.path, self.path / name, (json.dumps(content, indent=2) + "\n").encode())


def _units_named(name: str) -> tuple[str, ...]:
    """The unit names the file ``name`` (temporary prefix and suffix removed) may belong to: its
    stem (``<unit>.npz``), without ``train-`` (``train-<unit>.tar``) or without a sample number
    (``<unit>-00001.png``), so a file is matched against the units in one set lookup each."""
    stem = name.split(".", 1)[0]
    numbered = re.fullmatch(r"(.+)-\d{5,}", stem)
    return (stem, stem.removeprefix("train-"), *((numbered[1],) if numbered else ()))
