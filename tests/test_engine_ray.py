"""The Ray engine: the local engine's bytes on 2 workers, a killed worker's shard redone once, resume, errors."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTEError, generate_dataset, read_dataset
from deepsmote.runtime import job as job_module
from deepsmote.runtime.engines.ray import ShardWorker
from deepsmote.runtime.outdir import JOB_FILE, done_marks
from deepsmote.runtime.plan import Shard
from deepsmote.runtime.synthesis import Synthesizer
from helpers import run_cli, tree_digest

try:
    import ray
except ImportError:  # the tests of the missing-Ray error and of option checks still run
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="needs the ray extra")

# Four small classes in 25-sample shards (19 shards, 440 images): enough shards for two
# workers to share, small enough for a fast test.
STRATEGY = {"6": 120, "7": 120, "8": 120, "9": 120}
SHARD_SIZE = 25
KILLED = Shard(class_index=8, shard_index=2, count=SHARD_SIZE)


def cli_job(bundle: Path, out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        str(bundle),
        str(fmnist_mini()),
        "--out",
        str(out),
        "--strategy",
        json.dumps(STRATEGY),
        "--shard-size",
        str(SHARD_SIZE),
        "--quiet",
        "--synthetic-only",
        *extra,
    ]


def api_job(bundle: Path, out: Path, **options: Any) -> dict[str, Any]:
    return generate_dataset(
        bundle,
        read_dataset(fmnist_mini()),
        out,
        sampling_strategy=STRATEGY,
        shard_size=SHARD_SIZE,
        progress=False,
        include_originals=False,
        **options,
    )


@pytest.fixture(scope="module")
def local_reference(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The local engine's output for the test job."""
    out = tmp_path_factory.mktemp("local") / "out"
    api_job(tiny_bundle, out)
    return tree_digest(out)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray instance with 2 CPUs, shared by the tests of this module; yields its address."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@needs_ray
def test_cli_on_a_local_ray_with_2_workers_gives_the_local_bytes(tiny_bundle, local_reference, tmp_path):
    out = tmp_path / "ray"
    result = run_cli(*cli_job(tiny_bundle, out, "--engine", "ray", "--workers", "2"))
    assert tree_digest(out) == local_reference
    pngs = sum(name.endswith(".png") for name in local_reference)
    assert pngs == sum(n - c for n, c in zip(STRATEGY.values(), (20, 10, 6, 4), strict=True))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "ray" and summary["shards"] == {"total": 19, "skipped_as_done": 0}
    # Only the command's own lines (a summary line, the per-class table of a header and 10 classes),
    # one progress line per shard and the sampler's small-class warning: none of Ray's notices.
    assert len(result.stdout.splitlines()) == 12, result.stdout
    assert all(line.startswith(("Warning: ", "generate: ")) for line in result.stderr.splitlines()), result.stderr


class DiesOnFirstTry(Synthesizer):
    """A job whose worker process dies the first time it takes ``KILLED``; logs every attempt."""

    trace: ClassVar[Path]

    def images(self, shard: Shard, out: Any = None) -> Any:
        with open(self.trace, "a") as f:
            f.write(f"{shard.name} {os.getpid()}\n")
        if shard == KILLED and self.trace.read_text().split().count(shard.name) == 1:
            os._exit(1)
        return super().images(shard, out=out)


class LoadsOnlyInTheDriver(Synthesizer):
    """A job that fails to unpickle in any process but the one that made it."""

    home: ClassVar[int] = os.getpid()

    def __setstate__(self, state: dict[str, Any]) -> None:
        if self.home != os.getpid():
            raise RuntimeError("this sampler only loads in the driver")
        super().__setstate__(state)


