"""`deepsmote inspect`, `grid` and `demo` end to end on the embedded Fashion-MNIST subset."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, read_dataset
from golden import GOLDEN_BUNDLE
from helpers import run_main
from PIL import Image


def one_line_error(code: int, err: str, fragment: str, status: int = 1) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status and len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], err


def test_inspect_prints_the_summary(tiny_bundle, capsys):
    code, out, err = run_main(["inspect", tiny_bundle], capsys)
    assert code == 0, err
    assert "image_shape: 1x28x28" in out and "latent_dim: 16" in out and "hashes: ok" in out
    assert "max_abs_diff" in out


def test_inspect_catches_a_tampered_bundle(tiny_bundle, tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "encoder.onnx").write_bytes((bundle / "encoder.onnx").read_bytes() + b"\0")
    one_line_error(*run_main(["inspect", bundle], capsys)[::2], "sha256 does not match")


def test_grid_draws_real_and_synthetic_rows(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = [
        "grid",
        tiny_bundle,
        fmnist_mini(),
        "--out",
        out,
        "--per-row",
        4,
        "--synthetic-rows",
        2,
        "--interpolate",
        "0,1",
        "--steps",
        5,
    ]
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    picture = np.asarray(Image.open(out))
    # 10 classes x (1 real + 2 synthetic rows) + 1 interpolation strip, 28 px x2 + 2 px each.
    assert picture.shape[0] == 31 * (28 * 2 + 2) + 2 and picture.shape[2] == 3
    label_w = 8 + 7 * len("0 synth")
    # Widest row: the 5-image interpolation strip, after the label column.
    assert picture.shape[1] == label_w + 5 * 58 + 2

    def cell(row: int, column: int) -> np.ndarray:
        top, left = 2 + row * 58, label_w + 2 + column * 58
        block = picture[top : top + 56, left : left + 56]
        assert (block == block[..., :1]).all()  # grey drawn as RGB
        return block[::2, ::2, 0]

    # Each class: its first real images, then the sampler's first synthetic images, in order.
    data = read_dataset(fmnist_mini())
    counts = data.class_counts()
    sampler = DeepSMOTE(tiny_bundle, sampling_strategy={c: int(n) + 8 for c, n in enumerate(counts)}, random_state=0)
    synthetic = {int(y[0]): images for images, y in sampler.iter_synthetic(data.images, data.labels)}
    for c in range(10):
        real = data.images[data.labels == c]
        for column in range(4):
            assert (cell(3 * c, column) == real[column]).all()
            assert (cell(3 * c + 1, column) == synthetic[c][column]).all()
            assert (cell(3 * c + 2, column) == synthetic[c][4 + column]).all()
    before = out.read_bytes()
    one_line_error(*run_main(args, capsys)[::2], "exists; pass --overwrite")
    assert out.read_bytes() == before
    assert run_main([*args, "--overwrite"], capsys)[0] == 0


def test_grid_rejects_bad_interpolation_pair(tiny_bundle, tmp_path, capsys):
    args = ["grid", tiny_bundle, fmnist_mini(), "--out", tmp_path / "g.png", "--interpolate", "0,99999"]
    one_line_error(*run_main(args, capsys)[::2], "--interpolate must be two indices", status=2)
    assert not (tmp_path / "g.png").exists()


def test_demo_runs_the_main_job(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", out, "--epochs", 1, "--width", 8, "--latent-dim", 16]
    code, stdout, err = run_main(args, capsys)
    assert code == 0, err
    assert "demo done" in stdout
    record = json.loads((out / "demo.json").read_text())
    assert {c["total"] for c in record["counts"].values()} == {400}
    assert (out / "grid.png").exists() and (out / "bundle" / "deepsmote.json").exists()
    # the whole balanced set, and the report on it with Fashion-MNIST's names
    assert sum(1 for _ in (out / "generated").rglob("*.png")) == 4000
    page = (out / "generated" / "report.html").read_text()
    assert record["report"] == str(out / "generated" / "report.html") and "<th>Ankle boot (9)</th>" in page
    one_line_error(*run_main(args, capsys)[::2], "pass --overwrite")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    one_line_error(*run_main(["demo", "--out", tmp_path / "mine"], capsys)[::2], "not a demo output")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("command", ["grid", "encode"])
def test_an_out_file_that_cannot_be_written_is_refused_before_any_work(command, fmnist_mini, tmp_path, capsys):
    existing = tmp_path / "there.png"
    existing.write_bytes(b"kept")
    for out, fragment in (
        (existing, "exists; pass --overwrite to replace it"),
        (tmp_path / "missing" / "out.png", "does not exist; create it or choose another --out"),
    ):
        code, _, err = run_main([command, GOLDEN_BUNDLE, fmnist_mini, "--out", out], capsys)
        assert code == 1 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert existing.read_bytes() == b"kept" and not (tmp_path / "missing").exists()
