"""Pixel-space Remix: latent Remix's draws and label rule applied to the images themselves.

The baseline that isolates what DeepSMOTE's decoder adds to latent Remix: the same partners, the
same base weights and the same soft targets (:mod:`deepsmote.runtime.remix`), with the mix taken
of the flattened uint8 pixels (in float32, rounded back to uint8) instead of the codes. Each class
is filled up to the majority count; class c's draws of epoch e come from
``SeedSequence([seed, c, e])``.
"""

from __future__ import annotations

import numpy as np
from deepsmote.runtime.remix import RemixSettings, draw_partners, mix_codes, one_hot, remix_pool, remix_targets


def pixel_remix(
    images: np.ndarray, labels: np.ndarray, seed: int, settings: RemixSettings, epoch: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The balanced set: the originals, then each smaller class's pixel mixes.

    Parameters
    ----------
    images : np.ndarray
        uint8, shape (N, H, W) or (N, H, W, C).
    labels : np.ndarray
        int, shape (N,), class indices 0..K-1 (every class present).
    seed : int
    settings : RemixSettings
        Only ``partner='uniform'`` (a pixel-space nearest-other search is not what is compared).
    epoch : int
        Which epoch's draws.

    Returns
    -------
    images : np.ndarray
        uint8, shape (N + M, *images.shape[1:]).
    labels : np.ndarray
        int64, shape (N + M,): the base's class.
    targets : np.ndarray
        float32, shape (N + M, K), Remix's soft targets (one-hot for the originals).
    """
    if settings.partner != "uniform":
        raise ValueError("pixel-space Remix draws partners uniformly ('uniform')")
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1
    flat = images.reshape(len(images), -1).astype(np.float32)
    pool = remix_pool(flat, labels, n_classes, np.zeros(n_classes, dtype=bool), 0, settings)
    most = int(pool.counts.max())
    parts, classes, targets = [images], [labels], [one_hot(labels, n_classes)]
    for c in range(n_classes):
        gap = most - int(pool.counts[c])
        if gap == 0:
            continue
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng(np.random.SeedSequence([seed, c, epoch]))
        base = rng.integers(0, len(members), size=gap, dtype=np.int64)
        partner, weight = draw_partners(rng, pool, c, base)
        mixed = mix_codes(flat[members[base]], flat[partner], weight)
        parts.append(np.rint(np.clip(mixed, 0, 255)).astype(np.uint8).reshape(gap, *images.shape[1:]))
        classes.append(np.full(gap, c, dtype=np.int64))
        targets.append(remix_targets(c, labels[partner], weight, pool.counts, settings.kappa, settings.tau))
    return np.concatenate(parts), np.concatenate(classes), np.concatenate(targets)
