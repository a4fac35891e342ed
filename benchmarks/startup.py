"""Wall time of `deepsmote generate` for 100 images: first run after install (cold numba cache)
and second run (warm), each a fresh process.

    python benchmarks/startup.py [--bundle DIR]

Targets (issue #5): <= 8 s cold, <= 1.5 s warm. Uses the embedded 900-image subset and a
100-image job (class 9: 4 real images + 100 synthetic).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import deepsmote.kernels
from _common import paper_bundle
from deepsmote.data import fmnist_mini


def numba_cache_dirs() -> list[Path]:
    return [Path(deepsmote.kernels.__file__).parent / "__pycache__"]


def timed_generate(bundle: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "deepsmote.runtime.cli", "generate", str(bundle), str(fmnist_mini()), "--out",
         str(out), "--strategy", '{"9": 104}', "--quiet"],
        check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="default: the paper-size benchmark bundle")
    args = parser.parse_args()
    bundle = args.bundle or paper_bundle()
    with tempfile.TemporaryDirectory() as tmp:
        for cache in numba_cache_dirs():
            for compiled in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
                compiled.unlink()
        cold = timed_generate(bundle, Path(tmp) / "cold")
        warm = [timed_generate(bundle, Path(tmp) / f"warm{i}") for i in range(3)]
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"generate 100 images, cold (numba cache emptied): {cold:.2f} s (target <= 8 s)")
    print(f"generate 100 images, warm (median of 3):         {sorted(warm)[1]:.2f} s (target <= 1.5 s)")


if __name__ == "__main__":
    main()
