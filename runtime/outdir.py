"""The output directory of a generation job: its settings, its lock, and which shards are done.

A job writes ``.deepsmote-job.json`` (the settings that fix the output bytes) before any
shard. A rerun with the same settings resumes, skipping shards marked done; other settings
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

from .atomic import TMP_SUFFIX
from .errors import DeepSMOTEError
from .plan import Shard, ShardPlan
from .writers import write_atomic, write_error

JOB_FILE = ".deepsmote-job.json"
LOCK_FILE = ".deepsmote.lock"
DONE_DIR = ".deepsmote-done"
SUMMARY_FILE = "summary.json"
# The names a shard's files and done mark have (writers.py): class, shard and, for a PNG, image.
_SHARD_NAME = re.compile(r"class-(\d{4,})-shard-(\d{6,})")
_SHARD_FILE = {
    "imagefolder": re.compile(rf"{_SHARD_NAME.pattern}-(\d{{5,}})\.png"),
    "npz": re.compile(rf"{_SHARD_NAME.pattern}\.npz"),
    "webdataset": re.compile(rf"{_SHARD_NAME.pattern}\.tar"),
}


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

    def check(self) -> None:
        """Refuse, without writing anything, an OUT that this job may not use."""
        if self._lock is not None:
            # Under our own lock: a probe of it would see this very job.
            return self._check_content()
        if self.path.exists() and not self.path.is_dir():
            raise DeepSMOTEError(f"`out` {self.path} is a file; give a directory")
        if not self.path.exists():
            return None
        self._refuse_if_locked()
        return self._check_content()

    def _check_content(self) -> None:
        job_file = self.path / JOB_FILE
        if not job_file.exists():
            foreign = [p.name for p in self.path.iterdir() if p.name not in {LOCK_FILE, DONE_DIR}]
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
        # A directory this run created, locked and finished no shard in is removed whole: a
        # failed run leaves nothing behind. Finished shards are kept for the rerun.
        done = self.path / DONE_DIR
        if self._created and self.path.exists() and not (done.exists() and any(done.iterdir())):
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
        with self._writing(self.path / DONE_DIR):
            (self.path / DONE_DIR).mkdir(exist_ok=True)
        write_atomic(self.path, job_file, json.dumps(self.settings, indent=1, sort_keys=True).encode())

    def _clear(self) -> None:
        # Only what the recorded job's plan and records name: a forged or foreign job file can
        # not make deepsmote delete files it never wrote.
        previous = self._previous_settings()
        plan = _recorded_plan(previous)
        pattern = _SHARD_FILE.get(previous.get("format"))  # type: ignore[arg-type]
        if plan is not None and pattern is not None:
            folders = [self.path]
            if previous.get("format") == "imagefolder":
                folders = [d for d in self.path.iterdir() if d.is_dir() and not d.is_symlink() and d.name[0] != "."]
            for folder in folders:
                removed = False
                for entry in folder.iterdir():
                    if _planned(pattern, entry.name.removeprefix(".").removesuffix(TMP_SUFFIX), plan):
                        self._remove(entry)
                        removed = True
                if removed and folder != self.path and not any(folder.iterdir()):
                    self._remove(folder)
        done = self.path / DONE_DIR
        if done.is_dir() and not done.is_symlink():
            for mark in done.iterdir():
                if _SHARD_NAME.fullmatch(mark.name):
                    self._remove(mark)
        for record in (self.path / SUMMARY_FILE, self.path / JOB_FILE):
            if record.is_file() and not record.is_symlink():
                self._remove(record)

    def _remove(self, entry: Path) -> None:
        with self._writing(entry):
            if entry.is_dir() and not entry.is_symlink():
                entry.rmdir()
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
        self._lock = fd

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    # --- shards --------------------------------------------------------------------------------

    def is_done(self, shard: Shard) -> bool:
        """Whether ``shard`` was completed by this job or an interrupted run of it."""
        return (self.path / DONE_DIR / shard.name).exists()

    def mark_done(self, shard: Shard) -> None:
        """Record ``shard`` as complete; call after its files are in place."""
        marker = self.path / DONE_DIR / shard.name
        with self._writing(marker):
            marker.touch()

    def done_shards(self, plan: ShardPlan) -> list[Shard]:
        """The shards of ``plan`` marked done: read from the marks, so the cost is in what is on disk."""
        done = self.path / DONE_DIR
        if not done.is_dir():
            return []
        shards = []
        for mark in done.iterdir():
            match = _SHARD_NAME.fullmatch(mark.name)
            if match and _in_plan(plan, int(match[1]), int(match[2])):
                shards.append(plan.shard(int(match[1]), int(match[2])))
        return shards

    def write_json(self, name: str, content: dict[str, Any]) -> None:
        """Write ``OUT/name`` atomically."""
        write_atomic(self.path, self.path / name, (json.dumps(content, indent=2) + "\n").encode())


def _recorded_plan(settings: dict[str, Any]) -> ShardPlan | None:
    """The shard plan a job file records, or None when it records none that makes sense."""
    counts, size = settings.get("new_counts"), settings.get("shard_size")
    if not isinstance(counts, list) or not all(type(n) is int and n >= 0 for n in counts):
        return None
    if type(size) is not int or size < 1:
        return None
    return ShardPlan(counts, size)


def _in_plan(plan: ShardPlan, class_index: int, shard_index: int) -> bool:
    return class_index < len(plan.per_class) and shard_index < plan.per_class[class_index]


def _planned(pattern: re.Pattern[str], name: str, plan: ShardPlan) -> bool:
    """Whether ``name`` is the name of a file of one of ``plan``'s shards."""
    match = pattern.fullmatch(name)
    if not match or not _in_plan(plan, int(match[1]), int(match[2])):
        return False
    return len(match.groups()) < 3 or int(match[3]) < plan.shard(int(match[1]), int(match[2])).count
