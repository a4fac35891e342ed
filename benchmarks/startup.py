"""Wall time of `deepsmote generate` for 100 images, each run a fresh process: the first run after
install (cold numba cache) and later runs (warm), on each path of the kernels.

    python benchmarks/startup.py [--bundle DIR]

Targets (issue #5): <= 8 s cold, <= 1.5 s warm. Uses the embedded 900-image subset and two
100-image jobs: class 9 (4 real images, under the k-NN's SMALL_N: the kernels take their numpy
paths) and class 0 (400 real images, above it: the k-NN takes its numba path, compiled into the
emptied cache on the cold run). Each case is labelled with the path its runs took, as reported by
the runs themselves: numba if they imported it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import deepsmote.kernels
from _common import paper_bundle
from deepsmote.data import fmnist_mini

# 100 new images of a class with few real images, then of one with many.
CASES = {"class 9, 4 real images": '{"9": 104}', "class 0, 400 real images": '{"0": 500}'}

# `deepsmote generate ARGS`, reporting on its last stderr line whether numba was imported.
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('numba' if 'numba' in sys.modules else 'numpy', file=sys.stderr))\n"
    "from deepsmote.runtime.cli import main\n"
    "main(sys.argv[1:])\n"
)


def numba_cache_dirs() -> list[Path]:
    """Where numba caches the kernels compiled from kernels/*_numba.py: the package's __pycache__."""
    return [Path(deepsmote.kernels.__file__).parent / "__pycache__"]


def empty_numba_cache() -> None:
    for cache in numba_cache_dirs():
        for compiled in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            compiled.unlink()


def timed_generate(bundle: Path, out: Path, strategy: str) -> tuple[float, str]:
    """Seconds of one `deepsmote generate` process, and the kernel path it took."""
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            "generate",
            str(bundle),
            str(fmnist_mini()),
            "--out",
            str(out),
            "--strategy",
            strategy,
            "--quiet",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - start
    return seconds, result.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="default: the paper-size benchmark bundle")
    args = parser.parse_args()
    bundle = args.bundle or paper_bundle()
    with tempfile.TemporaryDirectory() as tmp:
        for case, strategy in CASES.items():
            empty_numba_cache()
            cold, cold_path = timed_generate(bundle, Path(tmp) / f"{strategy}-cold", strategy)
            warm = [timed_generate(bundle, Path(tmp) / f"{strategy}-warm{i}", strategy) for i in range(3)]
            paths = sorted({cold_path, *(path for _, path in warm)})
            warm_s = statistics.median(seconds for seconds, _ in warm)
            print(f"generate 100 images, {case} ({'/'.join(paths)} path):")
            print(f"  cold (numba cache emptied): {cold:.2f} s (target <= 8 s)")
            print(f"  warm (median of 3):         {warm_s:.2f} s (target <= 1.5 s)")


if __name__ == "__main__":
    main()
