"""SMOTE interpolation throughput: deepsmote.kernels.interpolate against a plain copy of the same bytes.

Writes m interpolated codes of dimension d (float32) from a class of n codes with k neighbours
each, the draws made with a numpy Generator as the runtime makes them. The baseline is the memory
bandwidth of the same output: ``np.copyto`` of an (m, d) float32 array into a written-before one,
and the numpy expression the kernel replaces. Throughput is GB/s of output written; into a reused
buffer (``out=``) and into a fresh array, whose first-touch page faults cost the same for a fresh
copy (``ndarray.copy``). Medians over the repeats, measured in the same run, interleaved.

    .venv/bin/python benchmarks/interpolate.py --rows 1000000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np
from deepsmote.kernels import interpolate


def seconds(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="m, output rows")
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--codes", type=int, default=5000, help="n, codes in the class")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    codes = rng.standard_normal((args.codes, args.dim), dtype=np.float32)
    neighbors = rng.integers(0, args.codes, size=(args.codes, args.k))
    base = rng.integers(0, args.codes, size=args.rows)
    slot = rng.integers(0, args.k, size=args.rows)
    gap = rng.random(args.rows, dtype=np.float32)
    out = np.empty((args.rows, args.dim), dtype=np.float32)
    src = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    dst = np.zeros_like(src)
    gigabytes = out.nbytes / 1e9

    interpolate(codes, neighbors, base, slot, gap, out=out)
    nb_idx = neighbors[base, slot]
    reference = codes[base] + gap[:, None] * (codes[nb_idx] - codes[base])
    assert np.array_equal(out, reference), "kernel and numpy disagree"
    del reference

    cases: dict[str, Callable[[], object]] = {
        "interpolate(out=)": lambda: interpolate(codes, neighbors, base, slot, gap, out=out),
        "np.copyto": lambda: np.copyto(dst, src),
        "interpolate (new array)": lambda: interpolate(codes, neighbors, base, slot, gap),
        "ndarray.copy (new array)": lambda: src.copy(),
        "numpy expression": lambda: codes[base] + gap[:, None] * (codes[nb_idx] - codes[base]),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(seconds(fn))
    rate = {name: gigabytes / statistics.median(values) for name, values in times.items()}

    print(
        f"m={args.rows:,} rows x d={args.dim} float32 ({gigabytes:.2f} GB written), n={args.codes} codes, "
        f"k={args.k}; numba {numba.get_num_threads()} threads; medians of {args.repeats} repeats"
    )
    for name in cases:
        print(f"  {name:<26} {statistics.median(times[name]) * 1e3:8.1f} ms  {rate[name]:6.2f} GB/s")
    print(f"  interpolate(out=) / np.copyto: {rate['interpolate(out=)'] / rate['np.copyto']:.0%} of copy bandwidth")
    print(
        f"  interpolate (new array) / ndarray.copy: "
        f"{rate['interpolate (new array)'] / rate['ndarray.copy (new array)']:.0%}"
    )


if __name__ == "__main__":
    main()
