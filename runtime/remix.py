"""Latent Remix: a minority code mixed with a code of any class, labelled by Remix's rule.

Each synthetic sample of a class c being grown mixes the code of one of c's real images (the
*base*, drawn as SMOTE draws its bases) with the code of a *partner*:

- ``partner='uniform'``: a training sample drawn uniformly from the whole data, so mostly from the
  large classes;
- ``partner='nearest-other'``: one of the base's k nearest codes of other classes (EOS's
  direction), drawn uniformly among the k.

The partner's weight g is drawn from U[0, 1 - ``min_weight``) (the base keeps λ = 1 - g >= the
minimum), and the code is ``z = z_base + g·(z_partner - z_base)``, SMOTE's interpolation towards a
partner of another class. Its soft target follows Remix (Chou et al., ECCV workshops 2020): with
n_b and n_p the two classes' sizes in the data,

- the base's class alone when n_p >= κ·n_b and g < τ (the mix crosses the boundary, the minority
  keeps the label);
- the partner's class alone when n_b >= κ·n_p and λ < τ;
- λ·e_base + g·e_partner otherwise (mixup's label).

A shard draws its bases, partners (or neighbour slots) and weights from
``SeedSequence([seed, class_index, shard_index])``, in that order, like every sampler
(:mod:`.plan`), so its bytes do not depend on batches, threads, workers or engine.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from deepsmote.kernels import kneighbors_of

from .errors import InvalidInputError

__all__ = [
    "BASES",
    "PARTNERS",
    "RemixPool",
    "RemixSettings",
    "check_remix_gate",
    "mix_codes",
    "remix_pool",
    "remix_targets",
]

PARTNERS = ("uniform", "nearest-other")
# The latent samplers whose base weights latent Remix can draw its bases with.
BASES = ("smote", "borderline", "adasyn")


@dataclass(frozen=True)
class RemixSettings:
    """The settings of latent Remix.

    Attributes
    ----------
    min_weight : float
        The base's weight λ is drawn from U[min_weight, 1); in [0, 1).
    kappa : float
        The size ratio at and above which the hard-label rule applies; >= 1.
    tau : float
        The weight of the larger class under which the label is the smaller class's alone; in [0, 1].
    partner : {'uniform', 'nearest-other'}
        Where the partner comes from.
    base : {'smote', 'borderline', 'adasyn'}
        How the bases are drawn from the class being grown: uniformly (``smote``) or with another
        latent sampler's weights (:mod:`.latent_samplers`).
    """

    min_weight: float = 0.5
    kappa: float = 3.0
    tau: float = 0.5
    partner: str = "uniform"
    base: str = "smote"

    def __post_init__(self) -> None:
        for name, low, high, closed in (("min_weight", 0.0, 1.0, False), ("tau", 0.0, 1.0, True)):
            value = getattr(self, name)
            inside = low <= value <= high if closed else low <= value < high
            if not _is_number(value) or not inside:
                bound = "]" if closed else ")"
                raise InvalidInputError(f"`remix_{name}` must be a number in [{low:g}, {high:g}{bound}, got {value!r}")
        if not _is_number(self.kappa) or not 1.0 <= self.kappa < math.inf:
            raise InvalidInputError(f"`remix_kappa` must be a finite number >= 1, got {self.kappa!r}")
        if self.partner not in PARTNERS:
            raise InvalidInputError(f"`remix_partner` must be one of {', '.join(PARTNERS)}, got {self.partner!r}")
        if self.base not in BASES:
            raise InvalidInputError(f"`remix_base` must be one of {', '.join(BASES)}, got {self.base!r}")


def check_remix_gate(sampler: str, filter_threshold: float | None) -> None:
    """Refuse the quality gate with latent Remix: the gate keeps candidates its classifier gives
    their base's class, which a mix across classes is on purpose not.

    Raises
    ------
    InvalidInputError
    """
    if sampler == "remix" and filter_threshold is not None:
        raise InvalidInputError(
            "`filter_threshold` cannot gate latent Remix: its mixes cross class boundaries on purpose; "
            "drop the filter or use another sampler"
        )


def _is_number(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float | np.integer | np.floating)
        and (not math.isnan(float(value)))
    )


@dataclass(frozen=True)
class RemixPool:
    """Every training code with its class: where the partners come from.

    Attributes
    ----------
    codes : np.ndarray
        float32, shape (N, Z), in DATA order.
    labels : np.ndarray
        int64, shape (N,): each code's class index.
    counts : np.ndarray
        int64, shape (K,): the samples of each class in the data (the sizes the label rule compares).
    nearest_other : tuple of np.ndarray or None
        With ``partner='nearest-other'``, per class that grows, int64 (n_c, k): the DATA indices of
        each of its codes' k nearest codes of other classes, nearest first; None otherwise.
    settings : RemixSettings
    """

    codes: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    nearest_other: tuple[np.ndarray | None, ...] | None
    settings: RemixSettings

    @property
    def n_classes(self) -> int:
        """K."""
        return len(self.counts)


def nearest_other_codes(codes: np.ndarray, labels: np.ndarray, class_index: int, k: int) -> np.ndarray:
    """int64, shape (n_c, min(k, N - n_c)): DATA indices of each class code's k nearest codes of other classes.

    The search runs in :func:`deepsmote.kernels.kneighbors_of` over the other classes' codes
    followed by the class's own, asking for enough neighbours that k of another class are among
    them whatever the class's own codes are; equal distances go to the smaller DATA index.
    """
    own = np.flatnonzero(labels == class_index)
    others = np.flatnonzero(labels != class_index)
    if len(others) == 0:
        raise InvalidInputError("`remix_partner` 'nearest-other' needs codes of another class")
    wanted = min(k, len(others))
    reference = np.concatenate([codes[others], codes[own]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # asking for every row is expected for a small data set
        found, _ = kneighbors_of(reference, len(others) + np.arange(len(own)), wanted + len(own) - 1)
    nearest = np.empty((len(own), wanted), dtype=np.int64)
    for i, row in enumerate(found):
        nearest[i] = others[row[row < len(others)][:wanted]]
    return nearest


def remix_pool(
    codes: np.ndarray, labels: np.ndarray, n_classes: int, grows: np.ndarray, k_neighbors: int, settings: RemixSettings
) -> RemixPool:
    """The partners' pool of a job.

    Parameters
    ----------
    codes : np.ndarray
        float32, shape (N, Z): every training code, in DATA order.
    labels : np.ndarray
        int, shape (N,): their class indices.
    n_classes : int
    grows : np.ndarray
        bool, shape (K,): the classes that get synthetic samples (only those need nearest partners).
    k_neighbors : int
        The k of ``partner='nearest-other'``.
    settings : RemixSettings
    """
    labels = np.asarray(labels, dtype=np.int64)
    nearest = None
    if settings.partner == "nearest-other":
        nearest = tuple(
            nearest_other_codes(codes, labels, c, k_neighbors) if grows[c] else None for c in range(n_classes)
        )
    return RemixPool(codes, labels, np.bincount(labels, minlength=n_classes), nearest, settings)


def draw_partners(
    rng: np.random.Generator, pool: RemixPool, class_index: int, base: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each base's partner (DATA index) and the partner's weight g, drawn in that order from ``rng``.

    Parameters
    ----------
    rng : np.random.Generator
        The shard's generator, after its bases were drawn.
    pool : RemixPool
    class_index : int
        The class being grown.
    base : np.ndarray
        int64, shape (m,): base indices within the class.

    Returns
    -------
    partner : np.ndarray
        int64, shape (m,), DATA indices.
    weight : np.ndarray
        float32, shape (m,), the partner's weight g in [0, 1 - min_weight).
    """
    count = len(base)
    if pool.nearest_other is None:
        partner = rng.integers(0, len(pool.labels), size=count, dtype=np.int64)
    else:
        nearest = pool.nearest_other[class_index]
        partner = nearest[base, rng.integers(0, nearest.shape[1], size=count, dtype=np.int64)]
    weight = rng.random(count, dtype=np.float32) * np.float32(1.0 - pool.settings.min_weight)
    return partner, weight


