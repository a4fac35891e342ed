"""Rebuild data/fmnist-mini from ../shared/datasets/fashion-mnist (run from the project root).

Train: the paper's 100:1 class counts divided by ten (400, 200, ..., 4), the first images of
each class in the training split. Test: the first 20 images of each class in the test split.
"""

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
from deepsmote.runtime.readers import read_idx

SOURCE = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/fashion-mnist")
TARGET = Path(__file__).parent.parent / "data" / "fmnist-mini"
TRAIN_COUNTS = (400, 200, 100, 75, 50, 35, 20, 10, 6, 4)
TEST_PER_CLASS = 20


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x800 | array.ndim
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + array.astype(np.uint8).tobytes())


def take(split: str, counts: tuple[int, ...]) -> None:
    data = read_idx(SOURCE / f"{split}-images-idx3-ubyte.gz")
    chosen = np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in enumerate(counts)])
    chosen.sort()
    write_idx(TARGET / f"{split}-images-idx3-ubyte.gz", data.images[chosen])
    write_idx(TARGET / f"{split}-labels-idx1-ubyte.gz", data.labels[chosen])


if __name__ == "__main__":
    TARGET.mkdir(exist_ok=True)
    take("train", TRAIN_COUNTS)
    take("t10k", (TEST_PER_CLASS,) * 10)
