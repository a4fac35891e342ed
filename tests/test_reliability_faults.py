"""Faults during long jobs: signals, a full disk, a read-only OUT, and two jobs on one OUT.

A stopped job keeps what it finished, leaves no partial file and no held lock, says in one line
what was kept and how to resume, and the rerun ends with the bytes of an uninterrupted run.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import atomic as atomic_module
from deepsmote.runtime import outdir as outdir_module
from deepsmote.runtime.cli import main
from deepsmote.runtime.outdir import DONE_PREFIX, LOCK_FILE, done_marks
from deepsmote.runtime.readers import read_dataset

SHARD_SIZE = 10
TOTAL_SHARDS = 310  # 3100 new images of fmnist_mini in WebDataset shards of 10, classes mixed
# Slow settings for a job that must still be running when it is signalled; they do not change the bytes.
SLOW = ["--batch-size", "1", "--threads", "1"]


def generate_args(bundle: Path, out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        str(bundle),
        str(fmnist_mini()),
        "--out",
        str(out),
        "--format",
        "webdataset",
        "--shard-size",
        str(SHARD_SIZE),
        "--quiet",
        "--synthetic-only",  # the new samples alone: the work that a fault can interrupt
        *extra,
    ]


def start(args: list[str], **kwargs) -> subprocess.Popen:
    # A child inherits an ignored SIGINT from a shell that started the tests in the background;
    # restore the default so that Python turns SIGINT into KeyboardInterrupt, as in a terminal.
    return subprocess.Popen(
        [sys.executable, "-m", "deepsmote.runtime.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,
    )


def done_shards(out: Path) -> set[str]:
    return {p.name.removeprefix(DONE_PREFIX) for p in done_marks(out)}


def wait_until(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the job ended (status {process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every output file, leaving out the job's bookkeeping and timing summary."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.name != "summary.json"
    }


def assert_lock_free(out: Path) -> None:
    # A job that ends, however it ends, removes its lock file while it still holds the lock.
    assert not (out / LOCK_FILE).exists()
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
        os.unlink(out / LOCK_FILE)


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def reference(tiny_bundle, tmp_path_factory) -> dict[str, str]:
    """Digest of an uninterrupted job: what every interrupted job must end with."""
    out = tmp_path_factory.mktemp("reference") / "out"
    main(generate_args(tiny_bundle, out))
    assert len(done_shards(out)) == TOTAL_SHARDS
    return tree_digest(out)


# --- signals during generate ---------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_generate_keeps_finished_shards_and_the_rerun_completes(tiny_bundle, reference, tmp_path, signum):
    out = tmp_path / "out"
    process = start(generate_args(tiny_bundle, out, *SLOW))
    wait_until(lambda: len(done_shards(out)) >= 5, process, "5 shards were done")
    # Stopped first, so the signal lands mid-job however fast generation becomes.
    process.send_signal(signal.SIGSTOP)
    process.send_signal(signum)
    process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 128 + signum
    line = last_line(stderr)
    done = done_shards(out)
    assert 5 <= len(done) < TOTAL_SHARDS
    word = "Interrupted" if signum == signal.SIGINT else "Terminated"
    assert line == (
        f"{word}: {len(done)} of {TOTAL_SHARDS} shards are finished and kept in {out}; run the same job again to resume"
    )
    # Finished shards are whole and are the bytes of the uninterrupted job; nothing partial, no lock held.
    for name in done:
        assert tree_digest(out)[f"shards/train-{name}.tar"] == reference[f"shards/train-{name}.tar"]
        with tarfile.open(out / "shards" / f"train-{name}.tar") as tar:
            assert len(tar.getnames()) == 3 * SHARD_SIZE
    assert not list(out.rglob("*.partial"))
    assert_lock_free(out)

    main(generate_args(tiny_bundle, out))
    assert tree_digest(out) == reference
    assert json.loads((out / "summary.json").read_text())["shards"]["skipped_as_done"] == len(done)


def test_second_job_is_refused_while_the_first_runs_and_never_interleaves(tiny_bundle, reference, tmp_path):
    out = tmp_path / "out"
    first = start(generate_args(tiny_bundle, out, *SLOW))
    wait_until(lambda: len(done_shards(out)) >= 3, first, "3 shards were done")
    # The first job is held mid-job (as a busy machine would) while the second starts, so the
    # second meets a job in progress however fast generation becomes.
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "deepsmote.runtime.cli", *generate_args(tiny_bundle, out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        stopped_at = done_shards(out)
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=120)

    assert 3 <= len(stopped_at) < TOTAL_SHARDS
    assert second.returncode == 1
    assert error_lines(second.stderr) == [
        f"Error: --out {out} is in use by another deepsmote job; wait for it or choose another --out"
    ]
    assert first.returncode == 0, first_err
    assert tree_digest(out) == reference


# --- a full disk and a read-only OUT, injected ----------------------------------------------


class _FillingFile:
    """A file that takes part of the data, then fails as a full disk does."""

    def __init__(self, file) -> None:
        self.file = file

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def write(self, data: bytes) -> int:
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_mid_job_is_one_line_and_leaves_no_partial_shard(
    tiny_bundle, reference, tmp_path, monkeypatch, capsys
):
    # The fifth shard file finds the disk full part-way through.
    opened: list[Path] = []

    def filling_open(path, mode="r", *args, **kwargs):
        file = builtins.open(path, mode, *args, **kwargs)
        if Path(path).name.startswith(".train-"):
            opened.append(Path(path))
            if len(opened) == 5:
                return _FillingFile(file)
        return file

    monkeypatch.setattr(atomic_module, "open", filling_open, raising=False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(generate_args(tiny_bundle, out))
    assert exit_.value.code == 1
    shard_name = opened[4].name.removeprefix(".").removesuffix(".partial")
    assert error_lines(capsys.readouterr().err) == [
        f"Error: cannot write to --out {out}: No space left on device (writing shards/{shard_name}); "
        "free some space or choose another --out"
    ]
    assert not list(out.rglob("*.partial")) and not (out / "shards" / shard_name).exists()
    done = done_shards(out)
    assert len(done) == 4 and {f"train-{name}.tar" for name in done} == {p.name for p in out.glob("shards/*.tar")}
    assert_lock_free(out)

    monkeypatch.undo()
    main(generate_args(tiny_bundle, out))
    assert tree_digest(out) == reference


def test_read_only_out_is_one_line_and_left_untouched(tiny_bundle, tmp_path, monkeypatch, capsys):
    # chmod does not stop root, who runs the tests in CI: the lock file, the first thing a job
    # creates in OUT, fails as it does on a read-only mount.
    out = tmp_path / "readonly"
    out.mkdir()
    real_os_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
        if Path(path).parent == out and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(outdir_module.os, "open", read_only_open)
    with pytest.raises(SystemExit) as exit_:
        main(generate_args(tiny_bundle, out))
    assert exit_.value.code == 1
    assert error_lines(capsys.readouterr().err) == [
        f"Error: cannot write to --out {out}: Read-only file system (writing {LOCK_FILE}); choose a writable --out"
    ]
    assert list(out.iterdir()) == []


def test_unwritable_shard_in_a_new_out_leaves_nothing(tiny_bundle, tmp_path, monkeypatch, capsys):
    # The job file goes in; the first shard file is refused.
    def refusing_open(path, mode="r", *args, **kwargs):
        if Path(path).name.startswith(".train-"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic_module, "open", refusing_open, raising=False)
    out = tmp_path / "new"
    with pytest.raises(SystemExit):
        main(generate_args(tiny_bundle, out))
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith(f"Error: cannot write to --out {out}: Permission denied (writing shards/train-000000")
    assert line.endswith("choose a writable --out")
    assert not out.exists()


# --- a full disk and a read-only mount, for real where the kernel lets us make them ---------


def _can_mount_in_a_user_namespace() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_in_a_user_namespace(), reason="cannot mount a tmpfs in a user namespace here")
def test_real_full_tmpfs_and_read_only_mount(tiny_bundle, tmp_path):
    # In a private mount namespace: a 160 KiB tmpfs fills after a few shards (ENOSPC from the
    # kernel) of a job small enough to pass the capacity check, and a read-only tmpfs refuses the first write (EROFS).
    script = textwrap.dedent(
        f"""
        import json, subprocess, sys
        from pathlib import Path
        root = Path({str(tmp_path)!r})
        for name, options in (("small", "size=160k"), ("readonly", "ro,size=64k")):
            (root / name).mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(root / name)], check=True)
        results = {{}}
        # 50 (full) and 16 (readonly) new samples in shards of 10: at their smallest (3 KiB a sample
        # in a tar) they fit the 160 and 64 KiB, so the capacity check lets the job start; with tar
        # ends and pages the first does not.
        for name, out, count in (("full", root / "small" / "out", 54), ("readonly", root / "readonly", 20)):
            args = {generate_args(tiny_bundle, Path("OUT"))!r}
            args[args.index("OUT")] = str(out)
            args[args.index("--shard-size") + 1] = "10"
            args += ["--strategy", json.dumps({{"9": count}})]
            job = subprocess.run([sys.executable, "-m", "deepsmote.runtime.cli", *args], capture_output=True, text=True)
            files = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else None
            results[name] = {{"code": job.returncode, "stderr": job.stderr, "files": files}}
        print(json.dumps(results))
        """
    )
    command = ["unshare", "-rm", sys.executable, "-c", script]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.strip().splitlines()[-1])

    full = results["full"]
    [line] = error_lines(full["stderr"])
    out = tmp_path / "small" / "out"
    assert full["code"] == 1
    assert re.fullmatch(
        rf"Error: cannot write to --out {re.escape(str(out))}: No space left on device "
        r"\(writing shards/train-\d{6}\.tar\); free some space or choose another --out",
        line,
    ), line
    tars = {f for f in full["files"] if f.endswith(".tar")}
    marked = {f"shards/train-{f.removeprefix(DONE_PREFIX)}.tar" for f in full["files"] if f.startswith(DONE_PREFIX)}
    assert tars and tars == marked, "every shard on disk is complete and marked, and only those"
    assert not [f for f in full["files"] if f.endswith(".partial")]

    readonly = results["readonly"]
    assert readonly["code"] == 1 and readonly["files"] == []
    assert error_lines(readonly["stderr"]) == [
        f"Error: cannot write to --out {tmp_path / 'readonly'}: Read-only file system (writing {LOCK_FILE}); "
        "choose a writable --out"
    ]


# --- signals during train ------------------------------------------------------------------

TRAIN_OPTIONS = ["--width", "8", "--latent-dim", "16", "--batch-size", "32", "--device", "cpu", "--seed", "0"]


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory) -> Path:
    """At most 15 images per class of the embedded subset: 125 images, 4 steps of 32 per epoch."""
    data = read_dataset(fmnist_mini())
    keep = np.sort(np.concatenate([np.flatnonzero(data.labels == c)[:15] for c in range(len(data.classes))]))
    path = tmp_path_factory.mktemp("train-data") / "small.npz"
    np.savez(path, images=data.images[keep], labels=data.labels[keep])
    return path


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_train_keeps_whole_checkpoints_and_resume_completes(small_npz, tmp_path, signum):
    torch = pytest.importorskip("torch")
    from deepsmote.training.trainer import TrainConfig, load_checkpoint, train

    run_dir, bundle = tmp_path / "run", tmp_path / "bundle"
    args = ["train", str(small_npz), "--out", str(bundle), "--run-dir", str(run_dir), *TRAIN_OPTIONS]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = start([*args, "--epochs", "10000"], env=env)
    log = run_dir / "losses.jsonl"
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, process, "2 epochs were done")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 128 + signum
    line = last_line(stderr)
    match = re.fullmatch(
        rf"(Interrupted|Terminated): checkpoints up to epoch (\d+) are kept in {re.escape(str(run_dir))} "
        r"\(best\.pt, last\.pt\); run the same command with --resume to continue",
        line,
    )
    assert match, line
    epoch = int(match.group(2))
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == epoch >= 2
    assert 1 <= load_checkpoint(run_dir / "best.pt")["epoch"] <= epoch
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "last.pt", "losses.jsonl"]
    assert not bundle.exists()

    # Resume for one more epoch (test_training_cli covers `train --resume` and its export): the
    # weights are those of an uninterrupted run of as many epochs, on one thread as in the child.
    config = TrainConfig(epochs=epoch + 1, width=8, latent_dim=16, batch_size=32, device="cpu", seed=0)
    data = read_dataset(small_npz)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = load_checkpoint(train(data, config, run_dir, resume=True).last)
        straight = load_checkpoint(train(data, config, tmp_path / "straight").last)
    finally:
        torch.set_num_threads(threads)
    assert resumed["epoch"] == straight["epoch"] == epoch + 1
    for part in ("encoder", "decoder"):
        for key, tensor in straight[part].items():
            assert torch.equal(tensor, resumed[part][key]), (part, key)


def test_full_disk_while_saving_a_checkpoint(small_npz, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from deepsmote.runtime.errors import DeepSMOTEError
    from deepsmote.training import trainer

    real_save = torch.save

    def save_then_fill(obj, path, *args, **kwargs):
        # best.pt goes through; last.pt is half-written when the disk fills (torch says RuntimeError).
        if Path(path).name == ".last.pt.partial":
            Path(path).write_bytes(b"PK half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")
        real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(trainer.torch, "save", save_then_fill)
    config = trainer.TrainConfig(epochs=1, width=8, latent_dim=16, batch_size=32, device="cpu")
    run_dir = tmp_path / "run"
    with pytest.raises(DeepSMOTEError) as info:
        trainer.train(read_dataset(small_npz), config, run_dir)
    assert str(info.value) == (
        f"cannot write checkpoint {run_dir / 'last.pt'}: [enforce fail at inline_container.cc] . "
        "PytorchStreamWriter failed writing file; free some space or choose another --run-dir"
    )
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "losses.jsonl"]
    assert trainer.load_checkpoint(run_dir / "best.pt")["epoch"] == 1


def test_sigterm_is_handled_only_while_a_command_runs_and_only_if_unclaimed(monkeypatch):
    from deepsmote.runtime import cli as cli_module

    seen = []
    monkeypatch.setattr(cli_module.cli, "main", lambda **kwargs: seen.append(signal.getsignal(signal.SIGTERM)))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        main(["inspect"])
        assert seen[-1] is cli_module._raise_terminated
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

        def mine(signum, frame):
            raise AssertionError("not called")

        signal.signal(signal.SIGTERM, mine)  # e.g. a host application's own handler: left alone
        main(["inspect"])
        assert seen[-1] is mine and signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- a signal while a graph runs for ever ---------------------------------------------------


def _endless_decoder(bundle: Path) -> None:
    """Make ``bundle``'s decoder.onnx a graph of its signature whose one call never ends: a Loop
    of 10^15 steps (onnxruntime returns to Python only when it is done)."""
    import onnx
    from deepsmote.runtime.bundle import sha256_file
    from onnx import TensorProto, helper

    manifest = json.loads((bundle / "deepsmote.json").read_text())
    channels, height, width = manifest["image_shape"]

    def info(name, shape, kind=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, kind, shape)

    body = helper.make_graph(
        [helper.make_node("Add", ["x_in", "one"], ["x_out"]), helper.make_node("Identity", ["go"], ["go_out"])],
        "body",
        [info("i", [], TensorProto.INT64), info("go", [], TensorProto.BOOL), info("x_in", ["N", 1])],
        [info("go_out", [], TensorProto.BOOL), info("x_out", ["N", 1])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    nodes = [
        helper.make_node("ReduceSum", ["latent", "axis"], ["s"]),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Loop", ["steps", "true", "z"], ["y"], body=body),
        helper.make_node("Shape", ["latent"], ["n"], end=1),
        helper.make_node("Concat", ["n", "chw"], ["shape"], axis=0),
        helper.make_node("Reshape", ["y", "ones"], ["y4"]),
        helper.make_node("Expand", ["y4", "shape"], ["image"]),
    ]
    weights = [
        helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("steps", TensorProto.INT64, [], [10**15]),
        helper.make_tensor("true", TensorProto.BOOL, [], [True]),
        helper.make_tensor("chw", TensorProto.INT64, [3], [channels, height, width]),
        helper.make_tensor("ones", TensorProto.INT64, [4], [-1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [info("latent", ["N", manifest["latent_dim"]])],
        [info("image", ["N", channels, height, width])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), bundle / "decoder.onnx")
    manifest["files"]["decoder.onnx"] = sha256_file(bundle / "decoder.onnx")
    (bundle / "deepsmote.json").write_text(json.dumps(manifest))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads a process's CPU time from /proc")
@pytest.mark.parametrize(
    ("command", "signum"),
    [
        ("inspect", signal.SIGINT),
        ("inspect", signal.SIGTERM),
        ("generate", signal.SIGINT),
        ("generate", signal.SIGTERM),
    ],
    ids=["inspect-SIGINT", "inspect-SIGTERM", "generate-SIGINT", "generate-SIGTERM"],
)
def test_a_signal_ends_a_graph_call_that_would_run_for_ever(tiny_bundle, tmp_path, command, signum):
    # inspect runs its graphs on the main thread (one thread), generate on a pool of two: the
    # signal must end the run in onnxruntime either way, and the command exit as a signal stops it.
    from deepsmote.runtime.bundle import CPU_DECODER_FILE, FP16_DECODER_FILE
    from helpers import without_graphs

    bundle = without_graphs(tiny_bundle, tmp_path / "bundle", CPU_DECODER_FILE, FP16_DECODER_FILE)
    _endless_decoder(bundle)
    out = tmp_path / "out"
    args = ["inspect", str(bundle)]
    if command == "generate":
        args = [
            "generate",
            str(bundle),
            str(fmnist_mini()),
            "--out",
            str(out),
            "--strategy",
            '{"9": 40}',
            "--threads",
            "2",
        ]
    process = start(args)
    # CPU time, not wall time: start-up takes about a second of it, the loop the rest.
    wait_until(lambda: _cpu_seconds(process.pid) > 4, process, "the endless graph was running")
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the command did not exit within 30 s of the signal") from None
    assert process.returncode == 128 + signum, stderr
    assert last_line(stderr).startswith("Interrupted" if signum == signal.SIGINT else "Terminated")
    assert [line for line in stderr.splitlines() if not line.startswith("Warning:")] == [last_line(stderr)]
    assert not list(tmp_path.rglob("*.partial"))


# --- a bundle replaced in place: kill -9 at the worst moments ------------------------------

# Kills the process right after the step that takes the old bundle away: the first rename of the
# bundle itself (two renames), or the atomic exchange; or right after the copy of the bundle.
_KILL_PRELUDE = """
import os, shutil, signal, sys
from deepsmote.runtime import atomic
bundle, moment = os.path.abspath(sys.argv[2]), os.environ["KILL_AT"]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
rename, copytree = os.rename, shutil.copytree
def killing_rename(src, dst, *a, **k):
    rename(src, dst, *a, **k)
    if moment == "replace" and os.path.abspath(src) == bundle:
        die()