def mix_codes(base_codes: np.ndarray, partner_codes: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``z_base + g·(z_partner - z_base)`` in float32; shapes (m, Z), (m, Z), (m,) → (m, Z)."""
    return base_codes + weight[:, None] * (partner_codes - base_codes)


def remix_targets(
    class_index: int | np.ndarray,
    partner_class: np.ndarray,
    weight: np.ndarray,
    counts: np.ndarray,
    kappa: float,
    tau: float,
) -> np.ndarray:
    """Remix's soft targets of mixes, float32, shape (m, K), each row summing to 1 (to rounding).

    Parameters
    ----------
    class_index : int or np.ndarray
        The base's class (one for all, or int (m,)).
    partner_class : np.ndarray
        int, shape (m,).
    weight : np.ndarray
        float32, shape (m,): the partner's weight g; the base's is 1 - g.
    counts : np.ndarray
        int, shape (K,): each class's size in the data.
    kappa, tau : float
        The rule's ratio and weight thresholds.
    """
    partner_class = np.asarray(partner_class, dtype=np.int64)
    base_class = np.broadcast_to(np.asarray(class_index, dtype=np.int64), partner_class.shape)
    counts = np.asarray(counts, dtype=np.float64)
    n_base, n_partner = counts[base_class], counts[partner_class]
    partner_weight = np.asarray(weight, dtype=np.float32)
    base_weight = np.float32(1.0) - partner_weight
    keeps_base = (n_partner >= kappa * n_base) & (partner_weight < tau)
    takes_partner = (n_base >= kappa * n_partner) & (base_weight < tau)
    base_weight = np.where(keeps_base, np.float32(1), np.where(takes_partner, np.float32(0), base_weight))
    partner_weight = np.float32(1) - base_weight
    targets = np.zeros((len(partner_class), len(counts)), dtype=np.float32)
    rows = np.arange(len(partner_class))
    np.add.at(targets, (rows, base_class), base_weight)
    np.add.at(targets, (rows, partner_class), partner_weight)
    return targets


def one_hot(class_index: np.ndarray, n_classes: int) -> np.ndarray:
    """float32, shape (m, K): the hard targets of real samples (originals and repeats)."""
    targets = np.zeros((len(class_index), n_classes), dtype=np.float32)
    targets[np.arange(len(class_index)), np.asarray(class_index, dtype=np.int64)] = 1.0
    return targets
