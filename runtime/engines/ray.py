"""The Ray engine: the job's shards on a pool of Ray actors, locally or on an existing cluster.

The fitted synthesizer is put in Ray's object store once; each actor fetches it and opens its
onnxruntime sessions once, when it starts. The driver hands each actor a shard at a time,
with one more queued so that it never waits for the driver. The actor
makes the shard's images (``Synthesizer.images``), writes them with the format's writer and marks it done, so
the output layout is the local engine's and a rerun resumes from the same marks.

Fault tolerance is Ray's own: actors are created with ``max_restarts`` and
``max_task_retries``, so when a worker process dies Ray restarts it and reruns the shards it
had taken and not reported. One it had already marked done is skipped; the one it was working
on is redone. A shard's bytes depend only on (seed, class, shard) and every file is written
under a temporary name and renamed, so a redone shard leaves neither a duplicate nor a gap.

Workers write into OUT themselves, so on a cluster OUT must be on storage that every node
mounts at the same path; each worker checks that it sees the job's OUT before taking work.

Internal module: use the public names of :mod:`deepsmote.runtime.engines`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import DeepSMOTEError, InvalidInputError
from ..outdir import JOB_FILE, OutputDir
from ..plan import Unit
from ..synthesis import Synthesizer
from ..writers import UnitWriter, make_writer

INSTALL_HINT = "`engine` ray needs Ray: pip install 'deepsmote[ray]'"
# Shards given to an actor beyond the one it runs: one is enough to hide the round trip.
QUEUED_PER_WORKER = 1
# How long actors may take to be placed and started before the job gives up.
STARTUP_TIMEOUT_S = 600.0


def import_ray() -> ModuleType:
    """Import Ray, or fail with the install hint.

    Raises
    ------
    DeepSMOTEError
        If Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise DeepSMOTEError(INSTALL_HINT) from None
    return ray


