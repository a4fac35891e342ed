"""Peak resident memory of `deepsmote generate --format webdataset` as N grows.

    python benchmarks/peak_rss.py [--images 10000 100000 1000000] [--bundle DIR]

Each N runs in a fresh process; its peak RSS (ru_maxrss of the child) is printed. Target
(issue #5): <= 1 GB at 1,000,000 images and flat in N. Defaults to a small bundle
(width 8, latent 16) so that a million images fit in minutes; pass --bundle for another.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import paper_bundle
from deepsmote.data import fmnist_mini


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--bundle", type=Path, default=None)
    args = parser.parse_args()
    bundle = args.bundle or paper_bundle(width=8, latent_dim=16)
    for n in args.images:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deepsmote.runtime.cli",
                    "generate",
                    str(bundle),
                    str(fmnist_mini()),
                    "--out",
                    str(Path(tmp) / "out"),
                    "--format",
                    "webdataset",
                    "--strategy",
                    f'{{"9": {n + 4}}}',
                    "--quiet",
                    "--synthetic-only",
                ],
                stdout=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(child.pid, 0)
            if status != 0:
                raise SystemExit(f"generate failed with status {status}")
            seconds = time.perf_counter() - start
            shards = len(list((Path(tmp) / "out").glob("*.tar")))
        print(
            f"{n:>9} images: peak RSS {usage.ru_maxrss / 1024:7.1f} MB, {seconds:7.1f} s, "
            f"{n / seconds:8.0f} images/s, {shards} shards"
        )


if __name__ == "__main__":
    main()
