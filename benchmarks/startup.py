"""Wall time of `deepsmote generate` for 100 images, each run a fresh process: the first run after
install (cold numba cache) and later runs (warm), on each path of the kernels, for two bundles.

    python benchmarks/startup.py [--bundle DIR] [--warm-runs 5]

Targets: <= 8 s cold, <= 1.5 s warm (issue #5); a job whose classes need numba reaches its first
image warm in <= 1.0 s (issue #16). A job's 100 images are one unit, written whole, so the first
image is on disk at most a few ms before the process ends: the time printed is an upper bound of
the time to the first image.

Three 100-image jobs: class 9 of the embedded subset (4 real images), class 0 (400 images: the
numpy k-NN since 0.5.0, numba before) and class 0 of a copy of the subset where class 0 is tripled
by its mirror images (1,200 images, above the k-NN's SMALL_N: the numba path, compiled into the
emptied cache on the cold run). Each case is labelled with the path its runs took, as reported by
the runs themselves: numba if they imported it. Two bundles at paper size (width 64, latent 300):
the paper's architecture (0.326 GFLOP to decode an image) and `train`'s default model.
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
import numpy as np
from _common import default_bundle, paper_bundle
from deepsmote.data import fmnist_mini
from deepsmote.kernels.knn import SMALL_N
from deepsmote.runtime.readers import read_dataset

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


def tripled_class_0(folder: Path) -> Path:
    """The embedded subset with class 0 tripled by its left-right and up-down mirror images, as an .npz."""
    data = read_dataset(fmnist_mini())
    class_0 = data.images[data.labels == 0]
    path = folder / "class-0-tripled.npz"
    images = np.concatenate([data.images, class_0[:, :, ::-1], class_0[:, ::-1, :]])
    labels = np.concatenate([data.labels, np.zeros(2 * len(class_0), dtype=data.labels.dtype)])
    np.savez(path, images=images, labels=labels)
    assert 3 * len(class_0) > SMALL_N, "the tripled class must take the numba k-NN"
    return path


def timed_generate(bundle: Path, data: Path, out: Path, strategy: str) -> tuple[float, str]:
    """Seconds of one `deepsmote generate` process, and the kernel path it took."""
    command = [sys.executable, "-c", PROBE, "generate", str(bundle), str(data), "--out", str(out)]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, "--strategy", strategy, "--quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - start
    return seconds, result.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="default: the two paper-size benchmark bundles")
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    bundles = [args.bundle] if args.bundle else [paper_bundle(), default_bundle()]
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "class 9, 4 real images": (fmnist_mini(), '{"9": 104}'),
            "class 0, 400 real images": (fmnist_mini(), '{"0": 500}'),
            "class 0 tripled, 1,200 real images": (tripled_class_0(Path(tmp)), '{"0": 1300}'),
        }
        for bundle in bundles:
            print(f"bundle {bundle.name}:")
            for number, (case, (data, strategy)) in enumerate(cases.items()):
                out = Path(tmp) / f"{bundle.name}-case{number}"
                empty_numba_cache()
                cold, cold_path = timed_generate(bundle, data, out.with_suffix(".cold"), strategy)
                warm = [
                    timed_generate(bundle, data, out.with_suffix(f".warm{i}"), strategy) for i in range(args.warm_runs)
                ]
                paths = sorted({cold_path, *(path for _, path in warm)})
                seconds = sorted(s for s, _ in warm)
                print(f"  100 images, {case} ({'/'.join(paths)} path):")
                print(f"    cold (numba cache emptied): {cold:.2f} s (target <= 8 s)")
                print(
                    f"    warm: median {statistics.median(seconds):.2f} s of {len(seconds)} "
                    f"({seconds[0]:.2f}-{seconds[-1]:.2f}) (targets <= 1.5 s; <= 1.0 s to the first image)"
                )


if __name__ == "__main__":
    main()
