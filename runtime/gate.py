"""The quality gate: keep the synthetic candidates that the bundle's classifier gives their own class.

For a shard of class ``c`` that needs ``m`` synthetic samples, candidates are drawn in rounds of
``m``: round 0 is exactly the draws of an ungated job (``SeedSequence([seed, c, s])``), round
``r > 0`` is seeded by ``SeedSequence([seed, c, s, r])`` (:func:`.plan.draw_shard`). Each round is
interpolated, decoded, and classified in calls of :data:`CLASSIFY_BATCH` images whatever the
caller's batch size, so which candidates pass depends on the job's settings only. Those with
probability ``>= filter_threshold`` of class ``c`` are kept in draw order until there are ``m``.
After ``max_draw_ratio`` rounds (at most that many candidates per sample kept) a shard still short
is an error naming the class, its acceptance rate and the fix: never an endless loop.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from deepsmote.kernels import interpolate

from .bundle import Models
from .errors import DeepSMOTEError, InvalidInputError
from .plan import Draws, Shard, draw_shard

if TYPE_CHECKING:
    # synthesis imports this module: ClassLatents is named for the annotations only.
    from .synthesis import ClassLatents

# Images per classifier call, fixed so that the probabilities do not depend on the batch size.
CLASSIFY_BATCH = 256
# Rounds of candidates a shard may draw before its class is given up on.
DEFAULT_MAX_DRAW_RATIO = 50


class GateError(DeepSMOTEError):
    """A class whose candidates the classifier accepts too rarely to fill its count."""


@dataclass(frozen=True)
class Gated:
    """A shard's kept candidates.

    Attributes
    ----------
    draws : Draws
        The kept candidates' base, slot and gap, in draw order; shape (m,) each.
    images : np.ndarray
        float32, shape (m, C, H, W), their decoded images in [-1, 1].
    drawn : int
        Candidates drawn (and classified) to find them.
    """

    draws: Draws
    images: np.ndarray
    drawn: int


def check_threshold(filter_threshold: float | None) -> float | None:
    """``filter_threshold`` as a float in (0, 1], or None for no gate.

    Raises
    ------
    InvalidInputError
        For a value outside (0, 1] or not a number.
    """
    if filter_threshold is None:
        return None
    if isinstance(filter_threshold, bool) or not isinstance(filter_threshold, int | float | np.floating | np.integer):
        raise InvalidInputError(f"`filter_threshold` must be a probability in (0, 1], got {filter_threshold!r}")
    if not 0.0 < float(filter_threshold) <= 1.0:
        raise InvalidInputError(f"`filter_threshold` must lie in (0, 1], got {filter_threshold!r}")
    return float(filter_threshold)


MAX_DRAW_RATIO = 1_000_000


def check_ratio(max_draw_ratio: int) -> int:
    """``max_draw_ratio`` as a positive integer.

    Raises
    ------
    InvalidInputError
        For anything else.
    """
    if isinstance(max_draw_ratio, bool) or not isinstance(max_draw_ratio, int | np.integer) or max_draw_ratio < 1:
        raise InvalidInputError(f"`max_draw_ratio` must be a positive integer, got {max_draw_ratio!r}")
    if max_draw_ratio > MAX_DRAW_RATIO:
        # Rounds times a shard's samples must stay a count numpy can hold.
        raise InvalidInputError(f"`max_draw_ratio` must be at most {MAX_DRAW_RATIO}, got {str(max_draw_ratio)[:40]}")
    return int(max_draw_ratio)


def gate_shard(
    models: Models,
    latents: ClassLatents,
    seed: int,
    shard: Shard,
    *,
    threshold: float,
    max_draw_ratio: int,
    batch_size: int | None,
    column: int,
    class_name: str,
) -> Gated:
    """Draw, decode and classify rounds of candidates until ``shard.synthetic_count`` pass.

    Parameters
    ----------
    models : Models
        With the classifier session open.
    latents : ClassLatents
        The class's codes (n, Z), their neighbours and the latent sampler's base weights (n,), if any.
    seed : int
    shard : Shard
    threshold : float
        The least probability of its own class a candidate needs.
    max_draw_ratio : int
        Rounds at most, each of ``shard.synthetic_count`` candidates.
    batch_size : int or None
        Codes per decoder call (does not change the images).
    column : int
        The classifier's output for the shard's class.
    class_name : str
        For the message.

    Raises
    ------
    GateError
        When the rounds run out before enough candidates pass.
    """
    need = shard.synthetic_count
    kept: list[tuple[Draws, np.ndarray]] = [
        (
            Draws(*(np.zeros(0, t) for t in (np.int64, np.int64, np.float32))),
            np.zeros((0, *models.bundle.image_shape), np.float32),
        )
    ]
    accepted = drawn = 0
    for round_index in range(max_draw_ratio):
        if accepted >= need:
            break
        draws = draw_shard(seed, shard, len(latents.codes), latents.n_neighbors, latents.weights, round_index)
        neighbors = latents.neighbors_of(draws.base)
        images = models.decode(interpolate(latents.codes, neighbors, draws.base, draws.slot, draws.gap), batch_size)
        passed = models.classify(images, CLASSIFY_BATCH)[:, column] >= threshold
        drawn += need
        take = np.flatnonzero(passed)[: need - accepted]
        kept.append((Draws(draws.base[take], draws.slot[take], draws.gap[take]), images[take]))
        accepted += len(take)
    if accepted < need:
        rate = sum(int(d.base.size) for d, _ in kept) / max(drawn, 1)
        raise GateError(
            f"class '{class_name}': the classifier gave only {rate:.2%} of {drawn} candidates probability "
            f">= {threshold:g} of their class, too few to make {need} within {max_draw_ratio} draws per sample; "
            "lower `filter_threshold` (or raise `max_draw_ratio`)"
        )
    draws = Draws(*(np.concatenate([getattr(d, f) for d, _ in kept]) for f in ("base", "slot", "gap")))
    return Gated(draws, np.concatenate([images for _, images in kept]), drawn)
