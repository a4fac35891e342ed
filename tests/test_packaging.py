"""One distribution, one subpackage per top-level folder: a built wheel holds and imports them as installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_sources(dest: Path) -> Path:
    """Copy what a build reads to ``dest``, a new folder.

    A build in the checkout would reuse its ``build/``, whose stale copies of moved or deleted
    modules would end up in the wheel.
    """
    dest.mkdir()
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in sorted({Path(p).parts[0] for p in setuptools["package-dir"].values()}):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_wheel_maps_the_top_level_folders_onto_deepsmote(tmp_path):
    source = copy_sources(tmp_path / "src")
    (tmp_path / "dist").mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("deepsmote-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "runtime/cli.py",
        "runtime/sampler.py",
        "kernels/knn.py",
        "kernels/knn_numba.py",
        "kernels/interpolate_numba.py",
        "training/trainer.py",
        "evaluation/__init__.py",
        "evaluation/commands.py",
        "evaluation/protocol.py",
        "data/__init__.py",
        "data/fmnist-mini/train-images-idx3-ubyte.gz",
        "runtime/bundle/pixels.onnx",
    ):
        assert f"deepsmote/{module}" in names, module
    assert not [n for n in names if n.startswith("deepsmote/training/evaluation/")], "evaluation is its own package"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "deepsmote = deepsmote.runtime.cli:entry_point" in zipfile.ZipFile(wheel).read(entry_points).decode()
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import deepsmote.runtime, deepsmote.kernels, deepsmote.data, deepsmote.evaluation, sys;"
        "print(deepsmote.runtime.__file__); print(deepsmote.data.fmnist_mini().exists());"
        "print(deepsmote.evaluation.__file__);"
        "from deepsmote.runtime.bundle.pixel_session import pixel_graph; print(len(pixel_graph()) > 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    location, exists, evaluation, pixel_graph = result.stdout.split()
    assert location.startswith(str(target)) and exists == "True" and pixel_graph == "True"
    assert evaluation.startswith(str(target)), evaluation
