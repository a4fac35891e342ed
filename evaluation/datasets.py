"""Seeded per-class subsets of a dataset: the paper's imbalanced training and test sets (Table I).

numpy only, no torch, so that `deepsmote dataset imbalance` runs with the runtime alone. The
images of a class are a prefix of one seeded permutation of that class (seeded by
``SeedSequence([seed, class_index])``), so a class's choice depends only on the seed, the class
and its count, and a smaller count with the same seed picks a subset of a larger one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from deepsmote.runtime.atomic import atomic_path
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.readers import LabelledImages

# Table I of the paper for MNIST and Fashion-MNIST (ratio 100:1).
PAPER_TRAIN_COUNTS = (4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40)
PAPER_TEST_COUNTS = (1000, 500, 250, 187, 125, 87, 50, 25, 15, 10)


def parse_counts(text: str) -> tuple[int, ...]:
    """``'4000,2000,...'`` → ``(4000, 2000, ...)``.

    Raises
    ------
    DeepSMOTEError
        Unless ``text`` is a comma-separated list of positive integers.
    """
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise DeepSMOTEError(f"--counts must be comma-separated positive integers like 4000,2000,1000; got {text!r}")
    return tuple(int(part) for part in parts)


def choose_indices(
    labels: np.ndarray,
    classes: Sequence[str],
    counts: Sequence[int],
    seed: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of ``counts[c]`` images of each class ``c``, class by class, ascending within one.

    Parameters
    ----------
    labels : np.ndarray
        int, shape (N,), values in ``range(len(classes))``.
    classes : sequence of str
        Class names, for messages.
    counts : sequence of int
        Images to take from each of the first ``len(counts)`` classes; later classes are left out.
    seed : int
        Seeds the choice (see the module docstring).
    exclude : np.ndarray, optional
        Indices never to choose, e.g. those of another subset, to draw a disjoint one.

    Returns
    -------
    np.ndarray
        int64, shape (sum(counts),).

    Raises
    ------
    DeepSMOTEError
        If there are more counts than classes or a class has fewer images than asked.
    """
    if len(counts) > len(classes):
        raise DeepSMOTEError(f"--counts gives {len(counts)} counts but the data has {len(classes)} classes")
    if isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise DeepSMOTEError(f"--seed must be an integer in [0, 2**63), got {seed!r}")
    available = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        available[exclude] = False
    chosen = []
    for index, count in enumerate(counts):
        members = np.flatnonzero((labels == index) & available)
        if len(members) < count:
            raise DeepSMOTEError(
                f"class '{classes[index]}' has {len(members)} images{' left' if exclude is not None else ''}, "
                f"fewer than the {count} asked for"
            )
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        chosen.append(np.sort(rng.permutation(members)[:count]))
    return np.concatenate(chosen).astype(np.int64)


def write_npz(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray, *, overwrite: bool = False) -> None:
    """Write ``images`` and ``labels`` as an npz DATA, atomically.

    Raises
    ------
    DeepSMOTEError
        If ``path`` does not end with ``.npz`` or exists without ``overwrite``. Nothing is
        written then, and an interrupted write leaves no file at ``path``.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise DeepSMOTEError(f"--out must end with .npz so that it reads back as DATA, got {path}")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise DeepSMOTEError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    if path.is_dir():
        raise DeepSMOTEError(f"{path} is a directory; --out must be an .npz file")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=images, labels=labels)


def imbalance(
    data: LabelledImages, counts: Sequence[int], seed: int, exclude: np.ndarray | None = None
) -> tuple[LabelledImages, np.ndarray]:
    """The subset of ``data`` with ``counts[c]`` images of class ``c``.

    Parameters
    ----------
    data : LabelledImages
    counts, seed, exclude
        As for :func:`choose_indices`.

    Returns
    -------
    subset : LabelledImages
        The chosen images and labels, classes cut to ``len(counts)``.
    indices : np.ndarray
        Their indices in ``data``.
    """
    indices = choose_indices(data.labels, data.classes, counts, seed, exclude)
    subset = LabelledImages(data.images[indices], data.labels[indices], data.classes[: len(counts)])
    return subset, indices


def write_imbalanced(
    data: LabelledImages,
    counts: Sequence[int],
    seed: int,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    exclude: np.ndarray | None = None,
) -> tuple[LabelledImages, np.ndarray]:
    """:func:`imbalance`, written to ``out`` as an npz with the source's label values.

    The labels are :meth:`LabelledImages.label_values` (``deepsmote.runtime.readers.label_values``
    of each image's class), so the npz reads back with the same class names.

    Returns
    -------
    subset, indices
        As :func:`imbalance` returns them.
    """
    if Path(out).exists() and not overwrite:  # before choosing, so a refused run does no work
        raise DeepSMOTEError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    subset, indices = imbalance(data, counts, seed, exclude)
    write_npz(out, subset.images, subset.label_values(), overwrite=overwrite)
    return subset, indices
