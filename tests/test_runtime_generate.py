"""`deepsmote generate` end to end on the embedded Fashion-MNIST subset."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, DeepSMOTEError, generate_dataset
from deepsmote.runtime.outdir import JOB_FILE, LOCK_FILE, OutputDir, done_marks
from deepsmote.runtime.readers import read_dataset
from helpers import run_cli, run_python, tree_digest

EXPECTED_NEW = [0, 200, 300, 325, 350, 365, 380, 390, 394, 396]


@pytest.fixture(scope="module")
def npz_run(tiny_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "npz"
    run_cli(
        "generate",
        str(tiny_bundle),
        str(fmnist_mini()),
        "--out",
        str(out),
        "--format",
        "npz",
        "--quiet",
        "--synthetic-only",
    )
    return out


def test_npz_output_reads_back_as_data_and_balances(npz_run):
    synthetic = read_dataset(npz_run)
    counts = dict(zip(synthetic.classes, synthetic.class_counts().tolist(), strict=True))
    # The whole class list travels with the shards, so a class that got no new samples keeps its place.
    assert counts == {str(c): n for c, n in enumerate(EXPECTED_NEW)}
    assert synthetic.images.shape[1:] == (28, 28) and synthetic.images.dtype == np.uint8


def test_summary_records_the_run(npz_run, tiny_bundle):
    summary = json.loads((npz_run / "summary.json").read_text())
    # The fingerprint is sha256 over the graphs' own sha256s, computed here from the files.
    graphs = ("encoder.onnx", "decoder.onnx", "decoder_cpu.onnx", "decoder_fp16.onnx")
    file_hashes = "".join(hashlib.sha256((tiny_bundle / g).read_bytes()).hexdigest() for g in graphs)
    assert summary["bundle"]["fingerprint"] == hashlib.sha256(file_hashes.encode()).hexdigest()
    assert summary["bundle"]["fingerprint"] == json.loads((npz_run / JOB_FILE).read_text())["bundle"]
    assert summary["counts"]["9"] == {"original": 4, "synthetic": 396, "total": 400}
    assert summary["provider"] == "CPUExecutionProvider"
    assert summary["seed"] == 0 and summary["format"] == "npz"
    assert summary["neighbors_used"]["9"] == 3
    assert {"load_and_fit", "generate", "total"} <= set(summary["timings_s"])


def test_cli_and_api_give_the_same_images(npz_run, tiny_bundle):
    data = read_dataset(fmnist_mini())
    X_res, _ = DeepSMOTE(tiny_bundle, random_state=0).fit_resample(data.images, data.labels)
    from_cli = read_dataset(npz_run)
    order = np.argsort(from_cli.labels, kind="stable")
    np.testing.assert_array_equal(from_cli.images[order], X_res[len(data.images) :])


def test_imagefolder_output_reads_back_per_class(tiny_bundle, tmp_path):
    out = tmp_path / "folder"
    run_cli("generate", str(tiny_bundle), str(fmnist_mini()), "--out", str(out), "--strategy", '{"8": 20, "9": 30}')
    back = read_dataset(out)
    # the whole set by default: every class has its folder, classes 8 and 9 grown
    counts = dict(zip(back.classes, back.class_counts().tolist(), strict=True))
    assert counts == {
        **{str(c): n for c, n in enumerate(read_dataset(fmnist_mini()).class_counts().tolist())},
        "8": 20,
        "9": 30,
    }
    synthetic = tmp_path / "synthetic"
    run_cli(
        "generate",
        str(tiny_bundle),
        str(fmnist_mini()),
        "--out",
        str(synthetic),
        "--strategy",
        '{"8": 20, "9": 30}',
        "--synthetic-only",
    )
    back = read_dataset(synthetic)
    assert dict(zip(back.classes, back.class_counts().tolist(), strict=True)) == {"8": 14, "9": 26}


def test_webdataset_output_reads_back_with_webdataset(tiny_bundle, tmp_path):
    webdataset = pytest.importorskip("webdataset")
    out = tmp_path / "wds"
    run_cli(
        "generate",
        str(tiny_bundle),
        str(fmnist_mini()),
        "--out",
        str(out),
        "--format",
        "webdataset",
        "--strategy",
        "minority",
        "--shard-size",
        "150",
        "--synthetic-only",
    )
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    assert len(shards) == 3  # 396 samples in shards of 150
    samples = list(webdataset.WebDataset(shards, shardshuffle=False).decode("l").to_tuple("png", "cls"))
    assert len(samples) == 396
    assert {cls for _, cls in samples} == {9}
    assert samples[0][0].shape == (28, 28)


@pytest.mark.parametrize("batch_size", ["1", "7", "256"])
def test_output_bytes_do_not_depend_on_batch_size_or_threads(tiny_bundle, npz_run, tmp_path, batch_size):
    out = tmp_path / "again"
    threads = "1" if batch_size == "7" else "2"
    run_cli(
        "generate",
        str(tiny_bundle),
        str(fmnist_mini()),
        "--out",
        str(out),
        "--format",
        "npz",
        "--batch-size",
        batch_size,
        "--threads",
        threads,
        "--quiet",
        "--synthetic-only",
    )
    assert tree_digest(out) == tree_digest(npz_run)


def test_killed_job_resumes_to_identical_bytes(tiny_bundle, tmp_path):
    args = [str(tiny_bundle), str(fmnist_mini()), "--format", "imagefolder", "--shard-size", "50", "--quiet"]
    run_cli("generate", *args, "--out", str(tmp_path / "straight"))
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "deepsmote.runtime.cli", "generate", *args, "--out", str(out), "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(done_marks(out)) < 5:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(done_marks(out))
    assert 5 <= done < 60, "the job should be killed part-way"
    result = run_cli("generate", *args, "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards"]["skipped_as_done"] >= 5, result.stdout
    assert tree_digest(out) == tree_digest(tmp_path / "straight")
    assert not list(out.rglob("*.partial"))


# --- bad inputs: one line, non-zero exit, nothing left behind ---------------------------


def assert_refused(result: subprocess.CompletedProcess, match: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert match in lines[0], lines[0]


def test_foreign_non_empty_out_is_refused_and_untouched(tiny_bundle, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        result = run_cli("generate", str(tiny_bundle), str(fmnist_mini()), "--out", str(out), *extra, check=False)
        assert_refused(result, "not made by deepsmote generate")
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_other_settings_are_refused_unless_overwrite(tiny_bundle, npz_run, tmp_path):
    out = tmp_path / "s"
    base = [
        str(tiny_bundle),
        str(fmnist_mini()),
        "--out",
        str(out),
        "--format",
        "npz",
        "--quiet",
        "--strategy",
        "minority",
    ]
    run_cli("generate", *base)
    before = tree_digest(out)
    result = run_cli("generate", *base, "--seed", "5", check=False)
    assert_refused(result, "differs in: seed")
    assert tree_digest(out) == before
    run_cli("generate", *base, "--seed", "5", "--overwrite")
    assert tree_digest(out) != before


def test_a_job_of_another_deepsmote_version_is_refused(tiny_bundle, tmp_path):
    out = tmp_path / "v"
    args = [str(tiny_bundle), str(fmnist_mini()), "--out", str(out), "--format", "npz", "--quiet"]
    run_cli("generate", *args, "--strategy", '{"9": 10}')
    job = json.loads((out / JOB_FILE).read_text())
    job["deepsmote_version"] = "0.0.1"
    (out / JOB_FILE).write_text(json.dumps(job))
    before = tree_digest(out)
    assert_refused(run_cli("generate", *args, "--strategy", '{"9": 10}', check=False), "differs in: deepsmote_version")
    assert tree_digest(out) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [("provider", "CUDAExecutionProvider"), ("libraries", {"numpy": "1.0", "numba": "0.1", "onnxruntime": "1.0"})],
)
def test_a_job_on_another_provider_or_library_is_refused(tiny_bundle, tmp_path, field, value):
    # CPU and CUDA (or two onnxruntime versions) may round differently: resuming across them
    # would mix outputs, so the provider used and the library versions are job settings.
    out = tmp_path / "p"
    args = [str(tiny_bundle), str(fmnist_mini()), "--out", str(out), "--format", "npz", "--quiet"]
    run_cli("generate", *args, "--strategy", '{"9": 10}')
    job = json.loads((out / JOB_FILE).read_text())
    assert job["provider"] == "CPUExecutionProvider"
    assert set(job["libraries"]) == {"numpy", "numba", "onnxruntime"}
    job[field] = value
    (out / JOB_FILE).write_text(json.dumps(job))
    before = tree_digest(out)
    assert_refused(run_cli("generate", *args, "--strategy", '{"9": 10}', check=False), f"differs in: {field}")
    assert tree_digest(out) == before


def test_library_errors_name_parameters_and_the_cli_names_flags(tiny_bundle, tmp_path):
    out = tmp_path / "a-file"
    out.write_text("mine")
    with pytest.raises(DeepSMOTEError, match=r"^`out` .* is a file; give a directory$"):
        generate_dataset(tiny_bundle, read_dataset(fmnist_mini()), out, progress=False)
    result = run_cli("generate", tiny_bundle, fmnist_mini(), "--out", out, check=False)
    assert_refused(result, f"--out {out} is a file; give a directory")
    assert out.read_text() == "mine"


def test_wrong_image_size_for_bundle(tiny_bundle, tmp_path):
    data = tmp_path / "big.npz"
    np.savez(data, images=np.zeros((10, 32, 32), np.uint8), labels=np.repeat([0, 1], 5))
    out = tmp_path / "o"
    assert_refused(
        run_cli("generate", str(tiny_bundle), str(data), "--out", str(out), check=False),
        "the bundle expects 28x28 (HxW), 1 channel; pass --resize 28x28",
    )
    assert not out.exists()


def test_class_with_one_sample_names_the_class(tiny_bundle, tmp_path):
    data = tmp_path / "d.npz"
    images = read_dataset(fmnist_mini()).images[:11]
    np.savez(data, images=images, labels=np.array([0] * 10 + [1]))
    out = tmp_path / "o"
    assert_refused(
        run_cli("generate", str(tiny_bundle), str(data), "--out", str(out), check=False), "class '1' has 1 sample"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--strategy", '{"42": 10}'], "not in the data"),
        (["--strategy", "most"], "--strategy must be one of"),
        (["--provider", "cuda"], "CUDAExecutionProvider is not available"),
    ],
)
def test_bad_options(tiny_bundle, tmp_path, extra, match):
    import onnxruntime

    if "cuda" in extra and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "o"
    assert_refused(
        run_cli("generate", str(tiny_bundle), str(fmnist_mini()), "--out", str(out), *extra, check=False), match
    )
    assert not out.exists()


def test_missing_bundle_and_data(tiny_bundle, tmp_path):
    assert_refused(
        run_cli("generate", str(tmp_path / "nobundle"), str(fmnist_mini()), "--out", str(tmp_path / "o"), check=False),
        "not a bundle directory",
    )
    assert_refused(
        run_cli("generate", str(tiny_bundle), str(tmp_path / "nodata.npz"), "--out", str(tmp_path / "o"), check=False),
        "no such file",
    )
    assert not (tmp_path / "o").exists()


def test_second_job_on_the_same_out_is_refused(tiny_bundle, tmp_path):
    out = tmp_path / "locked"
    with OutputDir(out, {"x": 1}):
        result = run_cli("generate", str(tiny_bundle), str(fmnist_mini()), "--out", str(out), check=False)
        assert (out / LOCK_FILE).exists()  # the refused job leaves the running job's lock alone
    assert_refused(result, "is in use by another deepsmote job")
    assert not (out / LOCK_FILE).exists()  # and the job that ends removes it


def test_runtime_runs_where_torch_cannot_be_imported(tiny_bundle, tmp_path):
    script = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from deepsmote.runtime.cli import main
from deepsmote.runtime import DeepSMOTE, read_dataset
data = read_dataset({str(fmnist_mini())!r})
X, y = DeepSMOTE({str(tiny_bundle)!r}, random_state=0).fit_resample(data.images, data.labels)
assert sorted(set(__import__("numpy").bincount(y))) == [400], "not balanced"
try:
    main(["generate", {str(tiny_bundle)!r}, {str(fmnist_mini())!r}, "--out", {str(tmp_path / "o")!r}, "--quiet",
          "--synthetic-only"])
except SystemExit as exit:
    assert not exit.code, exit.code
loaded = [m for m in sys.modules if m.startswith("torch") and sys.modules[m] is not None]
assert not loaded, loaded
print("ok")
"""
    run_python(script)
    assert read_dataset(tmp_path / "o").class_counts().sum() == sum(EXPECTED_NEW)


