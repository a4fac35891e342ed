"""Issue 15: a bundle that lies, counts that explode, the lock race, and the CLI's one-line property.

Each test here failed before the fix it names (the issue's families 1-8); the hypothesis tests
check the whole CLI's property: whatever the arguments and files, one line ``Error: ...`` (or
success), never a traceback.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from deepsmote.runtime import readers
from deepsmote.runtime.bundle import CPU_DECODER_FILE, MANIFEST_NAME, load_bundle, models, open_models, sha256_file
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.outdir import JOB_FILE, OutputDir
from deepsmote.runtime.plan import ShardPlan
from deepsmote.runtime.readers import read_dataset
from deepsmote.runtime.strategy import MAX_CLASS_COUNT, new_sample_counts, parse_strategy
from helpers import run_main, without_graphs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
FMNIST = ROOT / "data" / "fmnist-mini" / "train-images-idx3-ubyte.gz"
SMALL = '{"9": 12}'  # 8 new images of the 4-sample class: a job of a second


def error_line(err: str) -> str:
    """The one line a failed command printed; fails the test on a traceback or more lines."""
    lines = [line for line in err.splitlines() if line.strip() and not re.match(r"\w*Warning: ", line)]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:
    """The tiny bundle without decoder_cpu.onnx, so decoder.onnx is what runs on the CPU."""
    return without_graphs(tiny_bundle, tmp_path / "bundle", CPU_DECODER_FILE)


def replace_graph(bundle: Path, name: str, model: onnx.ModelProto) -> None:
    onnx.save(model, bundle / name)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["files"][name] = sha256_file(bundle / name)
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))


def make_graph(inputs, outputs, nodes, initializers=()) -> onnx.ModelProto:
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, list(initializers)), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    return model


def info(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def ints(name: str, values: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def lying_graph(kind: str, latent: int = 16) -> tuple[str, onnx.ModelProto]:
    """A graph whose declared signature passes the load check (symbolic dimensions) but lies at run time."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [latent, 784], np.full(latent * 784, 0.01).tolist())
    to_image = [helper.make_node("MatMul", ["z", "w"], ["flat"]), helper.make_node("Reshape", ["flat", "s"], ["image"])]
    decoder_in, decoder_out = [info("latent", ["N", latent])], [info("image", ["B", 1, 28, 28])]
    if kind == "batch of one":  # the decoder averages the batch: (1, C, H, W) for any N
        nodes = [helper.make_node("ReduceMean", ["latent"], ["z"], axes=[0], keepdims=1), *to_image]
        return "decoder.onnx", make_graph(decoder_in, decoder_out, nodes, [weights, ints("s", [1, 1, 28, 28])])
    if kind in ("nan", "inf"):  # 0/0 or 1/0 everywhere, in the right shape
        top = "zero" if kind == "nan" else "one"
        nodes = [
            helper.make_node("Sub", ["latent", "latent"], ["zero"]),
            helper.make_node("Exp", ["zero"], ["one"]),
            helper.make_node("Div", [top, "zero"], ["z"]),
            *to_image,
        ]
        return "decoder.onnx", make_graph(decoder_in, decoder_out, nodes, [weights, ints("s", [-1, 1, 28, 28])])
    if kind == "run fails":  # 16 N values do not reshape to (-1, 784) unless 49 | N
        nodes = [helper.make_node("Reshape", ["latent", "s"], ["image"])]
        return "decoder.onnx", make_graph(decoder_in, decoder_out, nodes, [ints("s", [-1, 1, 28, 28])])
    if kind == "code of one":  # the encoder returns (N, 1), which numpy would broadcast to (N, Z)
        nodes = [
            helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["mean", "s"], ["latent"]),
        ]
        model = make_graph([info("image", ["N", 1, 28, 28])], [info("latent", ["N", "Z"])], nodes, [ints("s", [0, 1])])
        return "encoder.onnx", model
    raise ValueError(kind)


LIES = ("batch of one", "nan", "inf", "run fails", "code of one")


def generate(bundle: Path, out: Path, capsys, *extra) -> tuple[int, str, str]:
    return run_main(["generate", bundle, FMNIST, "--out", out, "--strategy", SMALL, "--quiet", *extra], capsys)


