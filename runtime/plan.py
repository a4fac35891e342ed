"""The job as shards with their seeds (``docs/design.md`` §4).

Each class's synthetic samples are cut into shards of a fixed size that does not depend on
the batch size or the number of workers, and each shard draws its randomness from
``SeedSequence([seed, class_index, shard_index])``. A shard is therefore a pure function of
the job's settings, and so is every output byte.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_SHARD_SIZE = 1000


@dataclass(frozen=True)
class Shard:
    """One unit of work: ``count`` new samples of one class.

    Attributes
    ----------
    class_index : int
        Position of the class in the data's class list.
    shard_index : int
        Position of the shard within its class.
    count : int
        Samples in this shard (``shard_size`` except for a class's last shard).
    """

    class_index: int
    shard_index: int
    count: int

    @property
    def name(self) -> str:
        """File-name stem of this shard's output, ``class-CCCC-shard-SSSSSS``."""
        return f"class-{self.class_index:04d}-shard-{self.shard_index:06d}"


class ShardPlan(Sequence[Shard]):
    """A job's shards, in class order then shard order, held as one count per class.

    The plan costs memory in the number of classes, not of shards: a shard is made when it is
    indexed or iterated, so a job of any size is planned at once (``docs/design.md`` §4).

    Parameters
    ----------
    new_counts : np.ndarray
        int, shape (K,), new samples per class; non-negative.
    shard_size : int
        Samples per shard, at least 1.
    """

    def __init__(self, new_counts: np.ndarray | Sequence[int], shard_size: int = DEFAULT_SHARD_SIZE) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.counts = tuple(int(n) for n in new_counts)
        if any(n < 0 for n in self.counts):
            raise ValueError(f"new sample counts must be non-negative, got {list(self.counts)}")
        self.shard_size = int(shard_size)
        # Python integers: a sum over classes cannot overflow.
        self.per_class = tuple(-(-n // self.shard_size) for n in self.counts)
        self._ends = tuple(itertools.accumulate(self.per_class))

    @property
    def total(self) -> int:
        """New samples over all shards."""
        return sum(self.counts)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, index: int) -> Shard:  # type: ignore[override]
        if not isinstance(index, int | np.integer):
            raise TypeError(f"a ShardPlan is indexed by an integer, got {type(index).__name__}")
        position = int(index) + len(self) if index < 0 else int(index)
        if not 0 <= position < len(self):
            raise IndexError(f"shard {index} out of range for a plan of {len(self)} shards")
        class_index = bisect.bisect_right(self._ends, position)
        shard_index = position - (self._ends[class_index - 1] if class_index else 0)
        return self.shard(class_index, shard_index)

    def __iter__(self) -> Iterator[Shard]:
        for class_index, shards in enumerate(self.per_class):
            for shard_index in range(shards):
                yield self.shard(class_index, shard_index)

    def shard(self, class_index: int, shard_index: int) -> Shard:
        """Shard ``shard_index`` of class ``class_index``."""
        start = shard_index * self.shard_size
        return Shard(class_index, shard_index, min(self.shard_size, self.counts[class_index] - start))


def plan_shards(new_counts: np.ndarray, shard_size: int = DEFAULT_SHARD_SIZE) -> ShardPlan:
    """Cut each class's new samples into fixed-size shards.

    Parameters
    ----------
    new_counts : np.ndarray
        int, shape (K,), new samples per class.
    shard_size : int
        Samples per shard.

    Returns
    -------
    ShardPlan
        In class order, then shard order; lazy, memory O(K).
    """
    return ShardPlan(new_counts, shard_size)


@dataclass(frozen=True)
class Draws:
    """The random choices of one shard.

    Attributes
    ----------
    base : np.ndarray
        int64, shape (m,), base sample index within the class.
    slot : np.ndarray
        int64, shape (m,), which of the base's neighbours.
    gap : np.ndarray
        float32, shape (m,), interpolation factor in [0, 1).
    """

    base: np.ndarray
    slot: np.ndarray
    gap: np.ndarray


def draw_shard(seed: int, shard: Shard, n_class: int, n_neighbors: int) -> Draws:
    """The shard's base indices, neighbour slots and gaps.

    Parameters
    ----------
    seed : int
        The job's seed.
    shard : Shard
    n_class : int
        Samples in the shard's class.
    n_neighbors : int
        Neighbours per sample (k, or n_class - 1 when the class is small).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, shard.class_index, shard.shard_index]))
    base = rng.integers(0, n_class, size=shard.count, dtype=np.int64)
    slot = rng.integers(0, n_neighbors, size=shard.count, dtype=np.int64)
    gap = rng.random(shard.count, dtype=np.float32)
    return Draws(base, slot, gap)


@dataclass(frozen=True)
class RealSlice:
    """Original samples ``start:stop`` of one class (in DATA order) that an output unit copies.

    Attributes
    ----------
    class_index : int
    start, stop : int
        Positions among the class's samples.
    """

    class_index: int
    start: int
    stop: int

    @property
    def count(self) -> int:
        """Samples in the slice."""
        return self.stop - self.start


@dataclass(frozen=True)
class Unit:
    """What one output file (or, for ImageFolder, one group of files) holds, and its done mark.

    Attributes
    ----------
    name : str
        File-name stem; also the name of the unit's done mark.
    synthetic : tuple of Shard
        The synthetic draws it holds, at most one per class.
    real : tuple of RealSlice
        The originals it copies (``include_originals``), at most one per class.
    """

    name: str
    synthetic: tuple[Shard, ...] = ()
    real: tuple[RealSlice, ...] = ()

    @property
    def count(self) -> int:
        """Samples in the unit."""
        return sum(s.count for s in self.synthetic) + sum(r.count for r in self.real)

    def order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The unit's samples in written order: each class's originals then its synthetic samples,
        the classes interleaved so that every stretch of the unit holds them in proportion.

        Sample ``j`` of a class with ``m`` samples in the unit sorts at ``(j + 0.5) / m``, ties by
        class index: a deterministic interleave that depends on the counts only.

        Returns
        -------
        class_index : np.ndarray
            int64, shape (count,).
        synthetic : np.ndarray
            bool, shape (count,).
        position : np.ndarray
            int64, shape (count,), index within the sample's RealSlice or Shard.
        """
        parts: dict[int, list[tuple[bool, int]]] = {}
        for r in self.real:
            parts.setdefault(r.class_index, []).extend((False, j) for j in range(r.count))
        for s in self.synthetic:
            parts.setdefault(s.class_index, []).extend((True, j) for j in range(s.count))
        classes = np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in parts.items()] or [np.zeros(0, int)])
        keys = np.concatenate([(np.arange(len(p)) + 0.5) / len(p) for p in parts.values()] or [np.zeros(0)])
        flat = [item for p in parts.values() for item in p]
        order = np.lexsort((classes, keys))
        synthetic = np.asarray([flat[i][0] for i in order], dtype=bool)
        position = np.asarray([flat[i][1] for i in order], dtype=np.int64)
        return classes[order], synthetic, position


