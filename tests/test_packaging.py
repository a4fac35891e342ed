"""One distribution, three subpackages: a built wheel holds and imports them like the editable install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_maps_the_top_level_folders_onto_deepsmote(tmp_path):
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
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("deepsmote-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "runtime/cli.py",
        "runtime/sampler.py",
        "kernels/knn.py",
        "kernels/knn_numba.py",
        "kernels/interpolate_numba.py",
        "training/trainer.py",
        "data/__init__.py",
        "data/fmnist-mini/train-images-idx3-ubyte.gz",
    ):
        assert f"deepsmote/{module}" in names, module
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "deepsmote = deepsmote.runtime.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import deepsmote.runtime, deepsmote.kernels, deepsmote.data, sys;"
        "print(deepsmote.runtime.__file__); print(deepsmote.data.fmnist_mini().exists())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    location, exists = result.stdout.split()
    assert location.startswith(str(target)) and exists == "True"