# --- 2. graphs that lie at run time ---------------------------------------------------------------


@pytest.mark.parametrize("pixel_session", [False, True], ids=["numpy pixels", "pixel session"])
@pytest.mark.parametrize("kind", LIES)
def test_a_graph_that_lies_at_run_time_is_a_one_line_error_naming_it(
    bundle, tmp_path, capsys, monkeypatch, kind, pixel_session
):
    # With the pixel session (a GPU's default) the decoder's output is checked where it lies.
    monkeypatch.setattr(models, "_converts_in_session", lambda used: pixel_session)
    name, model = lying_graph(kind)
    replace_graph(bundle, name, model)
    load_bundle(bundle)  # the declared signature passes: only running it shows the lie
    code, _, err = generate(bundle, tmp_path / "out", capsys)
    line = error_line(err)
    assert code == 1 and f"{bundle}/{name}" in line, line
    assert not (tmp_path / "out").exists(), "nothing partial is left"


@pytest.mark.parametrize("pixel_session", [False, True])
def test_run_time_checks_name_the_shape(bundle, pixel_session):
    replace_graph(bundle, *lying_graph("batch of one"))
    opened = open_models(load_bundle(bundle), "cpu", threads=1, pixels=pixel_session)
    with pytest.raises(DeepSMOTEError, match=r"returned float32 \(1, 1, 28, 28\) for a batch of 5, expected"):
        opened.decode_pixels(np.zeros((5, 16), dtype=np.float32))


# --- 1 and 8. counts ------------------------------------------------------------------------------


def test_the_plan_costs_memory_in_classes_not_shards():
    # Under the memory limit: a plan that made its shards up front fails here, not the machine.
    body = """
    import itertools
    from deepsmote.runtime.plan import ShardPlan
    plan = ShardPlan([10**15, 0, 2500], shard_size=1)
    assert len(plan) == 10**15 + 2500
    assert plan[-1].name == "class-0002-shard-002499" and plan[-1].count == 1
    assert [s.shard_index for s in itertools.islice(plan, 3)] == [0, 1, 2]
    print("ok")
    """
    result = run_limited(body)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
    small = ShardPlan(np.array([0, 2500, 7]), shard_size=1000)
    assert [(s.class_index, s.shard_index, s.count) for s in small] == [
        (1, 0, 1000),
        (1, 1, 1000),
        (1, 2, 500),
        (2, 0, 7),
    ]
    assert list(small) == [small[i] for i in range(len(small))]


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"9": 1000000000000000000000000000000}', "more than the 1e\\+15 a class may reach"),
        ('{"9": 1' + "0" * 5000 + "}", "a number or a nesting too large"),
        ('{"9": ' + "[" * 100000 + "}", "invalid JSON|nesting too large"),
        ('{"9": 1e400}', "must be integers"),
    ],
)
def test_impossible_strategy_text_is_one_line(text, match):
    with pytest.raises(DeepSMOTEError, match=match) as caught:
        new_sample_counts(parse_strategy(text), [400, 4], ["0", "9"])
    assert "\n" not in str(caught.value)


def test_impossible_count_through_the_api_is_one_line():
    with pytest.raises(DeepSMOTEError, match="a 997-bit number samples of class '9'"):
        new_sample_counts({"9": 10**300}, [400, 4], ["0", "9"])