def plan_per_class(
    new_counts: np.ndarray, real_counts: np.ndarray | None, shard_size: int = DEFAULT_SHARD_SIZE
) -> list[Unit]:
    """One unit per shard of one class (ImageFolder, NPZ): the shards of :func:`plan_shards`.

    Parameters
    ----------
    new_counts : np.ndarray
        int, shape (K,), synthetic samples per class.
    real_counts : np.ndarray or None
        int, shape (K,), originals per class to copy too; None copies none.
    shard_size : int
    """
    units = []
    if real_counts is not None:
        for c, n in enumerate(int(n) for n in real_counts):
            for i, start in enumerate(range(0, n, shard_size)):
                stop = min(start + shard_size, n)
                units.append(Unit(f"real-class-{c:04d}-shard-{i:06d}", real=(RealSlice(c, start, stop),)))
    units += [Unit(shard.name, synthetic=(shard,)) for shard in plan_shards(new_counts, shard_size)]
    return units


def plan_mixed(
    new_counts: np.ndarray, real_counts: np.ndarray | None, shard_size: int = DEFAULT_SHARD_SIZE
) -> list[Unit]:
    """Units that mix the classes (WebDataset, Parquet): each holds every class in proportion.

    Every sample of the job (each class's originals when copied, then its synthetic ones) is put in
    one sequence where sample ``j`` of a class of ``n`` sorts at ``(j + 0.5) / n`` (ties by class),
    and the sequence is cut into units of exactly ``shard_size`` (the last one shorter). So a unit
    holds a consecutive stretch of each class, the classes in the proportions of the whole set.
    The synthetic part of class ``c`` in unit ``t`` is ``Shard(c, t, count)``: its draws come from
    ``SeedSequence([seed, c, t])``.

    Parameters
    ----------
    new_counts, real_counts, shard_size
        As for :func:`plan_per_class`.

    Returns
    -------
    list of Unit
        Named ``000000``, ``000001``, ...
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    new = np.asarray(new_counts, dtype=np.int64)
    real = np.zeros_like(new) if real_counts is None else np.asarray(real_counts, dtype=np.int64)
    totals = new + real
    classes = np.repeat(np.arange(len(totals)), totals)
    keys = np.concatenate([(np.arange(n) + 0.5) / n for n in totals.tolist() if n] or [np.zeros(0)])
    in_order = classes[np.lexsort((classes, keys))]
    units = []
    taken = np.zeros_like(totals)
    for t, first in enumerate(range(0, len(in_order), shard_size)):
        counts = np.bincount(in_order[first : first + shard_size], minlength=len(totals))
        synthetic, originals = [], []
        for c in np.flatnonzero(counts).tolist():
            start, stop, n_real = int(taken[c]), int(taken[c] + counts[c]), int(real[c])
            if min(stop, n_real) > start:
                originals.append(RealSlice(c, start, min(stop, n_real)))
            if stop > max(start, n_real):
                synthetic.append(Shard(c, t, stop - max(start, n_real)))
        taken += counts
        units.append(Unit(f"{t:06d}", synthetic=tuple(synthetic), real=tuple(originals)))
    return units
