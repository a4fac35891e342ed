"""`deepsmote train` and `deepsmote export`: success, and one-line errors that leave nothing behind."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from deepsmote.runtime.bundle import load_bundle
from helpers import run_main

TINY = ["--epochs", "1", "--width", "8", "--latent-dim", "16", "--device", "cpu"]


def assert_one_line_error(code: int, err: str, *fragments: str, status: int = 1) -> None:
    assert code == status
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def mini_copy(fmnist_mini: Path, tmp_path: Path) -> Path:
    """The embedded images and labels copied into their own directory."""
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(fmnist_mini, folder)
    shutil.copy(fmnist_mini.with_name("train-labels-idx1-ubyte.gz"), folder)
    return folder / fmnist_mini.name


def test_train_then_export(fmnist_mini, tmp_path, capsys):
    out = tmp_path / "bundle"
    code, stdout, err = run_main(["train", fmnist_mini, "--out", out, *TINY], capsys)
    assert code == 0, err
    assert f"wrote {out}" in stdout
    bundle = load_bundle(out)
    assert bundle.latent_dim == 16 and bundle.manifest.training.config["width"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "bundle.run"]
    assert (tmp_path / "bundle.run" / "best.pt").is_file()

    code, _, err = run_main(["export", tmp_path / "bundle.run" / "last.pt", "--out", tmp_path / "again"], capsys)
    assert code == 0, err
    assert load_bundle(tmp_path / "again").manifest.files == bundle.manifest.files

    # An existing --out is refused before any training, and nothing else is touched.
    before = (out / "deepsmote.json").read_bytes()
    code, _, err = run_main(["train", fmnist_mini, "--out", out, "--run-dir", tmp_path / "other", *TINY], capsys)
    assert_one_line_error(code, err, f"{out} already exists", "--overwrite")
    assert (out / "deepsmote.json").read_bytes() == before
    assert not (tmp_path / "other").exists()

    code, _, err = run_main(["export", tmp_path / "bundle.run" / "best.pt", "--out", out], capsys)
    assert_one_line_error(code, err, "already exists")

    # The run directory holds this run: a new run needs --resume (same config) or --overwrite.
    code, _, err = run_main(
        ["train", fmnist_mini, "--out", tmp_path / "b2", "--run-dir", tmp_path / "bundle.run", *TINY], capsys
    )
    assert_one_line_error(code, err, "already holds a training run", "--resume")
    code, _, err = run_main(
        [
            "train",
            fmnist_mini,
            "--out",
            tmp_path / "b2",
            "--run-dir",
            tmp_path / "bundle.run",
            "--resume",
            *TINY,
            "--width",
            "16",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "cannot resume with a different config", "width 8 -> 16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "bundle", "bundle.run"]

    # Training longer: --resume continues the run, --overwrite replaces the bundle once it is done.
    args = ["train", fmnist_mini, "--out", out, *TINY, "--epochs", "2", "--resume", "--overwrite"]
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    assert [e["epoch"] for e in torch.load(tmp_path / "bundle.run" / "last.pt", weights_only=True)["history"]] == [1, 2]
    assert load_bundle(out).manifest.training.config["epochs"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "bundle", "bundle.run"]


def test_overwrite_never_replaces_what_is_not_a_bundle(fmnist_mini, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    code, _, err = run_main(["train", fmnist_mini, "--out", precious, *TINY, "--overwrite"], capsys)
    assert_one_line_error(code, err, f"{precious} exists and is not a deepsmote bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]
    assert (precious / "notes.txt").read_text() == "mine"


def test_missing_data(tmp_path, capsys):
    code, _, err = run_main(["train", tmp_path / "nothing.gz", "--out", tmp_path / "b", *TINY], capsys)
    assert_one_line_error(code, err, "nothing.gz: no such file or directory")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_data(mini_copy, tmp_path, capsys):
    raw = gzip.decompress(mini_copy.read_bytes())
    mini_copy.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    code, _, err = run_main(["train", mini_copy, "--out", tmp_path / "b", *TINY], capsys)
    assert_one_line_error(code, err, "train-images-idx3-ubyte.gz", "truncated or corrupt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_unsupported_image_size(tmp_path, capsys):
    data = tmp_path / "big.npz"
    np.savez(data, images=np.zeros((6, 64, 64), dtype=np.uint8), labels=np.array([0, 0, 0, 1, 1, 1]))
    code, _, err = run_main(["train", data, "--out", tmp_path / "b", *TINY, "--arch", "paper"], capsys)
    assert_one_line_error(code, err, "image size 64x64x1 is not supported", "28x28 or 32x32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz"]


def test_bad_option_values(fmnist_mini, tmp_path, capsys):
    code, _, err = run_main(["train", fmnist_mini, "--out", tmp_path / "b", *TINY, "--epochs", "0"], capsys)
    assert_one_line_error(code, err, "epochs must be a positive integer, got 0", status=2)  # a usage error
    assert list(tmp_path.iterdir()) == []


def test_resume_without_a_run(fmnist_mini, tmp_path, capsys):
    code, _, err = run_main(["train", fmnist_mini, "--out", tmp_path / "b", "--resume", *TINY], capsys)
    assert_one_line_error(code, err, "no run to resume")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu(fmnist_mini, tmp_path, capsys):
    code, _, err = run_main(["train", fmnist_mini, "--out", tmp_path / "b", *TINY, "--device", "cuda"], capsys)
    assert_one_line_error(code, err, "--device cuda", "--device cpu")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_what_is_not_a_checkpoint(tmp_path, capsys):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"\x80\x04 definitely not torch")
    code, _, err = run_main(["export", fake, "--out", tmp_path / "b"], capsys)
    assert_one_line_error(code, err, "model.pt: not a deepsmote checkpoint")
    code, _, err = run_main(["export", tmp_path / "missing.pt", "--out", tmp_path / "b"], capsys)
    assert_one_line_error(code, err, "missing.pt: checkpoint not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_the_console_script_exits_non_zero_with_one_line(tmp_path):
    # The real entry point in a fresh process: exit status and stderr as a shell sees them.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from deepsmote.runtime.cli import main; main()",
            "export",
            str(tmp_path / "x.pt"),
            "--out",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'x.pt'}: checkpoint not found; "
        "give the best.pt or last.pt of a `deepsmote train` run directory"
    ]


def test_unwritable_run_dir(fmnist_mini, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run_main(
        ["train", fmnist_mini, "--out", tmp_path / "b", "--run-dir", blocker / "run", *TINY], capsys
    )
    assert_one_line_error(code, err, "cannot write to --run-dir", "choose another --run-dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_the_paper_model_is_one_flag_set_away(fmnist_mini, tmp_path, capsys):
    flags = ["--arch", "paper", "--loss", "mse", "--penalty", "reference"]
    code, _, err = run_main(["train", fmnist_mini, "--out", tmp_path / "b", *TINY, *flags], capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "b" / "deepsmote.json").read_text())
    config = manifest["training"]["config"]
    assert (config["arch"], config["loss"], config["penalty"]) == ("paper", "mse", "reference")
    assert "decoder_cpu.onnx" in manifest["files"]
