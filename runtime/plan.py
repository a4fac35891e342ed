"""The job as shards with their seeds (``docs/design.md`` §4).

Each class's synthetic samples are cut into shards of a fixed size that does not depend on
the batch size or the number of workers, and each shard draws its randomness from
``SeedSequence([seed, class_index, shard_index])``. A shard is therefore a pure function of
the job's settings, and so is every output byte.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

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


def plan_shards(new_counts: np.ndarray, shard_size: int = DEFAULT_SHARD_SIZE) -> list[Shard]:
    """Cut each class's new samples into fixed-size shards.

    Parameters
    ----------
    new_counts : np.ndarray
        int, shape (K,), new samples per class.
    shard_size : int
        Samples per shard.

    Returns
    -------
    list of Shard
        In class order, then shard order.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    shards = []
    for class_index, total in enumerate(int(n) for n in new_counts):
        for shard_index, start in enumerate(range(0, total, shard_size)):
            shards.append(Shard(class_index, shard_index, min(shard_size, total - start)))
    return shards


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
