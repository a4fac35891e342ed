"""Generation throughput of the local engine and of Ray with 1 and 2 workers, and Ray's start-up cost.

One fitted job makes the same output (``--images`` synthetic images spread over the classes, in
``--shard-size`` shards) with each engine into a fresh OUT; the outputs are checked to be the same
bytes. With ``--repeat R`` each figure is the fastest of R runs. Figures printed:

- Ray start-up: ``ray.init`` of a local instance, and the actor pool ready (each actor has
  unpickled the fitted job and opened its onnxruntime sessions), on a running instance;
- throughput (images/s) of each engine end to end, and for Ray also without its start-up.

The local engine runs in this process with every core (its default) and with one thread; each
Ray worker gets one CPU and one thread. Without ``--bundle``, a tiny bundle (width 8, latent 16,
one epoch, as in the tests) is trained first, which needs the train extra.

    .venv/bin/python benchmarks/ray_scaling.py --bundle fmnist.bundle --images 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray
from deepsmote.data import fmnist_mini
from deepsmote.runtime.engines.local import LocalEngine
from deepsmote.runtime.engines.ray import RayEngine
from deepsmote.runtime.job import plan_units
from deepsmote.runtime.outdir import OutputDir
from deepsmote.runtime.readers import read_dataset
from deepsmote.runtime.sampler import DeepSMOTE
from deepsmote.runtime.synthesis import Synthesizer
from deepsmote.runtime.writers import FORMATS


def tiny_bundle(scratch: Path, data_path: Path) -> Path:
    """Train and export the test suite's tiny bundle."""
    from deepsmote.training.export import export_bundle
    from deepsmote.training.trainer import TrainConfig, train

    config = TrainConfig(epochs=1, width=8, latent_dim=16, seed=0, device="cpu")
    files = train(read_dataset(data_path), config, scratch / "bundle.run")
    export_bundle(files.best, scratch / "bundle")
    return scratch / "bundle"


def digest(root: Path) -> str:
    """One sha256 over every output file's name and bytes, without the job's bookkeeping."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def best_of(
    repeat: int, out: Path, engine: Callable[[OutputDir, Callable], dict | None], reference: str | None
) -> tuple[float, dict | None, str]:
    """The fastest of ``repeat`` runs of the whole job into fresh directories.

    Returns
    -------
    seconds : float
    info : dict or None
        What the engine returned on that run.
    digest : str
        The output's digest, checked equal to ``reference`` on every run when one is given.
    """
    runs = []
    for attempt in range(repeat):
        target = out.with_name(f"{out.name}-{attempt}")
        with OutputDir(target, {"benchmark": out.name}) as output:
            began = time.perf_counter()
            info = engine(output, lambda shard: None)
            seconds = time.perf_counter() - began
        produced = digest(target)
        assert reference is None or produced == reference, f"{out.name}: output differs from the local engine's"
        shutil.rmtree(target)
        runs.append((seconds, info, produced))
    return min(runs, key=lambda run: run[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="model bundle (default: train the tiny test bundle)")
    parser.add_argument("--data", type=Path, default=fmnist_mini(), help="DATA the bundle was trained on")
    parser.add_argument("--images", type=int, default=12000, help="synthetic images per job")
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--format", choices=FORMATS, default="imagefolder")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to time")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; the fastest is kept")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        bundle = args.bundle or tiny_bundle(scratch, args.data)
        data = read_dataset(args.data)
        counts = data.class_counts()
        per_class = -(-args.images // len(counts))
        strategy = {name: int(n) + per_class for name, n in zip(data.classes, counts, strict=True)}
        synthesizer = (
            DeepSMOTE(bundle, sampling_strategy=strategy, random_state=0, shard_size=args.shard_size)
            .fit(data.images, data.labels)
            .synthesizer_
        )
        shards = plan_units(args.format, np.asarray(list(strategy.values())) - counts, counts, args.shard_size, False)
        images = sum(s.count for s in shards)
        # Compile the numba kernels in this process before any timing.
        synthesizer.samples(shards[0])
        print(
            f"{images} images of {'x'.join(map(str, synthesizer.bundle.image_shape))} in {len(shards)} shards "
            f"of {args.shard_size}, format {args.format}, {os.cpu_count()} CPUs, bundle {bundle}"
        )

        # The same fitted job on one thread: what one Ray worker (one CPU, one thread) has.
        one_thread = synthesizer.with_threads(1)

        def on_local(fitted: Synthesizer) -> Callable[[OutputDir, Callable], None]:
            def engine(output: OutputDir, done: Callable) -> None:
                LocalEngine().run(fitted, shards, output, args.format, data.classes, done)

            return engine

        def on_ray(workers: int) -> Callable[[OutputDir, Callable], dict]:
            def engine(output: OutputDir, done: Callable) -> dict:
                return RayEngine(workers=workers).run(synthesizer, shards, output, args.format, data.classes, done)

            return engine

        rows: list[tuple[str, float, float | None]] = []
        seconds, _, reference = best_of(args.repeat, scratch / "local", on_local(synthesizer), None)
        rows.append((f"local, {os.cpu_count()} threads", images / seconds, None))
        seconds, _, _ = best_of(args.repeat, scratch / "local-1", on_local(one_thread), reference)
        rows.append(("local, 1 thread", images / seconds, None))

        # Cold runs: the Ray engine starts a local Ray, and its start-up includes ray.init.
        _, info, _ = best_of(args.repeat, scratch / "ray-cold", on_ray(1), reference)
        cold_startup = info["startup_s"]

        began = time.perf_counter()
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        init_s = time.perf_counter() - began
        startups = {}
        try:
            for workers in args.workers:
                seconds, info, _ = best_of(args.repeat, scratch / f"ray-{workers}", on_ray(workers), reference)
                startups[workers] = info["startup_s"]
                rows.append((f"ray, {workers} worker(s)", images / seconds, images / (seconds - info["startup_s"])))
        finally:
            ray.shutdown()

    print(f"\nRay start-up: ray.init (local instance) {init_s:.2f} s")
    for workers, startup in startups.items():
        print(f"              actor pool ready, {workers} worker(s), on a running Ray: {startup:.2f} s")
    print(f"              cold: ray.init + 1 worker ready, as `--engine ray` pays it: {cold_startup:.2f} s")
    print(f"\n{'engine':<24}{'images/s end to end':>22}{'images/s after start-up':>26}")
    for name, end_to_end, steady in rows:
        print(f"{name:<24}{end_to_end:>22.0f}{'' if steady is None else f'{steady:.0f}':>26}")
    print("\nevery run wrote the same bytes as the local engine")


if __name__ == "__main__":
    main()
