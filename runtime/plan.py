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
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .latent_samplers import draw_bases
from .remix import RemixPool, draw_partners

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
    repeats : int
        How many of them, the last ones, are repeats of real images rather than synthetic
        (``synthetic_share`` below 1; :mod:`.mixing`).
    """

    class_index: int
    shard_index: int
    count: int
    repeats: int = 0

    @property
    def synthetic_count(self) -> int:
        """Synthetic samples in this shard: ``count - repeats``."""
        return self.count - self.repeats

    @property
    def name(self) -> str:
        """File-name stem of this shard's output, ``class-CCCC-shard-SSSSSS``."""
        return f"class-{self.class_index:04d}-shard-{self.shard_index:06d}"


def _position(index: int, length: int, what: str) -> int:
    """The position a sequence index (negative from the end) names in a plan of ``length`` items."""
    if not isinstance(index, int | np.integer):
        raise TypeError(f"a {what} plan is indexed by an integer, got {type(index).__name__}")
    position = int(index) + length if index < 0 else int(index)
    if not 0 <= position < length:
        raise IndexError(f"{what} {index} out of range for a plan of {length} {what}s")
    return position


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
    synthetic_counts : np.ndarray, optional
        int, shape (K,), how many of each class's new samples are synthetic, the rest repeats of
        real images (:func:`.mixing.split`); all of them when None.
    """

    def __init__(
        self,
        new_counts: np.ndarray | Sequence[int],
        shard_size: int = DEFAULT_SHARD_SIZE,
        synthetic_counts: np.ndarray | Sequence[int] | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.counts = tuple(int(n) for n in new_counts)
        if any(n < 0 for n in self.counts):
            raise ValueError(f"new sample counts must be non-negative, got {list(self.counts)}")
        self.shard_size = int(shard_size)
        self.synthetic_counts = self.counts if synthetic_counts is None else tuple(int(n) for n in synthetic_counts)
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
        position = _position(index, len(self), "shard")
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
        count = min(self.shard_size, self.counts[class_index] - start)
        repeats = count - synthetic_between(
            start, start + count, self.synthetic_counts[class_index], self.counts[class_index]
        )
        return Shard(class_index, shard_index, count, repeats)


def synthetic_between(start: int, stop: int, synthetic: int, total: int) -> int:
    """How many of a class's new samples ``start:stop`` are synthetic when ``synthetic`` of its
    ``total`` are: ``floor(stop·s/t) − floor(start·s/t)``, so they are spread evenly over the
    class and add up to exactly ``synthetic`` (Python integers, no rounding)."""
    if synthetic == total:
        return stop - start
    return stop * synthetic // total - start * synthetic // total


def plan_shards(
    new_counts: np.ndarray, shard_size: int = DEFAULT_SHARD_SIZE, synthetic_counts: np.ndarray | None = None
) -> ShardPlan:
    """Cut each class's new samples into fixed-size shards.

    Parameters
    ----------
    new_counts : np.ndarray
        int, shape (K,), new samples per class.
    shard_size : int
        Samples per shard.
    synthetic_counts : np.ndarray, optional
        int, shape (K,), how many of them are synthetic (the rest real repeats); all when None.

    Returns
    -------
    ShardPlan
        In class order, then shard order; lazy, memory O(K).
    """
    return ShardPlan(new_counts, shard_size, synthetic_counts)


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
        float32, shape (m,), interpolation factor in [0, 1): under latent Remix, the partner's weight.
    partner : np.ndarray or None
        Under latent Remix (:mod:`.remix`), int64 (m,): the DATA index of each base's partner, of
        any class (``slot`` is then 0); None otherwise.
    """

    base: np.ndarray
    slot: np.ndarray
    gap: np.ndarray
    partner: np.ndarray | None = None


