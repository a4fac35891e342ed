"""Resuming a job: done units are not made again, and a rerun with any other setting is refused.

On the committed golden bundle, through `generate_dataset` in this process, so that the work a
resume does (the shards decoded, the files written) is counted, not read from its summary.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTEError, JobSettings, generate_dataset, load_bundle, read_dataset
from deepsmote.runtime import job as job_module
from deepsmote.runtime.bundle import CLASSIFIER_FILE, MANIFEST_NAME, sha256_file
from deepsmote.runtime.outdir import JOB_FILE, done_marks
from deepsmote.runtime.remix import RemixSettings
from deepsmote.runtime.synthesis import Synthesizer
from golden import GOLDEN_BUNDLE
from helpers import tree_digest, without_graphs

# Classes 7 (10 images) and 8 (6) grow by 60 and 40 in shards of 20: 3 units of 7, 2 of 8.
STRATEGY = {"7": 70, "8": 46}
SHARD_SIZE = 20
UNITS = 5


def _files(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of every output file but the job's bookkeeping and the summary."""
    return {
        str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.name not in ("summary.json", "manifest.csv")
    }


def _job(data: Any, out: Path, bundle: Path = GOLDEN_BUNDLE, **options: Any) -> dict[str, Any]:
    # The new samples alone (the default adds the originals): the units the tests count.
    settings = {
        "sampling_strategy": STRATEGY,
        "shard_size": SHARD_SIZE,
        "fmt": "npz",
        "seed": 4,
        "include_originals": False,
    }
    settings.update(options)
    return generate_dataset(bundle, data, out, progress=False, **settings)


@pytest.fixture(scope="module")
def data() -> Any:
    return read_dataset(fmnist_mini())


