"""Wall time of `deepsmote generate` from a fresh process to its first image on disk, and to its end:
the first run after install (cold numba cache) and later runs (warm), on each path of the kernels,
for two bundles.

    python benchmarks/startup.py [--bundle DIR] [--warm-runs 5] [--python .cpu-venv/bin/python]

Targets: <= 8 s cold, <= 1.5 s warm (issue #5); a job whose classes need numba reaches its first
image warm in <= 1.0 s (issue #16). The first image is on disk when the job marks its first output
unit done (the unit's file is renamed into place just before): OUT is polled for the mark every 5 ms.

Seven jobs: five of 100 images, one unit each (class 9 of the embedded subset: 4 real images; class
0: 400 images, the float64-differences k-NN since 0.5.0, numba before; class 0 tripled by its mirror
images: 1,200, numpy's GEMM-form k-NN since 0.6.0, numba before; class 0 taken 11 times, by its 8
rotations and mirrors and 3 shifts of one pixel: 4,400 images, above the k-NN's MEDIUM_N; and the
same 4,400-image job from the latent cache that `deepsmote encode` wrote for the bundle, made before
the runs, not timed: a job started again on the same DATA, whose time is then start-up, not
encoding, as 4,400 images at 0.027 GFLOP each take ~0.8 s of the 2-core EPYC's two cores). Since
0.7.0 a job that draws few bases from a class (`kernels.finds_rows_on_demand`: at most 2,273 from
4,400 codes) finds the neighbours of those bases only, in numpy, so the 100-image jobs on 4,400
codes no longer load numba; the sixth job does: 3,000 images from the latent cache in shards of
100, whose 3,000 bases are too many for numpy's rows, so numba finds them: the whole class's k-NN
before the first shard up to 0.7.0, since 0.8.0 the rows of each shard's bases as it draws them
(`kernels.row_kernel`). The seventh job is the sixth on a class of 22,400 codes (class 0 by its 8
rotations and mirrors, each shifted by up to two pixels), whose whole search takes ~1.5 s. Each case
is labelled with the path its runs took, as reported by the runs themselves: numba if they imported
it. Two bundles at paper size (width 64, latent 300): the paper's architecture (0.326 GFLOP to
decode an image) and `train`'s default model.

The package's modules are compiled to bytecode first, as pip does when it installs a wheel: where
PYTHONDONTWRITEBYTECODE is set (as on the development machines) every run would otherwise compile
them again (0.12-0.17 s). Run it from the `[cpu]` environment for the figure an edge machine sees:
with scipy installed (the development environment), numba's first kernel load also imports
scipy.linalg.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import deepsmote.data
import deepsmote.kernels
import deepsmote.runtime
import numpy as np
from _common import default_bundle, paper_bundle
from deepsmote.data import fmnist_mini
from deepsmote.kernels.knn import MEDIUM_N, SMALL_N
from deepsmote.runtime.outdir import DONE_PREFIX
from deepsmote.runtime.readers import read_dataset

# `deepsmote generate ARGS` as the installed command runs it, reporting on its last stderr line
# whether numba was imported.
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('numba' if 'numba' in sys.modules else 'numpy', file=sys.stderr))\n"
    "from deepsmote.runtime.cli import entry_point\n"
    "entry_point(sys.argv[1:])\n"
)


def numba_cache_dirs() -> list[Path]:
    """Where numba caches the kernels compiled from kernels/*_numba.py: the package's __pycache__."""
    return [Path(deepsmote.kernels.__file__).parent / "__pycache__"]


def empty_numba_cache() -> None:
    for cache in numba_cache_dirs():
        for compiled in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            compiled.unlink()


def with_class_0_variants(folder: Path, name: str, variants: Callable[[np.ndarray], list[np.ndarray]]) -> Path:
    """The embedded subset with ``variants(class 0's images)`` added to class 0, as an .npz."""
    data = read_dataset(fmnist_mini())
    added = variants(data.images[data.labels == 0])
    path = folder / f"{name}.npz"
    images = np.concatenate([data.images, *added])
    labels = np.concatenate([data.labels, np.zeros(sum(len(v) for v in added), dtype=data.labels.dtype)])
    np.savez(path, images=images, labels=labels)
    return path


def mirrors(class_0: np.ndarray) -> list[np.ndarray]:
    """The left-right and up-down mirror images: class 0 tripled, 1,200 codes (numpy's GEMM-form k-NN)."""
    assert SMALL_N < 3 * len(class_0) <= MEDIUM_N, "the tripled class must take numpy's GEMM-form k-NN"
    return [class_0[:, :, ::-1], class_0[:, ::-1, :]]


def turns_and_shifts(class_0: np.ndarray) -> list[np.ndarray]:
    """The other 7 rotations and mirrors and 3 one-pixel shifts: class 0 times 11, 4,400 codes."""
    assert 11 * len(class_0) > MEDIUM_N, "the class must be above the numpy k-NN's MEDIUM_N"
    turns = [np.rot90(class_0, r, axes=(1, 2)) for r in range(4)]
    shifts = [np.roll(class_0, shift, axis=(1, 2)) for shift in ((1, 0), (0, 1), (1, 1))]
    return turns[1:] + [turn[:, :, ::-1] for turn in turns] + shifts


def turns_mirrors_and_shifts(class_0: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations and mirrors, each shifted by 7 offsets of up to two pixels, less class 0
    itself: class 0 times 56, 22,400 codes, a class whose whole search takes ~1.5 s."""
    turns = [np.rot90(class_0, r, axes=(1, 2)) for r in range(4)]
    turns += [turn[:, :, ::-1] for turn in turns]
    shifts = ((0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (0, 2), (2, 2))
    return [np.roll(turn, shift, axis=(1, 2)) for turn in turns for shift in shifts][1:]


def timed_generate(python: str, bundle: Path, data: Path, out: Path, options: list[str]) -> tuple[float, float, str]:
    """Seconds of one `deepsmote generate OPTIONS` process to its first done mark and to its end, and
    the kernel path it took."""
    command = [
        python,
        "-c",
        PROBE,
        "generate",
        str(bundle),
        str(data),
        "--out",
        str(out),
        *options,
        "--quiet",
        "--synthetic-only",
    ]
    start = time.perf_counter()
    first = None
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as job:
        while job.poll() is None:
            if first is None and out.is_dir() and any(out.glob(f"{DONE_PREFIX}*")):
                first = time.perf_counter() - start
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        stderr = job.stderr.read() if job.stderr else ""
    if job.returncode:
        raise SystemExit(f"generate failed ({job.returncode}): {stderr.strip()}")
    return seconds if first is None else first, seconds, stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="default: the two paper-size benchmark bundles")
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument(
        "--python", default=sys.executable, help="the interpreter that runs `deepsmote generate` (default: this one)"
    )
    args = parser.parse_args()
    bundles = [args.bundle] if args.bundle else [paper_bundle(), default_bundle()]
    print(f"`deepsmote generate` run by {args.python}")
    for package in (deepsmote.runtime, deepsmote.kernels, deepsmote.data):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        times_11 = with_class_0_variants(Path(tmp), "times-11", turns_and_shifts)
        times_56 = with_class_0_variants(Path(tmp), "times-56", turns_mirrors_and_shifts)
        cases = {
            "class 9, 4 real images": (fmnist_mini(), ["--strategy", '{"9": 104}']),
            "class 0, 400 real images": (fmnist_mini(), ["--strategy", '{"0": 500}']),
            "class 0 tripled, 1,200 real images": (
                with_class_0_variants(Path(tmp), "tripled", mirrors),
                ["--strategy", '{"0": 1300}'],
            ),
            "class 0 times 11, 4,400 real images": (times_11, ["--strategy", '{"0": 4500}']),
        }
        for bundle in bundles:
            print(f"bundle {bundle.name}:")
            codes, codes_56 = (Path(tmp) / f"{bundle.name}-{name}-codes.npz" for name in ("times-11", "times-56"))
            for images, cache in ((times_11, codes), (times_56, codes_56)):
                encode = ["-m", "deepsmote.runtime.cli", "encode", str(bundle), str(images), "--out", str(cache)]
                subprocess.run([args.python, *encode, "--quiet"], check=True, stdout=subprocess.DEVNULL)
            with_cache = {
                **cases,
                "class 0 times 11, 4,400 codes from a latent cache": (codes, ["--strategy", '{"0": 4500}']),
                "class 0 times 11, 4,400 codes from a latent cache, 3,000 images in shards of 100": (
                    codes,
                    ["--strategy", '{"0": 7400}', "--shard-size", "100"],
                ),
                "class 0 times 56, 22,400 codes from a latent cache, 3,000 images in shards of 100": (
                    codes_56,
                    ["--strategy", '{"0": 25400}', "--shard-size", "100"],
                ),
            }
            for number, (case, (data, options)) in enumerate(with_cache.items()):
                out = Path(tmp) / f"{bundle.name}-case{number}"
                empty_numba_cache()
                cold, _, cold_path = timed_generate(args.python, bundle, data, out.with_suffix(".cold"), options)
                warm = [
                    timed_generate(args.python, bundle, data, out.with_suffix(f".warm{i}"), options)
                    for i in range(args.warm_runs)
                ]
                paths = sorted({cold_path, *(path for *_, path in warm)})
                firsts = sorted(first for first, _, _ in warm)
                ends = sorted(end for _, end, _ in warm)
                images = "" if "images in shards" in case else "100 images, "
                print(f"  {images}{case} ({'/'.join(paths)} path):")
                print(f"    cold (numba cache emptied), to the first image: {cold:.2f} s (target <= 8 s)")
                print(
                    f"    warm, to the first image: median {statistics.median(firsts):.2f} s of {len(firsts)} "
                    f"({firsts[0]:.2f}-{firsts[-1]:.2f}) (target <= 1.0 s); to the end: median "
                    f"{statistics.median(ends):.2f} s (target <= 1.5 s for 100 images)"
                )


if __name__ == "__main__":
    main()
