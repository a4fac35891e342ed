"""Shared set-up for the benchmarks: the data sets and a paper-size bundle, made once and cached."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from deepsmote.data import fmnist_mini
from deepsmote.runtime.readers import LabelledImages, read_dataset

ROOT = Path(__file__).resolve().parents[1]
# Bundles made once and reused; DEEPSMOTE_BENCHMARK_CACHE puts them elsewhere (the tests do).
CACHE = Path(os.environ.get("DEEPSMOTE_BENCHMARK_CACHE", ROOT / "benchmarks" / ".cache"))
FMNIST = ROOT.parent / "shared" / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz"
PAPER_COUNTS = (4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40)
# Part of the cached bundle's name: change it when the exported graphs change, so that benchmarks
# do not time a bundle exported by older code (2: the decoder of training/decoder_graph.py;
# 3: --arch paper named, as train's default is now resize-conv; 5: decoder_fp16.onnx).
EXPORT_TAG = "export6"


def paper_train_set() -> LabelledImages:
    """The paper's 100:1 FMNIST training set (first images of each class), or the embedded subset."""
    if not FMNIST.exists():
        print(f"note: {FMNIST} not found, using the embedded 900-image subset")
        return read_dataset(fmnist_mini())
    data = read_dataset(FMNIST)
    keep = np.sort(np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in enumerate(PAPER_COUNTS)]))
    return LabelledImages(data.images[keep], data.labels[keep], data.classes)


def paper_bundle(width: int = 64, latent_dim: int = 300) -> Path:
    """A bundle of the paper's architecture, trained one epoch on the embedded subset (cached).

    Throughput does not depend on how well the weights are trained, only on the architecture.
    """
    options = ["--arch", "paper", "--loss", "mse"]
    return trained_bundle(f"bundle-w{width}-z{latent_dim}-{EXPORT_TAG}", width, latent_dim, options)


def default_bundle(width: int = 64, latent_dim: int = 300) -> Path:
    """A bundle of `deepsmote train`'s default model at paper size, trained one epoch (cached)."""
    return trained_bundle(f"bundle-default-w{width}-z{latent_dim}-{EXPORT_TAG}", width, latent_dim, [])


def trained_bundle(name: str, width: int, latent_dim: int, options: list[str]) -> Path:
    """``CACHE/name``: `deepsmote train` on the embedded subset for one epoch with ``options``, made once."""
    bundle = CACHE / name
    if not bundle.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        command = [sys.executable, "-m", "deepsmote.runtime.cli", "train", str(fmnist_mini()), "--out", str(bundle)]
        command += ["--epochs", "1", "--width", str(width), "--latent-dim", str(latent_dim), *options, "--overwrite"]
        subprocess.run(command, check=True)
        print(f"trained {bundle.name} in {time.perf_counter() - start:.0f} s")
    return bundle


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
