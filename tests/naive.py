"""Slow, obviously correct numpy references for the kernels in `deepsmote.kernels` (both paths).

Each reference does the whole computation in the plainest way (full distance matrix, full stable
sort, fancy indexing) so that a kernel test compares an optimised kernel with something that can
be checked by eye.
"""

from __future__ import annotations

import numpy as np
from deepsmote.runtime.plan import RealSlice, Shard, Unit


def sq_distances_diff(codes: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances Σ (a − b)², in float64, by differences.

    Exact for integer-valued codes of modest size, and free of the cancellation of the GEMM form.

    Parameters
    ----------
    codes : np.ndarray
        Shape (n, d).

    Returns
    -------
    np.ndarray
        float64, shape (n, n).
    """
    x = np.asarray(codes, dtype=np.float64)
    return np.stack([((x - row) ** 2).sum(axis=1) for row in x]) if len(x) else np.zeros((0, 0))


def sq_distances_gemm32(codes: np.ndarray) -> np.ndarray:
    """Squared distances ‖a‖² + ‖b‖² − 2a·b in float32, clamped at 0, as the kernel defines them.

    Parameters
    ----------
    codes : np.ndarray
        Shape (n, d).

    Returns
    -------
    np.ndarray
        float32, shape (n, n).
    """
    x = np.asarray(codes, dtype=np.float32)
    sq = (x.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    dots = x @ x.T
    return np.maximum((sq[:, None] + sq[None, :]) - (dots + dots), np.float32(0))


def kneighbors(sq_dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other rows of each row of a distance matrix, ties to the smaller index.

    Parameters
    ----------
    sq_dist : np.ndarray
        Shape (n, n), any float dtype.
    k : int
        Neighbours wanted; ``min(k, n - 1)`` are returned.

    Returns
    -------
    indices : np.ndarray
        int64, shape (n, min(k, n - 1)).
    sq_distances : np.ndarray
        Same dtype as ``sq_dist``, shape (n, min(k, n - 1)).
    """
    n = sq_dist.shape[0]
    k_eff = min(k, n - 1)
    indices = np.empty((n, k_eff), dtype=np.int64)
    for i in range(n):
        # Self is removed by index, then a stable sort of the remaining (increasing) indices by
        # distance leaves equal distances in index order.
        others = np.delete(np.arange(n), i)
        order = np.argsort(sq_dist[i, others], kind="stable")
        indices[i] = others[order[:k_eff]]
    return indices, np.take_along_axis(sq_dist, indices, axis=1)


def sq_distances_cross_diff(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Σ (a − b)² in float64 by differences of each row ``codes[rows[i]]`` against every row: shape (m, n)."""
    return sq_distances_diff(codes)[np.asarray(rows, dtype=np.int64)]


def kneighbors_of(sq_dist: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of each query, its own row ``rows[i]`` excluded, ties to the smaller index.

    Parameters
    ----------
    sq_dist : np.ndarray
        Shape (m, n): query i against every reference row.
    rows : np.ndarray
        Shape (m,): each query's own reference row.
    k : int
        Neighbours wanted; ``min(k, n - 1)`` are returned.

    Returns
    -------
    indices : np.ndarray
        int64, shape (m, min(k, n - 1)).
    sq_distances : np.ndarray
        Same dtype as ``sq_dist``.
    """
    m, n = sq_dist.shape
    k_eff = min(k, n - 1)
    indices = np.empty((m, k_eff), dtype=np.int64)
    for i, own in enumerate(np.asarray(rows).tolist()):
        others = np.delete(np.arange(n), own)
        order = np.argsort(sq_dist[i, others], kind="stable")
        indices[i] = others[order[:k_eff]]
    return indices, np.take_along_axis(sq_dist, indices, axis=1)


def interpolate(
    codes: np.ndarray, neighbors: np.ndarray, base: np.ndarray, slot: np.ndarray, gap: np.ndarray
) -> np.ndarray:
    """SMOTE points ``codes[base] + gap * (codes[nb] - codes[base])`` in float32, shape (m, d)."""
    x = np.asarray(codes, dtype=np.float32)
    nb = np.asarray(neighbors)[base, slot]
    return x[base] + np.asarray(gap, dtype=np.float32)[:, None] * (x[nb] - x[base])


def plan_per_class_eager(new_counts: np.ndarray, real_counts: np.ndarray | None, shard_size: int) -> list[Unit]:
    """The per-class units as a list, one loop per class: the reference for :class:`PerClassPlan`."""
    units = []
    for c, n in enumerate(int(n) for n in new_counts):
        for i, start in enumerate(range(0, n, shard_size)):
            units.append(Unit(f"class-{c:04d}-shard-{i:06d}", synthetic=(Shard(c, i, min(shard_size, n - start)),)))
    if real_counts is not None:
        for c, n in enumerate(int(n) for n in real_counts):
            for i, start in enumerate(range(0, n, shard_size)):
                stop = min(start + shard_size, n)
                units.append(Unit(f"real-class-{c:04d}-shard-{i:06d}", real=(RealSlice(c, start, stop),)))
    return units


def plan_mixed_eager(new_counts: np.ndarray, real_counts: np.ndarray | None, shard_size: int) -> list[Unit]:
    """The mixed units by sorting every sample's key: the reference for :class:`MixedPlan`.

    Memory O(samples): one class index and one key per sample, one stable sort.
    """
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
            # Sample j of the class's sequence is an original where floor((j+1)·r/n) > floor(j·r/n).
            j, n = np.arange(stop), int(totals[c])
            every = (j + 1) * n_real // n > j * n_real // n
            is_real, real_before = every[start:], int(np.count_nonzero(every[:start]))
            if is_real.any():
                originals.append(RealSlice(c, real_before, real_before + int(is_real.sum())))
            if (~is_real).any():
                synthetic.append(Shard(c, t, int((~is_real).sum())))
        taken += counts
        units.append(Unit(f"{t:06d}", synthetic=tuple(synthetic), real=tuple(originals)))
    return units


def manifest_csv_eager(units: list[Unit], entries, classes: tuple[str, ...]) -> bytes:
    """``manifest.csv`` built whole in memory from a list of units: the reference for the streamed one.

    ``entries(unit)`` is the writer's list of (file, key) per sample of the unit.
    """
    import csv
    import io

    text = io.StringIO()
    rows = csv.writer(text, lineterminator="\n")
    rows.writerow(["file", "key", "label", "class", "synthetic"])
    for unit in units:
        labels, synthetic, _, _ = unit.order()
        for (file, key), label, made in zip(entries(unit), labels.tolist(), synthetic.tolist(), strict=True):
            rows.writerow([file, key, label, classes[label], int(made)])
    return text.getvalue().encode()


def other_class_counts(codes: np.ndarray, labels: np.ndarray, c: int, m: int) -> tuple[np.ndarray, int]:
    """For each sample of class c (in DATA order), how many of its m nearest samples of any class (itself
    excluded, ties to the smaller DATA index) are of another class; and the m used, ``min(m, N - 1)``."""
    rows = np.flatnonzero(labels == c)
    indices, _ = kneighbors_of(sq_distances_cross_diff(codes, rows), rows, m)
    return (labels[indices] != c).sum(axis=1), indices.shape[1]


def borderline_danger(codes: np.ndarray, labels: np.ndarray, c: int, m: int = 10) -> np.ndarray:
    """Borderline-SMOTE-1's danger mask of class c, as imbalanced-learn writes it: m/2 <= m' < m."""
    n_other, m_eff = other_class_counts(codes, labels, c, m)
    return (n_other >= m_eff / 2) & (n_other < m_eff)


def adasyn_ratio(codes: np.ndarray, labels: np.ndarray, c: int, k: int) -> np.ndarray:
    """ADASYN's r_i of class c: the share of other classes among each sample's k nearest; float64."""
    n_other, k_eff = other_class_counts(codes, labels, c, k)
    return n_other / k_eff


def weighted_draw(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """For each u in [0, 1), the first index i with u < (w_0 + ... + w_i) / Σ w: an inverse CDF by comparison."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf = cdf / cdf[-1]
    return np.array([int(np.argmax(v < cdf)) for v in u], dtype=np.int64)


def winograd_input_tiles(x: np.ndarray, bt: np.ndarray, step: int, pad: int, out_hw: tuple[int, int]) -> np.ndarray:
    """``B^T d B`` of every tile of ``x`` (N, H, W, C) padded by ``pad``, in float64: (n*n, N*T*U, C).

    Tile (image, t, u) is the n x n window at row ``t * step``, column ``u * step`` of the padded map.
    """
    n = bt.shape[0]
    tiles_h, tiles_w = -(-out_hw[0] // step), -(-out_hw[1] // step)
    rows, cols = (tiles_h - 1) * step + n, (tiles_w - 1) * step + n
    padded = np.zeros((x.shape[0], max(rows, x.shape[1] + pad), max(cols, x.shape[2] + pad), x.shape[3]))
    padded[:, pad : pad + x.shape[1], pad : pad + x.shape[2]] = x
    out = []
    for image in padded:
        for t in range(tiles_h):
            for u in range(tiles_w):
                d = image[t * step : t * step + n, u * step : u * step + n]
                out.append(np.einsum("pa,abc,sb->psc", bt.astype(np.float64), d, bt.astype(np.float64)))
    return np.stack(out, axis=2).reshape(n * n, len(out), x.shape[3])


def winograd_output_tiles(products: np.ndarray, at: np.ndarray, n_images: int, out_hw: tuple[int, int]) -> np.ndarray:
    """``A^T M A`` of every tile of ``products`` (n*n, N*T*U, K) laid out and cropped, float64 (N, Ho, Wo, K)."""
    m, n = at.shape
    tiles_h, tiles_w = -(-out_hw[0] // m), -(-out_hw[1] // m)
    full = np.zeros((n_images, tiles_h * m, tiles_w * m, products.shape[2]))
    tiles = products.astype(np.float64).reshape(n, n, n_images, tiles_h, tiles_w, -1)
    for image in range(n_images):
        for t in range(tiles_h):
            for u in range(tiles_w):
                block = np.einsum(
                    "ip,psk,js->ijk", at.astype(np.float64), tiles[:, :, image, t, u], at.astype(np.float64)
                )
                full[image, t * m : (t + 1) * m, u * m : (u + 1) * m] = block
    return full[:, : out_hw[0], : out_hw[1]]


def remix_target(base_class: int, partner_class: int, partner_weight: float, counts, kappa: float, tau: float, k: int):
    """Remix's label of one mix (Chou et al. 2020, their rule written out case by case): a list of K floats.

    The base keeps its class alone when the partner's class is at least κ times larger and its
    weight below τ; the partner's class is taken alone in the mirror case; otherwise the label is
    mixed like the inputs.
    """
    n_b, n_p = counts[base_class], counts[partner_class]
    lam = 1.0 - float(np.float32(partner_weight))
    target = [0.0] * k
    if n_p >= kappa * n_b and partner_weight < tau:
        target[base_class] = 1.0
    elif n_b >= kappa * n_p and lam < tau:
        target[partner_class] = 1.0
    else:
        target[base_class] += lam
        target[partner_class] += 1.0 - lam
    return target


def remix_mix(base_codes: np.ndarray, partner_codes: np.ndarray, partner_weight: np.ndarray) -> np.ndarray:
    """Latent Remix's codes, ``z_b + g·(z_p − z_b)`` in float32, one row at a time."""
    out = np.empty_like(np.asarray(base_codes, dtype=np.float32))
    for i in range(len(out)):
        zb = np.float32(base_codes[i])
        out[i] = zb + np.float32(partner_weight[i]) * (np.float32(partner_codes[i]) - zb)
    return out
