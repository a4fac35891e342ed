"""Latent samplers: which codes of a class serve as SMOTE bases (``docs/design.md`` §1, §4).

imbalanced-learn's definitions, applied to the codes of every class:

- ``smote``: every code of the class, uniformly (``integers(0, n)``, the bytes of SMOTE as before).
- ``borderline`` (Borderline-SMOTE-1, imbalanced-learn's ``BorderlineSMOTE(kind='borderline-1')``):
  a code is in *danger* when, of its m = 10 nearest neighbours among the codes of all classes (its
  own excluded), m/2 <= m' < m belong to another class; the bases are drawn uniformly from the
  danger codes only. A class with no danger code falls back to SMOTE with a warning (imbalanced-
  learn makes no sample for it).
- ``adasyn`` (imbalanced-learn's ``ADASYN``): r_i = (neighbours of another class among code i's k
  nearest across all classes) / k, and base i is drawn with probability r_i / Σ r. imbalanced-learn
  instead rounds ``r_i / Σ r · count`` into a number of samples per base; drawing each sample's base
  from the weights keeps every shard a function of its own seed (so the output does not depend on
  the shard size's cut of the rounding) and makes exactly the requested count. Where every r_i is 0
  imbalanced-learn raises; here the class falls back to SMOTE with a warning.

In these three the partner of a base is one of its k nearest neighbours within the class. The
k-NN across classes runs in :func:`deepsmote.kernels.kneighbors_of`.

- ``remix`` (latent Remix, :mod:`.remix`): bases uniform as in SMOTE, each mixed with a partner
  from any class and labelled by Remix's rule (soft targets).

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from deepsmote.kernels import kneighbors_of

from .errors import InvalidInputError

__all__ = ["BORDERLINE_M", "SAMPLERS", "base_weights", "check_sampler", "codes_in_data_order", "draw_bases"]

SAMPLERS = ("smote", "borderline", "adasyn", "remix")

# imbalanced-learn's BorderlineSMOTE ``m_neighbors`` default.
BORDERLINE_M = 10


def check_sampler(sampler: object) -> str:
    """``sampler`` if it names a latent sampler.

    Raises
    ------
    InvalidInputError
        Naming `sampler` and the choices.
    """
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise InvalidInputError(f"`sampler` must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    return sampler


def danger(other_class: np.ndarray) -> np.ndarray:
    """Borderline-SMOTE-1's danger set: m/2 <= (neighbours of another class) < m.

    Parameters
    ----------
    other_class : np.ndarray
        bool, shape (n, m): whether each of a code's m neighbours across classes is of another class.

    Returns
    -------
    np.ndarray
        bool, shape (n,).
    """
    m = other_class.shape[1]
    count = other_class.sum(axis=1)
    # 2 m' >= m is m' >= m/2 without a float.
    return (2 * count >= m) & (count < m)


def adasyn_ratio(other_class: np.ndarray) -> np.ndarray:
    """ADASYN's r_i: the share of another class among each code's k neighbours; float64, shape (n,)."""
    return other_class.sum(axis=1) / other_class.shape[1]


def base_weights(
    sampler: str,
    codes: Sequence[np.ndarray],
    labels: np.ndarray,
    grows: Sequence[bool],
    k_neighbors: int,
    class_names: Sequence[str],
) -> list[np.ndarray | None]:
    """Per class, the weights of its codes as bases, or None for uniform draws (SMOTE's).

    Parameters
    ----------
    sampler : {'smote', 'borderline', 'adasyn', 'remix'}
    codes : sequence of np.ndarray
        Per class c, float32 (n_c, Z): the codes of every class (the k-NN across classes needs them
        all), in the order of its samples in the data.
    labels : np.ndarray
        int, shape (N,): each sample's class. The codes are searched in this (DATA) order, so equal
        distances go to the smaller DATA index.
    grows : sequence of bool
        Per class, whether it gets synthetic samples (only those are weighed).
    k_neighbors : int
        ADASYN's neighbours across classes (the k of SMOTE).
    class_names : sequence of str
        For messages.

    Returns
    -------
    list of np.ndarray or None
        Per class, float64 (n_c,) non-negative weights, not all zero, or None: a class that does not
        grow, the ``smote`` and ``remix`` samplers, or a class whose weights are all zero (after a warning).
    """
    check_sampler(sampler)
    if sampler in ("smote", "remix"):
        return [None] * len(codes)
    reference = codes_in_data_order(codes, labels)
    wanted = BORDERLINE_M if sampler == "borderline" else k_neighbors
    weights: list[np.ndarray | None] = []
    for c, growing in enumerate(grows):
        if not growing:
            weights.append(None)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            neighbours, _ = kneighbors_of(reference, np.flatnonzero(labels == c), wanted)
        if caught:
            warnings.warn(
                f"the data has {len(reference)} samples: sampler {sampler} uses {neighbours.shape[1]} neighbours "
                f"across classes instead of {wanted}",
                stacklevel=2,
            )
        other_class = labels[neighbours] != c
        weight = danger(other_class).astype(np.float64) if sampler == "borderline" else adasyn_ratio(other_class)
        if not weight.any():
            reason = "no code in danger" if sampler == "borderline" else "no code with a neighbour of another class"
            warnings.warn(
                f"class '{class_names[c]}' has {reason} (sampler {sampler}): it falls back to SMOTE, bases drawn "
                "from all its codes",
                stacklevel=2,
            )
            weights.append(None)
            continue
        weights.append(weight / weight.sum())
    return weights


def codes_in_data_order(codes: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Every class's codes (per class c, float32 (n_c, Z) in DATA order) as one float32 (N, Z) array
    in DATA order: row i is sample i's code (``labels``, int (N,), gives each sample's class)."""
    reference = np.empty((len(labels), codes[0].shape[1]), dtype=np.float32)
    for c, class_codes in enumerate(codes):
        reference[labels == c] = class_codes
    return reference


def draw_bases(rng: np.random.Generator, weights: np.ndarray, count: int) -> np.ndarray:
    """``count`` base indices drawn with probabilities ``weights``, by inverse CDF of ``rng.random``.

    One float64 ``random()`` per sample, against the float64 cumulative sum of the weights divided
    by its last value (so the last is exactly 1 and every u in [0, 1) finds an index): index i is
    drawn when cdf[i - 1] <= u < cdf[i], never where a weight is 0.

    Returns
    -------
    np.ndarray
        int64, shape (count,).
    """
    cdf = np.cumsum(weights, dtype=np.float64)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(count), side="right").astype(np.int64)