def test_jobs_on_small_classes_never_import_numba(tiny_bundle, tmp_path):
    # Every class that grows here has at most 200 images, under the k-NN kernel's SMALL_N, and
    # every shard is under the interpolation's SMALL_SIZE: numba (~0.6 s to load) is never needed,
    # even with a thread count to pass on to it.
    script = f"""
import sys
from deepsmote.kernels.knn import SMALL_N
from deepsmote.runtime.cli import main
from deepsmote.runtime import DeepSMOTE, read_dataset
data = read_dataset({str(fmnist_mini())!r})
assert SMALL_N >= 200, SMALL_N
DeepSMOTE({str(tiny_bundle)!r}, random_state=0, n_threads=1).fit_resample(data.images, data.labels)
try:
    main(["generate", {str(tiny_bundle)!r}, {str(fmnist_mini())!r}, "--out", {str(tmp_path / "o")!r},
          "--strategy", '{{"9": 104}}', "--threads", "1", "--quiet", "--synthetic-only"])
except SystemExit as exit:
    assert not exit.code, exit.code
assert "numba" not in sys.modules, "numba was imported"
print("ok")
"""
    run_python(script)
    assert read_dataset(tmp_path / "o").class_counts().sum() == 100


def test_a_job_drawing_few_bases_from_a_class_above_medium_n_never_imports_numba(tiny_bundle, tmp_path):
    # Class 0 taken 11 times (its rotations, mirrors and one-pixel shifts: 4,400 codes, above the
    # k-NN's MEDIUM_N) grows by 100: the job finds the neighbours of the bases it draws, in numpy.
    data = read_dataset(fmnist_mini())
    class_0 = data.images[data.labels == 0]
    turns = [np.rot90(class_0, r, axes=(1, 2)) for r in range(4)]
    variants = turns + [t[:, :, ::-1] for t in turns] + [np.roll(class_0, 1, axis=a) for a in (1, 2)]
    variants.append(np.roll(class_0, -1, axis=1))
    images = np.concatenate([data.images, *variants[1:]])
    labels = np.concatenate([data.labels, np.zeros(10 * len(class_0), dtype=data.labels.dtype)])
    path = tmp_path / "big.npz"
    np.savez(path, images=images, labels=labels)
    script = f"""
import sys
import numpy as np
from deepsmote.kernels.knn import MEDIUM_N
from deepsmote.runtime.cli import main
from deepsmote.runtime import DeepSMOTE, read_dataset
data = read_dataset({str(path)!r})
assert data.class_counts()[0] == 4400 > MEDIUM_N
DeepSMOTE({str(tiny_bundle)!r}, sampling_strategy={{0: 4500}}, random_state=0).fit_resample(data.images, data.labels)
try:
    main(["generate", {str(tiny_bundle)!r}, {str(path)!r}, "--out", {str(tmp_path / "o")!r},
          "--strategy", '{{"0": 4500}}', "--quiet", "--synthetic-only"])
except SystemExit as exit:
    assert not exit.code, exit.code
assert "numba" not in sys.modules, "numba was imported"
print("ok")
"""
    run_python(script)
    assert read_dataset(tmp_path / "o").class_counts().sum() == 100