os.rename = killing_rename
if hasattr(atomic, "_exchange"):
    exchange = atomic._exchange
    if os.environ.get("NO_EXCHANGE"):
        atomic._exchange = lambda a, b: False
    else:
        def killing_exchange(a, b):
            done = exchange(a, b)
            if done and moment == "replace":
                die()
            return done
        atomic._exchange = killing_exchange
def killing_copytree(src, dst, *a, **k):
    copytree(src, dst, *a, **k)
    if moment == "copy":
        die()
shutil.copytree = killing_copytree
"""
GATE_ARGS = ["--steps", "3", "--width", "4", "--batch-size", "32", "--seed", "0"]


def _leftovers(bundle: Path) -> list[str]:
    return sorted(p.name for p in bundle.parent.iterdir() if p.name.startswith(f".{bundle.name}."))


def _killed_add_classifier(bundle: Path, moment: str, **env: str) -> None:
    from helpers import run_cli

    environment = {**os.environ, "KILL_AT": moment, **env}
    args = ["add-classifier", str(bundle), str(fmnist_mini()), *GATE_ARGS, "--overwrite"]
    result = run_cli(*args, check=False, prelude=_KILL_PRELUDE, env=environment)
    assert result.returncode == -signal.SIGKILL, result.stderr


@pytest.mark.parametrize("moment", ["copy", "replace"])
def test_add_classifier_killed_leaves_a_whole_bundle_and_the_next_run_cleans_up(tiny_bundle, tmp_path, moment):
    from deepsmote.runtime.bundle import CLASSIFIER_FILE, load_bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    _killed_add_classifier(bundle, moment)
    # Killed after the copy: the old bundle; after the exchange: the new one. Never nothing.
    assert load_bundle(bundle).has_graph(CLASSIFIER_FILE) == (moment == "replace")
    assert _leftovers(bundle), "the kill left nothing beside the bundle to clean up"
    main(["add-classifier", str(bundle), str(fmnist_mini()), *GATE_ARGS, "--overwrite", "--quiet"])
    assert load_bundle(bundle).has_graph(CLASSIFIER_FILE)
    assert _leftovers(bundle) == []


def test_a_kill_between_the_two_renames_is_undone_by_the_next_start(tiny_bundle, tmp_path):
    # Where the system has no atomic exchange, the old bundle is renamed aside, then the new one
    # into place; a kill between the two leaves no bundle at the path until the next start puts
    # the old one back.
    from deepsmote.runtime.atomic import recover_dir
    from deepsmote.runtime.bundle import CLASSIFIER_FILE, load_bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = tree_digest(bundle)
    _killed_add_classifier(bundle, "replace", NO_EXCHANGE="1")
    assert not bundle.exists() and len(_leftovers(bundle)) == 2
    recover_dir(bundle)
    assert tree_digest(bundle) == before and not load_bundle(bundle).has_graph(CLASSIFIER_FILE)
    assert _leftovers(bundle) == []


def test_a_running_replacement_is_left_alone(tmp_path):
    from deepsmote.runtime.atomic import beside, recover_dir

    target = tmp_path / "bundle"
    target.mkdir()
    mine = beside(target, "tmp")  # this process's: alive
    mine.mkdir()
    dead = target.with_name(f".bundle.tmp-{2**22 + 12345}-0a1b2c3d")  # beyond any pid: not running
    dead.mkdir()
    stranger = tmp_path / ".bundle.tmp-notours"
    stranger.mkdir()
    recover_dir(target)
    assert mine.is_dir() and stranger.is_dir() and not dead.exists()


# --- durability: nothing is trusted before it is on the disk -------------------------------


@pytest.mark.parametrize("fmt", ["imagefolder", "npz", "webdataset"])
def test_files_and_directories_are_synced_before_a_rename_or_a_done_mark(tiny_bundle, tmp_path, monkeypatch, fmt):
    out = tmp_path / "out"
    synced: set[tuple[int, int]] = set()  # (device, inode): a file synced under its temporary name
    problems: list[str] = []
    fsync, replace = os.fsync, os.replace

    def key(path) -> tuple[int, int]:
        info = os.stat(path)
        return info.st_dev, info.st_ino

    def recording_fsync(fd):
        fsync(fd)
        info = os.fstat(fd)
        synced.add((info.st_dev, info.st_ino))
        if os.path.samestat(info, os.stat(out)):
            # OUT synced (after a done mark): every file of each unit marked done is synced.
            for mark in done_marks(out):
                unit = mark.name.removeprefix(DONE_PREFIX)
                for file in out.rglob(f"*{unit}*"):
                    if file.is_file() and not file.name.startswith(".") and key(file) not in synced:
                        problems.append(f"{file.name} not synced before the done mark of {unit}")

    def recording_replace(src, dst, *args, **kwargs):
        if Path(src).name.endswith(".partial") and Path(dst).suffix != ".png" and key(src) not in synced:
            problems.append(f"{Path(dst).name} renamed into place before it was synced")
        replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    main(["generate", str(tiny_bundle), str(fmnist_mini()), "--out", str(out), "--format", fmt, "--quiet",
          "--strategy", '{"9": 25, "8": 25}', "--shard-size", "10"])  # fmt: skip
    assert len(done_marks(out)) >= 4 and problems == []
    assert key(out) in synced
    written = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".png", ".npz", ".tar")]
    assert written and all(key(p) in synced for p in written)


# --- Ctrl-C while the command starts ---------------------------------------------------------


def test_ctrl_c_while_the_command_loads_its_modules_is_one_line_and_exit_130():
    # SIGINT delivered while cli.py imports click, as a Ctrl-C in the command's first moments
    # lands: the KeyboardInterrupt escapes the script's import, before main() runs.
    script = textwrap.dedent(
        """
        import builtins, os, signal, sys
        sys.argv[0] = "deepsmote"
        real_import = builtins.__import__
        def interrupting_import(name, *args, **kwargs):
            if name == "click":
                builtins.__import__ = real_import
                os.kill(os.getpid(), signal.SIGINT)
            return real_import(name, *args, **kwargs)
        builtins.__import__ = interrupting_import
        from deepsmote.runtime.cli import entry_point
        entry_point(["--version"])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert result.returncode == 130 and result.stderr == "Interrupted.\n", (result.returncode, result.stderr)


def test_importing_the_runtime_loads_nothing_heavy():
    # What runs before the command can take over Ctrl-C: the package's own import.
    from helpers import run_python

    run_python(
        "import sys\nimport deepsmote.runtime\n"
        "assert not {'numpy', 'onnxruntime', 'click'} & set(sys.modules), sorted(sys.modules)\n"
        "from deepsmote.runtime import DeepSMOTE, read_dataset\nprint('ok')"
    )
