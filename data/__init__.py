"""Data embedded in the package: a small imbalanced Fashion-MNIST subset for the demo and tests."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["FMNIST_CLASSES", "SPLITS", "fmnist_mini"]

SPLITS = ("train", "t10k")
# Fashion-MNIST's names of its labels 0..9 (the IDX files hold the numbers only).
FMNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def fmnist_mini(split: str = "train") -> Path:
    """Path of the embedded IDX images file of ``split`` ('train': 900 images, 't10k': 200).

    The labels file lies beside it under the name the IDX reader looks for.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(str(files(__name__) / "fmnist-mini" / f"{split}-images-idx3-ubyte.gz"))