def test_a_resume_makes_and_writes_only_the_units_not_marked_done(data, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    _job(data, straight)
    out = tmp_path / "resumed"
    _job(data, out)
    marks = sorted(done_marks(out))
    assert len(marks) == UNITS
    # Two units lost (a job killed before their marks): their files and marks are gone.
    lost = {mark.name.removeprefix(".deepsmote-done-") for mark in marks[1:3]}
    for name in lost:
        (out / f".deepsmote-done-{name}").unlink()
        (out / f"{name}.npz").unlink()
    kept = _files(out)
    decoded: list[str] = []
    images = Synthesizer.images

    def counted(self: Synthesizer, shard: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        decoded.append(f"class-{shard.class_index:04d}-shard-{shard.shard_index:06d}")
        return images(self, shard, *args, **kwargs)

    monkeypatch.setattr(Synthesizer, "images", counted)
    summary = _job(data, out)
    # Only the lost units were decoded and written; the files of the others are the same files.
    assert sorted(decoded) == sorted(lost) and len(lost) == 2, decoded
    now = _files(out)
    assert {name: now[name] for name in kept} == kept
    assert sorted(set(now) - set(kept)) == sorted(f"{name}.npz" for name in lost)
    assert summary["shards"] == {"total": UNITS, "skipped_as_done": UNITS - 2}
    made = sum(len(np.load(out / f"{name}.npz")["labels"]) for name in lost)
    assert summary["images_generated_this_run"] == made == 2 * SHARD_SIZE
    assert tree_digest(out) == tree_digest(straight)
    # A rerun of the finished job makes nothing.
    decoded.clear()
    summary = _job(data, out)
    assert decoded == [] and _files(out) == now
    assert summary["shards"]["skipped_as_done"] == UNITS and summary["images_generated_this_run"] == 0


def _other_data(tmp_path: Path, data: Any) -> Any:
    """DATA with the same classes and counts and one pixel of one image of class 0 changed."""
    images = data.images.copy()
    first = int(np.flatnonzero(data.labels == 0)[0])
    images[first, 0, 0] ^= 1
    path = tmp_path / "other.npz"
    np.savez(path, images=images, labels=data.labels)
    return read_dataset(path)


def _real_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# Per JobSettings field, how a rerun changes it (options of the job, or what the job reads from
# its environment), and so must be refused before any work.
def _change(
    field: str, gated: Path, tmp_path: Path, data: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, dict[str, Any]]:
    if field == "deepsmote_version":
        monkeypatch.setattr(job_module, "version", lambda name: "0.0.1" if name == "deepsmote" else _real_version(name))
    elif field == "provider":
        monkeypatch.setattr(job_module, "resolve_provider", lambda provider: "CUDAExecutionProvider")
    elif field == "libraries":
        libraries = job_module._byte_libraries
        monkeypatch.setattr(job_module, "_byte_libraries", lambda fmt: {**libraries(fmt), "numpy": "1.0"})
    elif field == "bundle":
        return data, {"bundle": without_graphs(gated, tmp_path / "bundle", "decoder_cpu.onnx")}
    elif field == "data":
        return _other_data(tmp_path, data), {"bundle": gated}
    else:
        return data, {"bundle": gated, **CHANGES[field]}
    return data, {"bundle": gated}


CHANGES: dict[str, dict[str, Any]] = {
    "new_counts": {"sampling_strategy": {"7": 70, "8": 47}},
    "k_neighbors": {"k_neighbors": 2},
    "seed": {"seed": 5},
    "format": {"fmt": "imagefolder"},
    "shard_size": {"shard_size": 30},
    "precision": {"precision": "fp16"},
    "include_originals": {"include_originals": True},
    "sampler": {"sampler": "adasyn"},
    "filter_threshold": {"filter_threshold": 0.5},
    "max_draw_ratio": {"filter_threshold": 0.5, "max_draw_ratio": 7},
    "synthetic_share": {"synthetic_share": 0.5},
    "remix": {"sampler": "remix", "remix": RemixSettings(kappa=2.0)},
    "hard_labels": {"sampler": "remix", "hard_labels": True},
}
FROM_THE_ENVIRONMENT = ("deepsmote_version", "provider", "libraries", "bundle", "data")


def test_every_job_setting_has_a_change_below():
    assert {f.name for f in dataclasses.fields(JobSettings)} == {*CHANGES, *FROM_THE_ENVIRONMENT}


@pytest.fixture(scope="module")
def gated_bundle(tmp_path_factory) -> Path:
    """The golden bundle with a classifier (one linear layer and a softmax), so that the gate's settings can change."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(28 * 28, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weights, "weights")],
    )
    bundle = shutil.copytree(GOLDEN_BUNDLE, tmp_path_factory.mktemp("gated") / "bundle")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), bundle / CLASSIFIER_FILE)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["files"][CLASSIFIER_FILE] = sha256_file(bundle / CLASSIFIER_FILE)
    manifest["classifier"] = {"config": {}, "train_accuracy": None}
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    load_bundle(bundle)
    return bundle


@pytest.fixture(scope="module")
def finished(data, gated_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "out"
    _job(data, out, gated_bundle)
    return out


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(JobSettings)])
def test_a_rerun_with_another_setting_is_refused_before_any_work(
    field, finished, gated_bundle, data, tmp_path, monkeypatch
):
    out = shutil.copytree(finished, tmp_path / "out")
    before = tree_digest(out), sorted(p.name for p in done_marks(out)), (out / JOB_FILE).read_bytes()
    rerun_data, options = _change(field, gated_bundle, tmp_path, data, monkeypatch)

    def no_work(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the job encoded DATA before refusing OUT")

    monkeypatch.setattr(job_module, "codes_of", no_work)
    with pytest.raises(DeepSMOTEError, match=rf"holds a job made with other settings \(differs in: [^)]*\b{field}\b"):
        _job(rerun_data, out, **options)
    assert (tree_digest(out), sorted(p.name for p in done_marks(out)), (out / JOB_FILE).read_bytes()) == before
