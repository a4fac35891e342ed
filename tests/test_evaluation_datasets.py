"""`deepsmote dataset imbalance`: counts, seeded determinism, read-back, one-line errors, no partial file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.evaluation.datasets import choose_indices
from deepsmote.runtime.readers import LabelledImages, label_values, read_dataset
from helpers import run_main, run_python

COUNTS = "40,30,20,20,15,12,10,8,6,4"


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_counts_are_taken_per_class_and_read_back(tmp_path, capsys):
    out = tmp_path / "train.npz"
    code, stdout, err = run_main(
        ["dataset", "imbalance", fmnist_mini("train"), "--counts", COUNTS, "--out", out], capsys
    )
    assert code == 0, err
    assert f"wrote {out}: 165 images" in stdout
    data = read_dataset(out)
    source = read_dataset(fmnist_mini("train"))
    assert data.classes == source.classes
    assert data.class_counts().tolist() == [int(n) for n in COUNTS.split(",")]
    assert data.images.dtype == np.uint8 and data.images.shape[1:] == (28, 28)
    with np.load(out) as raw:
        # The source's label values (0..9 for IDX), not names or indices of another order.
        assert raw["labels"].dtype.kind == "i" and set(raw["labels"].tolist()) == set(range(10))
    # Every image is one of its class's source images.
    for c in range(10):
        source_rows = {row.tobytes() for row in source.images[source.labels == c]}
        assert all(row.tobytes() in source_rows for row in data.images[data.labels == c])


def test_the_seed_fixes_the_choice(tmp_path, capsys):
    paths = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        paths[name] = tmp_path / f"{name}.npz"
        args = ["dataset", "imbalance", fmnist_mini("train"), "--counts", COUNTS, "--seed", seed, "--out", paths[name]]
        assert run_main(args, capsys)[0] == 0
    a, b, c = (read_dataset(paths[n]) for n in "abc")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)


def test_a_smaller_count_picks_a_subset_and_classes_are_independent():
    labels = np.repeat(np.arange(3), 50)
    classes = ("0", "1", "2")
    small = choose_indices(labels, classes, (5, 5, 5), seed=7)
    large = choose_indices(labels, classes, (20, 30, 5), seed=7)
    assert set(small) <= set(large)
    assert np.array_equal(small[10:], large[50:])  # class 2: same count, same images


def test_per_class_makes_a_balanced_set(tmp_path, capsys):
    out = tmp_path / "balanced.npz"
    code, _, err = run_main(["dataset", "imbalance", fmnist_mini("t10k"), "--per-class", 20, "--out", out], capsys)
    assert code == 0, err
    assert read_dataset(out).class_counts().tolist() == [20] * 10


def test_fewer_counts_than_classes_leave_the_rest_out(tmp_path, capsys):
    out = tmp_path / "three.npz"
    code, stdout, _ = run_main(["dataset", "imbalance", fmnist_mini("t10k"), "--counts", "5,4,3", "--out", out], capsys)
    assert code == 0 and "classes left out: 3, 4, 5, 6, 7, 8, 9" in stdout
    assert read_dataset(out).classes == ("0", "1", "2")


def test_image_folder_names_and_colour_images_round_trip(tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8)
    source = tmp_path / "src.npz"
    np.savez(source, images=images, labels=np.array(["cat", "dog", "emu"] * 4))
    out = tmp_path / "out.npz"
    assert run_main(["dataset", "imbalance", source, "--counts", "2,1,3", "--out", out], capsys)[0] == 0
    data = read_dataset(out)
    assert data.classes == ("cat", "dog", "emu") and data.class_counts().tolist() == [2, 1, 3]
    assert data.images.shape == (6, 8, 8, 3)
    assert label_values(("cat", "dog")).dtype.kind == "U"


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--counts", "1,1,1,1,1,1,1,1,1,1,1"], ("11 counts", "10 classes")),
        (["--counts", "500"], ("class '0' has 400 images", "500")),
        (["--counts", "4,x"], ("--counts", "'4,x'")),
        (["--counts", "4,,2"], ("--counts",)),
        (["--counts", "4,0"], ("--counts",)),
        (["--counts", "4,-2"], ("--counts",)),
        ([], ("exactly one of --counts and --per-class",)),
        (["--counts", "4", "--per-class", "4"], ("exactly one",)),
        (["--per-class", "0"], ("--per-class",)),
        (["--counts", "4", "--seed", "-1"], ("--seed",)),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, options, fragments):
    out = tmp_path / "out.npz"
    code, _, err = run_main(["dataset", "imbalance", fmnist_mini("train"), *options, "--out", out], capsys)
    assert_one_line_error(code, err, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_out_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "out.npz"
    out.write_bytes(b"keep me")
    code, _, err = run_main(["dataset", "imbalance", fmnist_mini("t10k"), "--per-class", 2, "--out", out], capsys)
    assert_one_line_error(code, err, "already exists", "--overwrite")
    assert out.read_bytes() == b"keep me"
    args = ["dataset", "imbalance", fmnist_mini("t10k"), "--per-class", 2, "--out", out]
    code, _, err = run_main([*args, "--overwrite"], capsys)
    assert code == 0, err
    assert read_dataset(out).class_counts().tolist() == [2] * 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_out_must_be_an_npz(tmp_path, capsys):
    code, _, err = run_main(
        ["dataset", "imbalance", fmnist_mini("t10k"), "--per-class", 2, "--out", tmp_path / "o"], capsys
    )
    assert_one_line_error(code, err, ".npz")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    from deepsmote.evaluation import datasets

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.np, "savez", fail)
    data = LabelledImages(np.zeros((4, 2, 2), np.uint8), np.array([0, 0, 1, 1]), ("0", "1"))
    with pytest.raises(KeyboardInterrupt):
        datasets.write_imbalanced(data, (2, 2), 0, tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


def test_dataset_runs_where_torch_cannot_be_imported(tmp_path):
    out = tmp_path / "o.npz"
    script = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import deepsmote.evaluation  # its numpy-only parts: datasets, metrics, quality
missing = [name for name in deepsmote.evaluation.__all__ if not hasattr(deepsmote.evaluation, name)]
assert not missing, missing
from deepsmote.runtime.cli import main
try:
    main(["dataset", "imbalance", {str(fmnist_mini("t10k"))!r}, "--per-class", "3", "--out", {str(out)!r}])
except SystemExit as exit:
    assert not exit.code, exit.code
loaded = [m for m in sys.modules if m.startswith("torch") and sys.modules[m] is not None]
assert not loaded, loaded
assert "deepsmote.training" not in sys.modules, "training was imported"
print("ok")
"""
    run_python(script, timeout=300)
    assert read_dataset(Path(out)).class_counts().tolist() == [3] * 10
