"""The golden cases: jobs on the committed golden bundle whose output digests are recorded.

`scripts/record_golden.py` records them; `test_golden_bytes.py` checks that the runtime still
makes exactly those images. Digests are taken of decoded pixels and labels, in a fixed order, so
they do not depend on PNG encoder versions.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import numpy as np
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, read_dataset
from deepsmote.runtime.cli import main

GOLDEN_DIR = Path(__file__).resolve().parent / "data" / "golden"
GOLDEN_BUNDLE = GOLDEN_DIR / "bundle"
GOLDEN_FILE = GOLDEN_DIR / "expected.json"

# name -> how the job is run; each covers a path the others do not.
CASES = {
    # the API's defaults: every class filled to the majority, numpy k-NN and interpolation
    "api_default": {"strategy": "auto", "seed": 0, "shard_size": 1000},
    # a class of 400 codes (the numpy k-NN since 0.5.0, numba's before: the same bytes), shards of 500
    "api_class_of_400": {"strategy": {0: 1400, 9: 30}, "seed": 3, "shard_size": 500},
    # the CLI writing npz shards, three classes, shards of 120
    "cli_npz": {"strategy": '{"0": 700, "7": 100, "9": 50}', "seed": 1, "shard_size": 120, "format": "npz"},
    # the CLI writing PNGs
    "cli_imagefolder": {"strategy": "minority", "seed": 2, "shard_size": 200, "format": "imagefolder"},
}


def cpu_kind() -> str:
    """The instruction set that picks onnxruntime's CPU kernels and numba's vector code.

    Their rounding differs between kinds (the same job on an AVX2 EPYC and an AVX-512 Xeon decodes
    to other bytes), so the digests are recorded per kind.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return platform.machine()
    lines = cpuinfo.read_text().splitlines()
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    if "avx512f" in flags:
        return "avx512f"
    if "avx2" in flags and "fma" in flags:
        return "avx2-fma"
    return platform.machine()


def digest(*arrays: np.ndarray) -> str:
    """sha256 over the shapes, dtypes and bytes of ``arrays``."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def run_case(name: str, out: Path) -> str:
    """Run case ``name`` (writing under ``out`` for CLI cases) and return its digest."""
    case = CASES[name]
    if name.startswith("api_"):
        data = read_dataset(fmnist_mini())
        sampler = DeepSMOTE(
            GOLDEN_BUNDLE, sampling_strategy=case["strategy"], random_state=case["seed"], shard_size=case["shard_size"]
        )
        X_res, y_res = sampler.fit_resample(data.images, data.labels)
        return digest(X_res, y_res)
    args = ["generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--quiet", "--strategy", case["strategy"]]
    args += ["--seed", case["seed"], "--shard-size", case["shard_size"], "--format", case["format"]]
    # The digests are of the synthetic samples, which the default output (since 0.13.0) writes beside
    # the originals: the same bytes, now asked for alone.
    args += ["--synthetic-only"]
    try:
        main([str(a) for a in args])
    except SystemExit as exit_:
        if exit_.code:
            raise AssertionError(f"golden case {name} failed with exit {exit_.code}") from None
    back = read_dataset(out)
    return digest(back.images, back.labels, np.asarray(back.classes))