class ShardWorker:
    """One Ray actor's state: the writer, OUT, and the synthesizer once fetched.

    The synthesizer reaches the actor as an object reference inside a list with each call, which
    Ray leaves unresolved: the actor fetches it once per process, and again only after a
    restart. (An actor that took it as a constructor argument would depend on Ray keeping
    constructor arguments for restarts, which Ray warns it may not.)

    Parameters
    ----------
    fmt : str
        Output format name.
    classes : sequence of str
        Class names, for the writer.
    out : Path
        OUT, absolute.
    settings : dict
        The job's settings, as the driver wrote them to ``OUT/.deepsmote-job.json``.
    """

    def __init__(self, fmt: str, classes: Sequence[str], out: Path, settings: dict[str, Any]) -> None:
        self.out = OutputDir(out, settings)
        self.fmt, self.classes = fmt, list(classes)
        self._writer: UnitWriter | None = None
        self._synthesizer: Synthesizer | None = None

    def out_problem(self) -> str | None:
        """Why this worker cannot write the job's OUT, or None."""
        try:
            written = json.loads((self.out.path / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            written = None
        if written == self.out.settings:
            return None
        return (
            f"the Ray worker on {socket.gethostname()} does not see the job's `out` {self.out.path}; "
            "on a Ray cluster OUT must be on storage that every node mounts at the same path"
        )

    def ready(self, box: Sequence[Any]) -> str | None:
        """Check OUT, fetch the synthesizer and open its sessions; return why it cannot work, or None.

        Opening the sessions here, once per worker, makes a worker that cannot run the bundle
        (a missing provider, say) fail before it takes work.
        """
        problem = self.out_problem()
        if problem is None:
            try:
                self._fetch(box).models()
            except DeepSMOTEError as exc:
                problem = f"the Ray worker on {socket.gethostname()} cannot run the bundle: {exc}"
        return problem

    def run(self, box: Sequence[Any], shard: Unit) -> Unit:
        """Synthesize, write and mark done one shard; return it."""
        if self.out.is_done(shard):
            # Ray reruns every task a dead worker had not reported, including one it finished
            # just before it died: the mark says that shard's files are complete.
            return shard
        synthesizer = self._fetch(box)
        if self._writer is None:
            # PNGs on the threads the worker's sessions run on (its reserved CPUs).
            self._writer = make_writer(self.fmt, self.out.path, self.classes, synthesizer.threads or 1)
        self.out.mark_started(shard)
        self._writer.write(shard, synthesizer.samples(shard))
        self.out.mark_done(shard)
        return shard

    def _fetch(self, box: Sequence[Any]) -> Synthesizer:
        if self._synthesizer is None:
            import ray

            self._synthesizer = ray.get(box[0])
        return self._synthesizer


@contextmanager
def ray_connection(address: str | None, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray, initialised: joined to ``address``, or a new local instance when there is none.

    An already initialised Ray (a caller's own ``ray.init``) is used as it is. Ray is shut down
    on exit only if this call initialised it; on a cluster that only disconnects this driver.

    Parameters
    ----------
    address : str or None
        A Ray address (``ray://host:10001``, ``host:6379``, ``auto``); None uses ``RAY_ADDRESS``
        when it is set, else starts a local Ray.
    num_cpus : int, optional
        CPUs of a local Ray that this call starts; all cores when None.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # Ray's notices (token authentication, a local instance started) would clutter the CLI's
    # output; its failures reach the user as DeepSMOTEError, and worker logs stay in Ray's log files.
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        options.update(address="local", num_cpus=num_cpus, include_dashboard=False)
    else:
        options.update(address=address)
    in_main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread else None
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at `address` {address}" if address else "locally"
        raise DeepSMOTEError(f"cannot start or reach Ray {where}: {exc}") from None
    # ray.init replaces the SIGTERM handler with an immediate exit; a handler the caller had set
    # (the CLI's says what was kept and how to resume) is put back: it unwinds through the
    # shutdown below all the same.
    if on_sigterm not in (None, signal.SIG_DFL):
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_options(
    workers: int | None, cpus_per_worker: float, gpus_per_worker: float | None, max_retries: int
) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidInputError(f"workers must be a positive integer or None, got {workers!r}")
    if not isinstance(cpus_per_worker, int | float) or cpus_per_worker <= 0:
        raise InvalidInputError(f"cpus_per_worker must be a positive number, got {cpus_per_worker!r}")
    if gpus_per_worker is not None and (not isinstance(gpus_per_worker, int | float) or gpus_per_worker < 0):
        raise InvalidInputError(f"gpus_per_worker must be a non-negative number or None, got {gpus_per_worker!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise InvalidInputError(f"max_retries must be a non-negative integer, got {max_retries!r}")


def _worker_count(ray: ModuleType, workers: int | None, cpus: float, gpus: float) -> int:
    if workers is not None:
        return workers
    resources = ray.cluster_resources()
    if gpus > 0:
        count = int(resources.get("GPU", 0) // gpus)
        if count < 1:
            raise DeepSMOTEError("the bundle runs on CUDA but the Ray cluster has no GPU; pass `provider` cpu")
        return count
    return max(1, int(resources.get("CPU", 1) // cpus))


def _last_line(exc: BaseException) -> str:
    # Ray's errors carry the remote traceback; the CLI prints one line.
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _start_workers(
    ray: ModuleType, box: list[Any], count: int, cpus: float, gpus: float, retries: int, args: tuple[Any, ...]
) -> list[Any]:
    """Create ``count`` actors and wait until each sees OUT and has its sessions open."""
    from ray.exceptions import RayError

    actor_class = ray.remote(ShardWorker).options(
        num_cpus=cpus, num_gpus=gpus, max_restarts=retries, max_task_retries=retries
    )
    actors = [actor_class.remote(*args) for _ in range(count)]
    try:
        pending = [actor.ready.remote(box) for actor in actors]
        done, waiting = ray.wait(pending, num_returns=len(pending), timeout=STARTUP_TIMEOUT_S)
        if waiting:
            raise DeepSMOTEError(
                f"only {len(done)} of {count} Ray workers started within {STARTUP_TIMEOUT_S:.0f} s; each asks for "
                f"{cpus} CPU and {gpus} GPU and the cluster has {ray.cluster_resources()}: ask for fewer `workers`"
            )
        for problem in ray.get(done):
            if problem is not None:
                raise DeepSMOTEError(problem)
    except RayError as exc:
        _stop(ray, actors)
        raise DeepSMOTEError(f"a Ray worker failed to start: {_last_line(exc)}") from None
    except BaseException:
        _stop(ray, actors)
        raise
    return actors


def _stop(ray: ModuleType, actors: Sequence[Any]) -> None:
    for actor in actors:
        ray.kill(actor, no_restart=True)


class RayEngine:
    """Runs the shards on Ray actors (an :class:`~deepsmote.runtime.engines.Engine`); each marks its own shards.

    Parameters
    ----------
    address : str, optional
        Ray cluster address; None joins ``RAY_ADDRESS`` or starts a local Ray for the job. A
        Ray this process already initialised is used as it is.
    workers : int, optional
        Actors to start; default: as many as the cluster's CPUs (or GPUs) allow.
    cpus_per_worker : float, default 1
        CPUs Ray reserves per actor, and its onnxruntime/numba threads unless the job sets them.
    gpus_per_worker : float, optional
        GPUs per actor; default 1 when the job runs on CUDA, else 0.
    max_retries : int, default 3
        Restarts of a dead actor, and reruns of each shard it had taken.

    Raises
    ------
    DeepSMOTEError
        If Ray is missing or an option is out of range (when built, before any work).
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float = 1,
        gpus_per_worker: float | None = None,
        max_retries: int = 3,
    ) -> None:
        import_ray()
        _check_options(workers, cpus_per_worker, gpus_per_worker, max_retries)
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.max_retries = max_retries

    def run(
        self,
        synthesizer: Synthesizer,
        shards: Iterable[Unit],
        out: OutputDir,
        fmt: str,
        classes: Sequence[str],
        on_shard_done: Callable[[Unit], None],
    ) -> dict[str, Any]:
        """Run the shards on Ray actors; OUT must be on storage shared by every node.

        Returns
        -------
        dict
            ``workers`` (actors used) and ``startup_s`` (Ray start or connection plus actors ready).

        Raises
        ------
        DeepSMOTEError
            If the cluster cannot be reached or cannot place the actors, a worker cannot see OUT
            or run the bundle, or a shard fails or keeps killing its worker. Finished shards stay
            marked, so a rerun resumes.
        """
        start = time.perf_counter()
        on_cuda = synthesizer.provider == "CUDAExecutionProvider"
        gpus = float(self.gpus_per_worker) if self.gpus_per_worker is not None else (1.0 if on_cuda else 0.0)
        # Workers run on the CPUs Ray reserved for them rather than every core (the synthesizer
        # keeps its provider: never a silent CPU fallback that could change the bytes).
        shipped = (
            synthesizer
            if synthesizer.threads is not None
            else synthesizer.with_threads(max(1, int(self.cpus_per_worker)))
        )
        # A class that numba searches row by row would be searched by every actor, each finding
        # the rows of its own shards: the driver searches it once, whole, for all of them.
        shipped = shipped.with_whole_search()
        workers, cpus = self.workers, self.cpus_per_worker
        # A local Ray gets room for every worker asked for, even beyond the cores.
        local_cpus = None if workers is None else max(os.cpu_count() or 1, math.ceil(workers * cpus))
        with ray_connection(self.address, local_cpus) as ray:
            count = _worker_count(ray, workers, cpus, gpus)
            # One copy in the object store for all actors, kept there by this reference until the
            # job ends, so that restarted actors can fetch it too.
            box = [ray.put(shipped)]
            args = (fmt, list(classes), out.path.resolve(), out.settings)
            actors = _start_workers(ray, box, count, cpus, gpus, self.max_retries, args)
            startup_s = time.perf_counter() - start
            try:
                _dispatch(ray, actors, box, shards, on_shard_done, self.max_retries)
            finally:
                _stop(ray, actors)
        return {"workers": count, "startup_s": round(startup_s, 3)}


def _dispatch(
    ray: ModuleType,
    actors: Sequence[Any],
    box: list[Any],
    shards: Iterable[Unit],
    on_shard_done: Callable[[Unit], None],
    retries: int,
) -> None:
    from ray.exceptions import RayActorError, RayTaskError

    queue = iter(shards)
    pending: dict[Any, tuple[Unit, Any]] = {}

    def give(actor: Any) -> None:
        shard = next(queue, None)
        if shard is not None:
            pending[actor.run.remote(box, shard)] = (shard, actor)

    for actor in actors:
        for _ in range(1 + QUEUED_PER_WORKER):
            give(actor)
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        shard, actor = pending.pop(ref)
        try:
            ray.get(ref)
        except RayActorError:
            raise DeepSMOTEError(
                f"shard {shard.name}: its Ray worker died with its {retries} restarts used up; "
                "finished shards are kept: rerun the same command to resume"
            ) from None
        except RayTaskError as exc:
            if isinstance(exc.cause, DeepSMOTEError):
                raise DeepSMOTEError(f"shard {shard.name}: {exc.cause}") from None
            raise DeepSMOTEError(f"shard {shard.name} failed on a Ray worker: {exc.cause!r}") from None
        on_shard_done(shard)
        give(actor)