@pytest.fixture
def shipped_by_value() -> Iterator[None]:
    """Ray's workers cannot import this test module: its synthesizers travel by value."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def dying_sampler(monkeypatch, tmp_path, shipped_by_value) -> Path:
    """Make generate_dataset fit a DiesOnFirstTry; return its attempt log."""
    trace = tmp_path / "attempts.txt"
    trace.touch()
    monkeypatch.setattr(DiesOnFirstTry, "trace", trace, raising=False)
    monkeypatch.setattr(job_module, "Synthesizer", DiesOnFirstTry)
    return trace


@needs_ray
def test_a_killed_workers_shard_is_redone_exactly_once(
    ray_cluster, tiny_bundle, local_reference, dying_sampler, tmp_path
):
    out = tmp_path / "killed"
    # The Python API with a Ray address: this module's local Ray.
    summary = api_job(tiny_bundle, out, engine="ray", engine_options={"address": ray_cluster, "workers": 2})
    attempts = [line.split() for line in dying_sampler.read_text().splitlines()]
    runs = Counter(name for name, _ in attempts)
    assert len(runs) == 19 and runs.pop(KILLED.name) == 2, "the killed shard runs once more"
    assert set(runs.values()) == {1}, "every other shard runs once"
    assert len({pid for name, pid in attempts if name == KILLED.name}) == 2, "on a new worker process"
    assert tree_digest(out) == local_reference
    assert not list(out.rglob("*.partial"))
    assert summary["engine"] == "ray" and summary["images_generated_this_run"] == 440


@needs_ray
def test_a_terminated_job_resumes_on_an_existing_cluster(ray_cluster, tiny_bundle, tmp_path):
    # The full 'auto' job (3100 images, 126 shards): long enough to be stopped part-way.
    job = [str(tiny_bundle), str(fmnist_mini()), "--shard-size", str(SHARD_SIZE), "--quiet", "--synthetic-only"]
    on_cluster = ["--engine", "ray", "--address", ray_cluster, "--workers", "2"]
    data = read_dataset(fmnist_mini())
    generate_dataset(
        tiny_bundle, data, tmp_path / "local", shard_size=SHARD_SIZE, progress=False, include_originals=False
    )
    out = tmp_path / "stopped"
    code = "import sys\nfrom deepsmote.runtime.cli import main\nmain(sys.argv[1:])"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "generate", *job, "--out", str(out), *on_cluster],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(done_marks(out)) < 5:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1].startswith("Terminated: "), stderr
    done = len(done_marks(out))
    assert 5 <= done < 126, "the job should be stopped part-way"
    run_cli("generate", *job, "--out", str(out), *on_cluster)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards"]["skipped_as_done"] == done
    assert tree_digest(out) == tree_digest(tmp_path / "local")
    assert not list(out.rglob("*.partial"))


def test_missing_ray_is_a_one_line_error_with_the_install_hint(tiny_bundle, tmp_path):
    out = tmp_path / "o"
    result = run_cli(*cli_job(tiny_bundle, out, "--engine", "ray"), check=False, prelude="sys.modules['ray'] = None")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    # The README quotes this line.
    assert errors == ["Error: --engine ray needs Ray: pip install 'deepsmote[ray]'"], result.stderr
    assert not out.exists()


def test_a_worker_that_cannot_see_out_says_so(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / JOB_FILE).write_text(json.dumps({"seed": 0}))
    assert ShardWorker("npz", ["a"], tmp_path / "out", {"seed": 0}).out_problem() is None
    for elsewhere, settings in ((tmp_path / "missing", {"seed": 0}), (tmp_path / "out", {"seed": 1})):
        problem = ShardWorker("npz", ["a"], elsewhere, settings).out_problem()
        assert problem is not None and "does not see the job's `out`" in problem


@pytest.mark.parametrize(
    ("options", "match"),
    [({"workers": 0}, "workers must be a positive integer"), ({"max_retries": -1}, "max_retries must be")],
)
def test_bad_engine_options(tiny_bundle, tmp_path, options, match):
    with pytest.raises(DeepSMOTEError, match=match):
        api_job(tiny_bundle, tmp_path / "o", engine="ray", engine_options=options)
    assert not (tmp_path / "o").exists()


@needs_ray
def test_worker_killed_when_retries_run_out_leaves_a_resumable_out(
    ray_cluster, tiny_bundle, local_reference, dying_sampler, tmp_path
):
    out = tmp_path / "no-retries"
    # The dead worker's queued shard fails with it, so either may be the one named.
    with pytest.raises(DeepSMOTEError, match=r"shard class-\d+-shard-\d+: its Ray worker died with its 0 restarts"):
        api_job(tiny_bundle, out, engine="ray", engine_options={"workers": 2, "max_retries": 0})
    # The shard killed its worker only the first time: the rerun resumes and completes the job.
    summary = api_job(tiny_bundle, out, engine="ray", engine_options={"workers": 2})
    assert summary["shards"]["skipped_as_done"] > 0
    assert tree_digest(out) == local_reference


@needs_ray
def test_a_worker_that_cannot_load_the_sampler_stops_the_job_before_any_shard(
    ray_cluster, tiny_bundle, monkeypatch, shipped_by_value, tmp_path
):
    monkeypatch.setattr(job_module, "Synthesizer", LoadsOnlyInTheDriver)
    with pytest.raises(DeepSMOTEError, match=r"^a Ray worker failed to start: .*only loads in the driver$"):
        api_job(tiny_bundle, tmp_path / "o", engine="ray", engine_options={"workers": 1})
    assert not (tmp_path / "o").exists()
