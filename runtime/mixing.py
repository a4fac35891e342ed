"""Mixing: a share of each class's new samples synthetic, the rest repeats of its real images.

``synthetic_share`` F fills ``round(F·gap)`` of a class's gap with synthetic samples (F read as
the decimal it prints as, rounded half to even: F = 0.5 of a gap of 5 is 2) and the rest with real
images of the class drawn as random oversampling does: uniformly with replacement. A shard's
repeats (its last ``Shard.repeats`` samples, :mod:`.plan`) are drawn from
``SeedSequence([seed, class_index, shard_index, 0, 1])``: one word longer than any key of the
synthetic draws (``[seed, c, s]`` and the gate's rounds ``[seed, c, s, r]``, :mod:`.gate`), so the
two streams never share a seed.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import decimal

import numpy as np

from .errors import InvalidInputError
from .plan import Shard

# Appended to a shard's key for its repeats: five words where the synthetic draws use three or four.
REPEAT_KEY = (0, 1)


def check_share(synthetic_share: float) -> float:
    """``synthetic_share`` as a float in [0, 1].

    Raises
    ------
    InvalidInputError
        For anything else (NaN included).
    """
    if isinstance(synthetic_share, bool) or not isinstance(synthetic_share, int | float | np.floating | np.integer):
        raise InvalidInputError(f"`synthetic_share` must be a number in [0, 1], got {synthetic_share!r}")
    share = float(synthetic_share)
    if not 0.0 <= share <= 1.0:
        raise InvalidInputError(f"`synthetic_share` must lie in [0, 1], got {synthetic_share!r}")
    return share


def split(new_counts: np.ndarray, synthetic_share: float) -> np.ndarray:
    """How many of each class's new samples are synthetic.

    Parameters
    ----------
    new_counts : np.ndarray
        int, shape (K,), new samples per class (the gap).
    synthetic_share : float
        F in [0, 1].

    Returns
    -------
    np.ndarray
        int64, shape (K,): ``round(F·gap)``, F as its decimal repr, half to even.
    """
    share = decimal.Decimal(repr(check_share(synthetic_share)))
    return np.asarray(
        [int((share * int(n)).to_integral_value(rounding=decimal.ROUND_HALF_EVEN)) for n in new_counts],
        dtype=np.int64,
    )


def draw_repeats(seed: int, shard: Shard, n_class: int) -> np.ndarray:
    """The real samples a shard repeats: int64, shape (shard.repeats,), indices within the class."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, shard.class_index, shard.shard_index, *REPEAT_KEY]))
    return rng.integers(0, n_class, size=shard.repeats, dtype=np.int64)