def test_imagefolder_warns_when_loaders_would_number_classes_otherwise(tiny_bundle, tmp_path):
    # Classes "0".."10" in numeric order sort as "0", "1", "10", "2", ... by folder name.
    images = read_dataset(fmnist_mini()).images[:33]
    data = tmp_path / "eleven.npz"
    np.savez(data, images=images, labels=np.repeat(np.arange(11), 3))
    result = run_cli("generate", tiny_bundle, data, "--out", tmp_path / "o", "--strategy", '{"10": 6}', "--quiet")
    assert "number ImageFolder classes by sorted folder name" in result.stderr
    assert "manifest.csv" in result.stderr and "--format npz" in result.stderr
    quiet = run_cli("generate", tiny_bundle, fmnist_mini(), "--out", tmp_path / "p", "--strategy", '{"9": 6}')
    assert "sorted folder name" not in quiet.stderr


def test_the_first_unit_is_on_disk_before_the_second_is_made(tiny_bundle, tmp_path, monkeypatch):
    from deepsmote.runtime.synthesis import Synthesizer

    out = tmp_path / "out"
    marks_seen = []
    samples = Synthesizer.samples

    def recording(self, unit):
        marks_seen.append(len(done_marks(out)))
        return samples(self, unit)

    monkeypatch.setattr(Synthesizer, "samples", recording)
    strategy = {"9": 34}
    data = read_dataset(fmnist_mini())
    generate_dataset(
        tiny_bundle,
        data,
        out,
        sampling_strategy=strategy,
        fmt="npz",
        shard_size=10,
        progress=False,
        include_originals=False,
    )
    # Three units: the second is made only once the first is marked done; the third may be made
    # while the second is written.
    assert len(marks_seen) == 3 and marks_seen[:2] == [0, 1], marks_seen
    assert len(done_marks(out)) == 3