def draw_shard(
    seed: int,
    shard: Shard,
    n_class: int,
    n_neighbors: int,
    weights: np.ndarray | None = None,
    round_index: int = 0,
    remix: RemixPool | None = None,
) -> Draws:
    """The shard's base indices, neighbour slots and gaps: ``shard.synthetic_count`` of each.

    Parameters
    ----------
    seed : int
        The job's seed.
    shard : Shard
    n_class : int
        Samples in the shard's class.
    n_neighbors : int
        Neighbours per sample (k, or n_class - 1 when the class is small).
    weights : np.ndarray, optional
        float64, shape (n_class,): the bases' weights under a latent sampler (`latent_samplers`);
        None draws them uniformly.
    round_index : int
        Candidate round of the quality gate (:mod:`.gate`): round 0 is seeded by
        ``SeedSequence([seed, class_index, shard_index])``, round r > 0 by ``[..., r]``.
    remix : RemixPool, optional
        Latent Remix's partners: after the bases, each base's partner and its weight are drawn
        (:func:`.remix.draw_partners`) in place of SMOTE's slot and gap.
    """
    key = [seed, shard.class_index, shard.shard_index, *([round_index] if round_index else [])]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    count = shard.synthetic_count
    if weights is None:
        base = rng.integers(0, n_class, size=count, dtype=np.int64)
    else:
        base = draw_bases(rng, weights, count)
    if remix is not None:
        partner, weight = draw_partners(rng, remix, shard.class_index, base)
        return Draws(base, np.zeros(count, dtype=np.int64), weight, partner)
    slot = rng.integers(0, n_neighbors, size=count, dtype=np.int64)
    gap = rng.random(count, dtype=np.float32)
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

    def order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The unit's samples in written order: each class's originals spread evenly among its new
        samples, the classes interleaved so that every stretch of the unit holds them in proportion.

        Sample ``j`` of a class with ``m`` samples in the unit sorts at ``(j + 0.5) / m``, ties by
        class index; of those ``m``, sample ``j`` is an original where ``floor((j + 1)·r/m)`` passes
        ``floor(j·r/m)`` (``r`` originals): a deterministic interleave that depends on
        the counts only.

        Returns
        -------
        class_index : np.ndarray
            int64, shape (count,).
        synthetic : np.ndarray
            bool, shape (count,).
        position : np.ndarray
            int64, shape (count,), index within the sample's RealSlice or Shard.
        original : np.ndarray
            bool, shape (count,), whether the sample is an original (of a RealSlice) rather than a
            new sample of a Shard (synthetic, or a repeat of a real image).
        """
        reals = {r.class_index: r.count for r in self.real}
        shards = {s.class_index: s for s in self.synthetic}
        classes, keys, synthetic, position, original = [], [], [], [], []
        for c in dict.fromkeys([*reals, *shards]):
            r, shard = reals.get(c, 0), shards.get(c)
            m = r + (shard.count if shard else 0)
            j = np.arange(m, dtype=np.int64)
            is_real = (j + 1) * r // m > j * r // m
            # Each kind's index within its RealSlice or Shard: how many of that kind come before.
            place = np.where(is_real, np.cumsum(is_real) - 1, np.cumsum(~is_real) - 1)
            classes.append(np.full(m, c, dtype=np.int64))
            keys.append((j + 0.5) / m)
            synthetic.append(~is_real & (place < (shard.synthetic_count if shard else 0)))
            position.append(place)
            original.append(is_real)
        if not classes:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.astype(bool), empty, empty.astype(bool)
        flat_classes = np.concatenate(classes)
        order = np.lexsort((flat_classes, np.concatenate(keys)))
        return (
            flat_classes[order],
            np.concatenate(synthetic)[order],
            np.concatenate(position)[order],
            np.concatenate(original)[order],
        )


class UnitPlan(Sequence[Unit]):
    """A job's output units, made when indexed or iterated; memory O(classes), never O(units).

    Subclasses define ``len(self)`` and :meth:`unit`; :meth:`class_units` says in how many units
    each class has samples (the dry run's table).
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def unit(self, t: int) -> Unit:
        """Unit ``t``, ``0 <= t < len(self)``."""
        raise NotImplementedError

    def class_units(self) -> np.ndarray:
        """int64, shape (K,): the number of units holding some sample of each class."""
        raise NotImplementedError

    def locate(self, name: str) -> int | None:
        """The position of the unit named ``name``, or None if no unit of this plan has that name."""
        position = self._position_from_name(name)
        if position is None or not 0 <= position < len(self) or self.unit(position).name != name:
            return None
        return position

    def _position_from_name(self, name: str) -> int | None:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Unit:  # type: ignore[override]
        return self.unit(_position(index, len(self), "unit"))

    def __iter__(self) -> Iterator[Unit]:
        return (self.unit(t) for t in range(len(self)))

    @property
    def total(self) -> int:
        """Samples over all units."""
        raise NotImplementedError


class PerClassPlan(UnitPlan):
    """One unit per shard of one class (ImageFolder, NPZ): the shards of :func:`plan_shards`, then
    each class's originals when copied, cut into shards (``real-class-CCCC-shard-SSSSSS``).

    The synthetic units come first: a job that cannot decode (a graph that fails at run time, a
    gate that rejects a class) stops before it has finished any unit, so it leaves no partial OUT."""

    def __init__(
        self,
        new_counts: np.ndarray | Sequence[int],
        real_counts: np.ndarray | Sequence[int] | None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        synthetic_counts: np.ndarray | Sequence[int] | None = None,
    ) -> None:
        self.synthetic = ShardPlan(new_counts, shard_size, synthetic_counts)
        self.real = ShardPlan([0] * len(self.synthetic.counts) if real_counts is None else real_counts, shard_size)

    def __len__(self) -> int:
        return len(self.real) + len(self.synthetic)

    @property
    def total(self) -> int:
        return self.real.total + self.synthetic.total

    def unit(self, t: int) -> Unit:
        if t < len(self.synthetic):
            shard = self.synthetic[t]
            return Unit(shard.name, synthetic=(shard,))
        part = self.real[t - len(self.synthetic)]
        start = part.shard_index * self.real.shard_size
        name = f"real-class-{part.class_index:04d}-shard-{part.shard_index:06d}"
        return Unit(name, real=(RealSlice(part.class_index, start, start + part.count),))

    def _position_from_name(self, name: str) -> int | None:
        match = re.fullmatch(r"(real-)?class-(\d{4,})-shard-(\d{6,})", name)
        if match is None:
            return None
        plan, offset = (self.real, len(self.synthetic)) if match[1] else (self.synthetic, 0)
        c, i = int(match[2]), int(match[3])
        if c >= len(plan.per_class) or i >= plan.per_class[c]:
            return None
        return offset + (plan._ends[c - 1] if c else 0) + i

    def class_units(self) -> np.ndarray:
        return np.asarray(self.real.per_class, dtype=np.int64) + np.asarray(self.synthetic.per_class, dtype=np.int64)


_ONE_BITS = int(np.float64(1.0).view(np.int64))


class MixedPlan(UnitPlan):
    """Units that mix the classes (WebDataset, Parquet); see :func:`plan_mixed`.

    The job's samples are ordered by key ``(j + 0.5) / n`` (sample ``j`` of a class of ``n``, in
    float64 as numpy computes it), ties by class; unit ``t`` is positions ``t*shard_size`` onwards.
    Which samples of each class lie before a position ``P`` is found without listing the samples:
    the key of the sample at ``P`` is the largest float ``x`` with fewer than ``P + 1`` keys below it
    (a binary search over the bit patterns of floats in [0, 1]), and the ties at that key go to the
    classes in index order, as a stable sort puts them. Cost per unit: ~64 passes over the classes.
    """

    def __init__(
        self,
        new_counts: np.ndarray | Sequence[int],
        real_counts: np.ndarray | Sequence[int] | None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        synthetic_counts: np.ndarray | Sequence[int] | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.new = np.asarray(new_counts, dtype=np.int64).reshape(-1)
        self.synthetic_counts = self.new.tolist() if synthetic_counts is None else [int(n) for n in synthetic_counts]
        self.real = np.zeros_like(self.new) if real_counts is None else np.asarray(real_counts, dtype=np.int64)
        self.totals = self.new + self.real
        if (self.totals < 0).any() or (self.totals >= 2**52).any():
            raise ValueError(f"sample counts must lie in [0, 2**52), got {self.totals.tolist()}")
        self.shard_size = int(shard_size)
        self._n = self.totals.astype(np.float64)
        # A class of no samples has no keys; dividing by 1 keeps its (clipped) counts at 0.
        self._divisor = np.where(self.totals > 0, self._n, 1.0)

    @property
    def total(self) -> int:
        return int(self.totals.sum(dtype=object))

    def __len__(self) -> int:
        return -(-self.total // self.shard_size)

    def _keys(self, j: np.ndarray) -> np.ndarray:
        # Exactly the eager plan's float64 arithmetic: (arange(n) + 0.5) / n.
        return (j.astype(np.float64) + 0.5) / self._divisor

    def _count(self, x: float, inclusive: bool) -> np.ndarray:
        """Per class, how many keys are below ``x`` (or at most ``x`` when ``inclusive``)."""
        j = np.clip(np.floor(x * self._n - 0.5).astype(np.int64) + 1, 0, self.totals)
        before = np.less_equal if inclusive else np.less
        while True:  # the estimate is off by at most a rounding; keys grow with j
            down = (j > 0) & ~before(self._keys(j - 1), x)
            up = (j < self.totals) & before(self._keys(j), x)
            if not (down.any() or up.any()):
                return j
            j = j - down + up

    def prefix(self, position: int) -> np.ndarray:
        """int64, shape (K,): samples of each class among the first ``position`` of the job's order."""
        if position <= 0:
            return np.zeros_like(self.totals)
        if position >= self.total:
            return self.totals.copy()
        lo, hi = 0, _ONE_BITS  # fewer than position+1 keys below float(lo); at least that many below 1.0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if int(self._count(float(np.int64(mid).view(np.float64)), False).sum()) <= position:
                lo = mid
            else:
                hi = mid
        x = float(np.int64(lo).view(np.float64))
        below = self._count(x, False)
        ties = self._count(x, True) - below
        left = position - int(below.sum())
        return below + np.clip(left - (np.cumsum(ties) - ties), 0, ties)

    def _position_from_name(self, name: str) -> int | None:
        return int(name) if re.fullmatch(r"\d{6,}", name) else None

    def unit(self, t: int) -> Unit:
        first = t * self.shard_size
        return self._unit(t, self.prefix(first), self.prefix(first + self.shard_size))

    def __iter__(self) -> Iterator[Unit]:
        # Each unit ends where the next begins: one search per unit.
        taken = self.prefix(0)
        for t in range(len(self)):
            upto = self.prefix((t + 1) * self.shard_size)
            yield self._unit(t, taken, upto)
            taken = upto

    def _unit(self, t: int, taken: np.ndarray, upto: np.ndarray) -> Unit:
        synthetic, originals = [], []
        for c in np.flatnonzero(upto > taken).tolist():
            start, stop = int(taken[c]), int(upto[c])
            n_real, new, total = int(self.real[c]), int(self.new[c]), int(self.totals[c])
            # A class's originals are spread evenly over its whole sequence (not put first), so every
            # unit holds about the job's share of real images: the shards stay exchangeable.
            real_start, real_stop = start * n_real // total, stop * n_real // total
            if real_stop > real_start:
                originals.append(RealSlice(c, real_start, real_stop))
            first, last = start - real_start, stop - real_stop
            if last > first:
                made = synthetic_between(first, last, self.synthetic_counts[c], new)
                synthetic.append(Shard(c, t, last - first, last - first - made))
        return Unit(f"{t:06d}", synthetic=tuple(synthetic), real=tuple(originals))

    def position(self, class_index: int, j: int) -> int:
        """Where sample ``j`` of class ``class_index`` lies in the job's order."""
        x = float((np.float64(j) + 0.5) / self._divisor[class_index])
        below, upto = self._count(x, False), self._count(x, True)
        ahead = np.where(np.arange(len(self.totals)) < class_index, upto, below)
        return int(ahead.sum()) - int(ahead[class_index]) + j

    def class_units(self) -> np.ndarray:
        """Per class, the units holding some of its samples, computed from the counts alone where a
        class is dense enough that no unit between its first and last sample can miss it."""
        result = np.zeros_like(self.totals)
        for c, n in enumerate(self.totals.tolist()):
            if n == 0:
                continue
            # Between two consecutive samples of class c lie at most n'//n + 3 of each other class
            # (the exact n'/n + 1, plus a rounding at either end): if that gap fits in a unit, every
            # unit from the one of its first sample to the one of its last holds some of it.
            gap = 1 + sum(m // n + 3 for k, m in enumerate(self.totals.tolist()) if k != c and m)
            if gap <= self.shard_size or n == 1:
                first, last = self.position(c, 0), self.position(c, n - 1)
                result[c] = last // self.shard_size - first // self.shard_size + 1
            else:
                result[c] = len({self.position(c, j) // self.shard_size for j in range(n)})
        return result


def plan_per_class(
    new_counts: np.ndarray,
    real_counts: np.ndarray | None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    synthetic_counts: np.ndarray | None = None,
) -> PerClassPlan:
    """One unit per shard of one class (ImageFolder, NPZ): the shards of :func:`plan_shards`.

    Parameters
    ----------
    new_counts : np.ndarray
        int, shape (K,), synthetic samples per class.
    real_counts : np.ndarray or None
        int, shape (K,), originals per class to copy too; None copies none.
    shard_size : int
    synthetic_counts : np.ndarray, optional
        int, shape (K,), how many of the new samples are synthetic, the rest real repeats.

    Returns
    -------
    PerClassPlan
        Lazy, memory O(K): the synthetic shards (``class-CCCC-shard-SSSSSS``), then each class's
        originals (``real-class-CCCC-shard-SSSSSS``).
    """
    return PerClassPlan(new_counts, real_counts, shard_size, synthetic_counts)


def plan_mixed(
    new_counts: np.ndarray,
    real_counts: np.ndarray | None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    synthetic_counts: np.ndarray | None = None,
) -> MixedPlan:
    """Units that mix the classes (WebDataset, Parquet): each holds every class in proportion.

    Every sample of the job (each class's originals when copied, spread evenly among its new ones:
    of a class's ``n`` samples, ``floor(p·r/n)`` of the first ``p`` are its ``r`` originals) is put in
    one sequence where sample ``j`` of a class of ``n`` sorts at ``(j + 0.5) / n`` (ties by class),
    and the sequence is cut into units of exactly ``shard_size`` (the last one shorter). So a unit
    holds a consecutive stretch of each class, the classes in the proportions of the whole set.
    The synthetic part of class ``c`` in unit ``t`` is ``Shard(c, t, count)``: its draws come from
    ``SeedSequence([seed, c, t])``.

    Parameters
    ----------
    new_counts, real_counts, shard_size, synthetic_counts
        As for :func:`plan_per_class`.

    Returns
    -------
    MixedPlan
        Lazy, memory O(K); units named ``000000``, ``000001``, ...
    """
    return MixedPlan(new_counts, real_counts, shard_size, synthetic_counts)