MEMORY_LIMITED = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    {body}
    """
)


def run_limited(body: str, *args: str) -> subprocess.CompletedProcess:
    """``body`` in a fresh interpreter whose address space is capped at 3 GiB."""
    script = MEMORY_LIMITED.format(body=textwrap.indent(textwrap.dedent(body), "").strip())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60, env=env)


def test_the_unit_plans_cost_memory_in_classes_not_units():
    # ~2e9 units in each format: a plan that listed its units (or sorted its samples) dies here.
    body = """
    import itertools
    import numpy as np
    from deepsmote.runtime.job import plan_units
    new, real = np.array([10**12, 3, 10**12 - 1]), np.array([4, 400, 0])
    for fmt in ("imagefolder", "npz", "webdataset", "parquet"):
        plan = plan_units(fmt, new, real, 1000, True)
        assert len(plan) > 2 * 10**9 and plan.total == 2 * 10**12 + 406
        middle = plan[len(plan) // 2]
        per_class = fmt in ("imagefolder", "npz")
        # per class: the synthetic shards first, the originals' units last (class 1's 400)
        assert plan.locate(middle.name) == len(plan) // 2 and plan[-1].count == (400 if per_class else 406)
        assert [u.count for u in itertools.islice(plan, 3)] == [1000] * 3
        print(fmt, plan.class_units().tolist())
    """
    result = run_limited(body)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert json.loads(lines["imagefolder"]) == [10**9 + 1, 2, 10**9] == json.loads(lines["npz"])
    # Mixed: the two big classes are in every unit, the small ones in one unit per sample at most.
    units = -(-(2 * 10**12 + 406) // 1000)
    mixed = json.loads(lines["webdataset"])
    assert mixed[0] == mixed[2] == units and 1 <= mixed[1] <= 403 and mixed == json.loads(lines["parquet"])


@pytest.mark.parametrize("fmt", ["imagefolder", "webdataset"])
def test_a_dry_run_of_a_hostile_count_answers_quickly_in_bounded_memory(bundle, tmp_path, fmt):
    body = "from deepsmote.runtime.cli import main\nmain(sys.argv[1:])"
    out = tmp_path / "out"
    args = ["generate", str(bundle), str(FMNIST), "--out", str(out), "--format", fmt, "--dry-run"]
    result = run_limited(body, *args, "--strategy", f'{{"9": {10**15}, "0": {10**15}}}')
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line.split()}
    # ImageFolder: the class's own shards and the one of its originals; WebDataset: it is in every
    # unit of the 2e15 - 404 new samples and the 900 originals.
    shards = 10**12 + 1 if fmt == "imagefolder" else -(-(2 * 10**15 - 404 + 900) // 1000)
    assert rows["9"][3] == str(10**15 - 4) and rows["9"][4] == str(shards), result.stdout
    assert not out.exists()


@pytest.mark.parametrize("count", [10**12, 10**30])
def test_hostile_counts_under_a_memory_limit_end_in_one_line(bundle, tmp_path, count):
    body = "from deepsmote.runtime.cli import main\nmain(sys.argv[1:])"
    out = tmp_path / "out"
    result = run_limited(
        body, "generate", str(bundle), str(FMNIST), "--out", str(out), "--strategy", f'{{"9": {count}}}'
    )
    line = error_line(result.stderr)
    # more than a class may reach is a bad --strategy (a usage error); more than the disk holds, a failure
    assert (result.returncode, "free in" in line or "a class may reach" in line) == (
        2 if "a class may reach" in line else 1,
        True,
    ), line
    assert not out.exists()


def test_hostile_count_in_fit_resample_under_a_memory_limit_is_one_line(bundle):
    body = """
    from deepsmote.runtime import DeepSMOTE
    from deepsmote.runtime.errors import DeepSMOTEError
    from deepsmote.runtime.readers import read_dataset
    data = read_dataset(sys.argv[2])
    sampler = DeepSMOTE(sys.argv[1], sampling_strategy={"9": 10**12}, random_state=0, n_threads=1)
    try:
        sampler.fit_resample(data.images, data.labels)
    except DeepSMOTEError as exc:
        print("refused:", exc)
    """
    result = run_limited(body, str(bundle), str(FMNIST))
    assert result.returncode == 0 and "more than this machine's" in result.stdout, result.stderr


# --- 3. the manifest ------------------------------------------------------------------------------


def make_manifest(bundle: Path, tmp_path: Path, kind: str) -> None:
    manifest = bundle / MANIFEST_NAME
    text = manifest.read_text()
    manifest.unlink()
    if kind == "fifo":
        os.mkfifo(manifest)
    elif kind == "/dev/zero":
        manifest.symlink_to("/dev/zero")
    elif kind == "outside":
        (tmp_path / "elsewhere.json").write_text(text)
        manifest.symlink_to(tmp_path / "elsewhere.json")
    elif kind == "directory":
        manifest.mkdir()
    elif kind == "deep":
        manifest.write_text("[" * 200_000)
    elif kind == "digits":
        manifest.write_text(text.replace('"latent_dim": 16', '"latent_dim": 1' + "0" * 5000))
    elif kind == "huge":
        manifest.write_text(text + " " * (2 << 20))


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "outside", "directory", "deep", "digits", "huge"])
def test_a_hostile_manifest_is_a_one_line_error(bundle, tmp_path, kind):
    make_manifest(bundle, tmp_path, kind)
    # A fresh process with a timeout: the FIFO used to hang, /dev/zero to read without bound.
    result = run_limited("from deepsmote.runtime.cli import main\nmain(sys.argv[1:])", "inspect", str(bundle))
    line = error_line(result.stderr)
    assert result.returncode == 1 and MANIFEST_NAME in line, line


# --- 4. the lock race -----------------------------------------------------------------------------


def test_a_job_that_loses_the_lock_race_removes_nothing(tmp_path):
    out = tmp_path / "out"
    winner, loser = OutputDir(out, {"job": "a"}), OutputDir(out, {"job": "a"})
    loser_made_out, winner_writes = threading.Event(), threading.Event()
    take_lock = loser._acquire_lock

    def delayed_lock() -> None:
        # The injected delay: the loser has created OUT and waits while the winner takes it.
        loser_made_out.set()
        assert winner_writes.wait(10)
        take_lock()

    loser._acquire_lock = delayed_lock  # type: ignore[method-assign]
    failure: list[BaseException] = []

    def lose() -> None:
        try:
            with loser:
                pass
        except DeepSMOTEError as exc:
            failure.append(exc)

    thread = threading.Thread(target=lose)
    thread.start()
    assert loser_made_out.wait(10)
    with winner:
        winner.write_json("work.json", {"shard": 1})
        winner_writes.set()
        thread.join(10)
        assert failure and "in use by another deepsmote job" in str(failure[0])
        assert (out / "work.json").exists() and (out / JOB_FILE).exists(), "the winner's output is intact"
        winner.write_json("more.json", {"shard": 2})


# --- 5. checks before the first write -------------------------------------------------------------


def test_a_class_name_too_long_for_a_folder_is_refused_before_any_write(bundle, tmp_path, capsys):
    images = np.zeros((8, 28, 28), dtype=np.uint8)
    images[4:] = np.arange(4 * 28 * 28).reshape(4, 28, 28) % 251
    images[:4] = (np.arange(4 * 28 * 28).reshape(4, 28, 28) * 7) % 253
    labels = np.array(["a"] * 4 + ["b" * 300] * 4)
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    out = tmp_path / "out"
    code, _, err = run_main(
        ["generate", bundle, tmp_path / "data.npz", "--out", out, "--strategy", "all", "--quiet"], capsys
    )
    line = error_line(err)
    assert code == 1 and "300 bytes, longer than the 255" in line, line
    assert not out.exists(), "no class's shards were written first"


# --- 6. quieter defects ---------------------------------------------------------------------------


def test_out_inside_data_is_refused(bundle, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    dataset = read_dataset(FMNIST)
    np.savez(data / "a.npz", images=dataset.images, labels=dataset.labels)
    code, _, err = run_main(["generate", bundle, data, "--out", data / "out", "--format", "npz", "--quiet"], capsys)
    assert code == 1 and "is inside DATA" in error_line(err)
    assert not (data / "out").exists()


def test_overwrite_removes_only_what_the_job_recorded(bundle, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's")
    (out / "holiday").mkdir()
    (out / "holiday" / "photo.png").write_bytes(b"not deepsmote's")
    (out / JOB_FILE).write_text(json.dumps({"format": "imagefolder", "new_counts": [0], "shard_size": 1}))
    code, _, err = generate(bundle, out, capsys, "--overwrite")
    assert code == 0, err
    assert (out / "mine.txt").read_text() == "the user's"
    assert (out / "holiday" / "photo.png").read_bytes() == b"not deepsmote's"
    made = sorted(p.name for p in (out / "9").iterdir())
    assert len(made) == 8 + 4  # its new samples and its originals
    # A second overwrite with other settings removes the first job's shards, and only them.
    code, _, err = generate(bundle, out, capsys, "--overwrite", "--seed", "3")
    assert code == 0 and sorted(p.name for p in (out / "9").iterdir()) == made
    assert (out / "mine.txt").exists() and (out / "holiday" / "photo.png").exists()


def test_overwrite_also_removes_a_unit_a_killed_run_left_unmarked(bundle, tmp_path, capsys):
    # A killed run can leave finished files of a unit it had not marked done yet.
    out = tmp_path / "out"
    code, _, err = generate(bundle, out, capsys, "--shard-size", "3")
    assert code == 0, err
    marks = sorted(p for p in out.iterdir() if p.name.startswith(".deepsmote-done-"))
    marks[-1].unlink()
    (out / "mine.txt").write_text("the user's")
    code, _, err = generate(bundle, out, capsys, "--overwrite", "--shard-size", "4")
    assert code == 0, err
    written = {line.split(",")[0] for line in (out / "manifest.csv").read_text().splitlines()[1:]}
    left = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert left == written
    assert (out / "mine.txt").read_text() == "the user's"


def test_overwrite_over_a_forged_job_file_never_replaces_a_file_named_like_a_shard(bundle, tmp_path, capsys):
    # The job file is forged: nothing deepsmote recorded names the user's file, so it is neither
    # removed nor written over; the job is refused before anything in OUT changes.
    out = tmp_path / "out"
    (out / "9").mkdir(parents=True)
    user_file = out / "9" / "class-0009-shard-000000-00000.png"
    user_file.write_bytes(b"the user's")
    (out / JOB_FILE).write_text(json.dumps({"format": "imagefolder"}))
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    code, _, err = generate(bundle, out, capsys, "--overwrite")
    assert code == 1 and "named like a deepsmote output file but not recorded by the job" in error_line(err), err
    assert user_file.read_bytes() == b"the user's"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before


def test_an_idx_header_of_another_shape_is_refused_before_the_data_is_read(bundle, tmp_path, capsys, monkeypatch):
    images = np.zeros((6, 32, 32), dtype=np.uint8)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + images.tobytes())
    labels = bytes([0, 0, 8, 1]) + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 1, 1])
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels)

    def no_read(*args):
        raise AssertionError("the data was read before the header was compared with the bundle")

    monkeypatch.setattr(readers, "_read_exactly", no_read)
    code, _, err = run_main(["generate", bundle, tmp_path / "train-images-idx3-ubyte", "--out", tmp_path / "o"], capsys)
    assert code == 1 and "1x32x32 (CxHxW) by its header" in error_line(err)


def test_a_png_suffix_is_decoded_only_as_png(tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / c / "0.png", format="PNG")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "b" / "1.png", format="BMP")
    with pytest.raises(DeepSMOTEError, match=r"1.png: unreadable image"):
        read_dataset(tmp_path)


@pytest.mark.parametrize("which", ["encoder.onnx", "decoder.onnx"])
def test_inspect_does_not_call_an_empty_graph_ok(bundle, capsys, which):
    latent = 16
    shapes = {"encoder.onnx": (("image", ["N", 1, 28, 28]), ("latent", ["N", latent]))}
    shapes["decoder.onnx"] = (("latent", ["N", latent]), ("image", ["N", 1, 28, 28]))
    (name_in, shape_in), (name_out, shape_out) = shapes[which]
    replace_graph(bundle, which, make_graph([info(name_in, shape_in)], [info(name_out, shape_out)], []))
    code, out, err = run_main(["inspect", bundle], capsys)
    assert code == 1 and "hashes: ok" not in out
    error_line(err)


def test_grid_into_a_missing_folder_is_refused_first(bundle, tmp_path, capsys):
    code, _, err = run_main(["grid", bundle, FMNIST, "--out", tmp_path / "missing" / "grid.png"], capsys)
    assert code == 1 and "does not exist" in error_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_grid_into_a_read_only_folder_is_refused_first(bundle, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    code, _, err = run_main(["grid", bundle, FMNIST, "--out", folder / "grid.png"], capsys)
    assert code == 1 and "not writable" in error_line(err)


@pytest.mark.parametrize("value", ["1000000000", str(10**40)])
def test_train_with_a_huge_latent_dim_is_one_line(tmp_path, capsys, value):
    code, _, err = run_main(["train", FMNIST, "--out", tmp_path / "b", "--latent-dim", value, "--epochs", "1"], capsys)
    assert code == 2 and "--latent-dim must be at most 4096" in error_line(err)
    assert not (tmp_path / "b").exists()


def test_train_with_a_huge_res_blocks_is_refused_up_front(tmp_path, capsys):
    import time

    start = time.monotonic()
    args = ["train", FMNIST, "--out", tmp_path / "b", "--res-blocks", "100000", "--epochs", "1"]
    code, _, err = run_main(args, capsys)
    assert code == 2 and "--res-blocks must be at most 64, got 100000" in error_line(err)
    assert time.monotonic() - start < 30 and not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "args",
    [["generate"], ["generate", "a", "b", "--out", "o", "--k", "0"], ["nope"], ["--nope"], ["grid", "--per-row"]],
)
def test_usage_errors_are_one_line(capsys, args):
    code, _, err = run_main(args, capsys)
    assert code == 2 and "--help" in error_line(err)


# --- 7. the one-line property, and --debug ---------------------------------------------------------


def test_a_bug_is_one_line_and_debug_shows_the_traceback(bundle, tmp_path, capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("deepsmote.runtime.commands.inspect.load_bundle", bug)
    code, _, err = run_main(["inspect", bundle], capsys)
    assert code == 1 and "unexpected ZeroDivisionError: division by zero" in error_line(err)
    assert "--debug" in err
    for args, env in ((["--debug", "inspect", bundle], None), (["inspect", bundle], "1")):
        if env:
            monkeypatch.setenv("DEEPSMOTE_DEBUG", env)
        code, _, err = run_main(args, capsys)
        assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err


FLAGS = ["--out", "--strategy", "--k", "--seed", "--format", "--shard-size", "--batch-size", "--threads", "--labels"]
VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1", "nan", "inf", "", "auto", "all", "{}", '{"9": 5}', '{"9": -5}', "[", "x" * 300]),
    st.integers(-(10**40), 10**40).map(str),
    st.text(max_size=12),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_property_any_arguments_end_in_one_line_or_success(bundle, tmp_path_factory, capsys, data):
    tmp = tmp_path_factory.mktemp("args")
    paths = [str(bundle), str(FMNIST), str(tmp / "missing"), str(tmp), "/dev/zero", "/", str(tmp / "out")]
    command = data.draw(st.sampled_from(["generate", "grid", "inspect", "train", "export", "bogus"]))
    positional = data.draw(st.lists(st.sampled_from(paths), max_size=3))
    options = data.draw(st.lists(st.tuples(st.sampled_from(FLAGS), VALUES | st.sampled_from(paths)), max_size=4))
    args = [command, *positional, *itertools.chain.from_iterable(options)]
    # Keep a run that is valid small: click takes an option's last value.
    args += {"generate": ["--strategy", SMALL], "train": ["--epochs", "1", "--width", "4", "--latent-dim", "4"]}.get(
        command, []
    )
    code, _, err = run_main(args, capsys)
    if code != 0:
        error_line(err)


MANIFEST_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    field=st.sampled_from(["format_version", "image_shape", "latent_dim", "classes", "files", "training", "x"]),
    value=MANIFEST_VALUES,
)
def test_property_any_manifest_field_ends_in_one_line_or_success(bundle, capsys, field, value):
    path = bundle / MANIFEST_NAME
    original = path.read_text()
    manifest = json.loads(original)
    manifest[field] = value
    try:
        path.write_text(json.dumps(manifest))
        code, _, err = run_main(["inspect", bundle], capsys)
        if code != 0:
            error_line(err)
    finally:
        path.write_text(original)


@settings(max_examples=60, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=20),
        st.dictionaries(
            st.sampled_from(["0", "9", "x", "1"]),
            st.integers(-(10**40), 10**40) | st.sampled_from([10**15 + 1, 2**63, 10**30]) | st.floats(),
        ).map(json.dumps),
    )
)
def test_property_any_strategy_is_counts_in_bounds_or_one_line(text):
    try:
        new = new_sample_counts(parse_strategy(text), [400, 4], ["0", "9"])
    except DeepSMOTEError as exc:
        assert "\n" not in str(exc)
    else:
        assert new.dtype == np.int64 and (new >= 0).all() and (new <= MAX_CLASS_COUNT).all()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from([*LIES, "honest"]), batch=st.sampled_from(["1", "3", "64"]))
def test_property_any_crafted_graph_ends_in_one_line_or_success(bundle, tmp_path_factory, capsys, kind, batch):
    copy = tmp_path_factory.mktemp("graph") / "bundle"
    shutil.copytree(bundle, copy)
    if kind != "honest":
        replace_graph(copy, *lying_graph(kind))
    code, _, err = generate(copy, copy.with_name("out"), capsys, "--batch-size", batch)
    # Decoding one code a call, the batch-averaging decoder tells the truth.
    assert (code == 0) == (kind == "honest" or (kind, batch) == ("batch of one", "1")), err
    if code != 0:
        assert "onnx" in error_line(err)


# A file system of 1 PB with 10 GB free, 4 KiB blocks and 10^6 free inodes.
_SMALL_FREE_SPACE = """
import os
def statvfs(path):
    return os.statvfs_result((4096, 4096, 2**38, 10**10 // 4096, 10**10 // 4096, 10**9, 10**6, 10**6, 0, 255))
os.statvfs = statvfs
"""


@pytest.mark.parametrize("fmt", ["imagefolder", "parquet", "webdataset", "npz"])
def test_a_job_larger_than_the_free_space_is_refused_within_seconds(bundle, tmp_path, fmt):
    out = tmp_path / "out"
    code = f"import sys\n{_SMALL_FREE_SPACE}\nfrom deepsmote.runtime.cli import entry_point\nentry_point(sys.argv[1:])"
    args = ["generate", str(bundle), str(FMNIST), "--out", str(out), "--format", fmt, "--strategy", '{"1": 1000000000}']
    try:
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the job started writing instead of being refused") from None
    line = error_line(result.stderr)
    assert result.returncode == 1 and "more than the 10 GB free in --out" in line, line
    assert not out.exists()


def test_a_resumed_job_counts_only_what_is_left(bundle, tmp_path, monkeypatch):
    from deepsmote.runtime.writers import check_capacity

    free = os.statvfs_result((4096, 4096, 2**38, 2500, 2500, 10**9, 10**6, 10**6, 0, 255))  # 10 MB free
    monkeypatch.setattr(os, "statvfs", lambda path: free)
    with pytest.raises(DeepSMOTEError, match=r"the job.s 3000 new samples take at least 12\.3 MB in imagefolder"):
        check_capacity(tmp_path, "imagefolder", (1, 28, 28), 3000)
    check_capacity(tmp_path, "imagefolder", (1, 28, 28), 3000, done_samples=1000)
    with pytest.raises(DeepSMOTEError, match="1000 files in imagefolder, more than the 999"):
        monkeypatch.setattr(os, "statvfs", lambda path: os.statvfs_result((*free[:7], 999, 0, 255)))
        check_capacity(tmp_path, "imagefolder", (1, 28, 28), 1000)


# --- issue #40: failures that were reported as bugs --------------------------------------------


def _codes_of_magnitude(bundle: Path, tmp_path: Path, value: float) -> Path:
    """A latent cache of FMNIST whose codes are +-``value``, digest and all as encode writes it."""
    import zipfile

    from deepsmote.runtime import codes as codes_module

    cache = tmp_path / "plain.codes"
    code = run_main(["encode", bundle, FMNIST, "--out", cache, "--quiet"], _NoCapture())
    assert code[0] == 0
    with zipfile.ZipFile(cache) as archive:
        arrays = {name: np.load(archive.open(f"{name}.npy")) for name in ("codes", "labels", "index")}
        header = json.loads(np.load(archive.open("header.npy")).tobytes())
    arrays["codes"] = np.where(np.arange(arrays["codes"].size).reshape(arrays["codes"].shape) % 2, value, -value)
    arrays["codes"] = arrays["codes"].astype(np.float32)
    header["sha256"] = codes_module._digest(arrays, header)
    crafted = tmp_path / "huge.codes"
    with open(crafted, "wb") as f:
        np.savez(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    return crafted


class _NoCapture:
    def readouterr(self):
        return "", ""


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("resize of 5000 digits", "--resize must be HxW with sides 1..1024"),
        ("max-draw-ratio 10^21", "--max-draw-ratio must be at most 1000000"),
        ("codes near 3e38", "cannot be searched (codes are too large"),
        ("300-character out", "File name too long; use a shorter name"),
    ],
)
def test_hostile_options_are_errors_that_name_the_problem_not_bugs(bundle, tmp_path, capsys, case, needle):
    data, extra = FMNIST, []
    if case == "resize of 5000 digits":
        extra = ["--resize", f"{'9' * 5000}x28"]
    elif case == "max-draw-ratio 10^21":
        from deepsmote.runtime import DeepSMOTEError
        from deepsmote.runtime.gate import check_ratio

        with pytest.raises(DeepSMOTEError, match="must be at most"):
            check_ratio(10**21)
        extra = ["--max-draw-ratio", str(10**21)]
    elif case == "codes near 3e38":
        data = _codes_of_magnitude(bundle, tmp_path, 3e38)
    out = tmp_path / ("a" * 300 if case == "300-character out" else "out")
    code, _, err = run_main(["generate", bundle, data, "--out", out, "--strategy", SMALL, "--quiet", *extra], capsys)
    line = error_line(err)
    # A bad option value is a usage error (exit 2); the others fail while running (exit 1).
    usage = case in ("resize of 5000 digits", "max-draw-ratio 10^21")
    assert code == (2 if usage else 1) and needle in line and "a bug" not in line, line
    assert out.name not in os.listdir(tmp_path)  # (a name too long to stat)


def test_enospc_while_writing_a_bundle_is_an_error_not_a_bug(tiny_bundle, tmp_path, capsys, monkeypatch):
    import errno

    from deepsmote.training import export as export_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "bundle"))

    monkeypatch.setattr(export_module, "replace_dir", full)
    checkpoint = tiny_bundle.with_name("bundle.run") / "best.pt"
    code, _, err = run_main(["export", checkpoint, "--out", tmp_path / "bundle"], capsys)
    line = error_line(err)
    assert code == 1 and "No space left on device; free some space or write elsewhere" in line, line
    assert "a bug" not in line and not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("kind", ["garbage", "a link", "a list", "counts mistyped"])
def test_report_of_a_damaged_summary_is_an_error_naming_it(tmp_path, capsys, kind):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.csv").write_text("file,key,label,class,synthetic\n")
    summary = out / "summary.json"
    if kind == "garbage":
        summary.write_bytes(b"\x00garbage")
    elif kind == "a link":
        (tmp_path / "elsewhere.json").write_text("{}")
        summary.symlink_to(tmp_path / "elsewhere.json")
    elif kind == "a list":
        summary.write_text("[1, 2]")
    else:
        summary.write_text(json.dumps({"classes": ["a"], "counts": {"a": {"original": "x"}}, "format": "npz"}))
    code, _, err = run_main(["report", out], capsys)
    line = error_line(err)
    assert code == 1 and f"{summary}:" in line and "rerun the generate job" in line and "a bug" not in line, line
    assert not (out / "report.html").exists()


def test_report_names_html_when_its_page_cannot_be_written(tmp_path, capsys, monkeypatch):
    from deepsmote.runtime import report as report_module

    monkeypatch.setattr(report_module, "build_report", lambda out, *args: "<html></html>")
    target = tmp_path / "missing-folder" / "page.html"
    code, _, err = run_main(["report", tmp_path, "--html", target], capsys)
    line = error_line(err)
    assert code == 1 and f"cannot write the report {target}" in line and "--html" in line and "--out" not in line


def test_an_unreadable_image_is_named_not_its_buffer(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png")
    with pytest.raises(DeepSMOTEError, match="unreadable image") as info:
        read_dataset(tmp_path)
    assert "BytesIO" not in str(info.value) and "broken.png" in str(info.value)


@pytest.mark.parametrize("fmt", ["npz", "webdataset"])
def test_a_shard_size_beyond_the_memory_bound_is_refused_up_front(bundle, tmp_path, capsys, fmt):
    out = tmp_path / "out"
    args = ["generate", bundle, FMNIST, "--out", out, "--format", fmt, "--shard-size", "100000000"]
    code, _, err = run_main([*args, "--strategy", '{"9": 3000000}', "--quiet"], capsys)
    line = error_line(err)
    assert code == 2 and "--shard-size 100000000 holds more than the 1024 MiB" in line and "at most 1369568" in line
    assert not out.exists()
