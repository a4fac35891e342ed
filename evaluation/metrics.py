"""Class-balanced classification metrics of the paper's protocol, in numpy only.

Each follows the library the paper's figures are comparable with, zero divisions counting as 0:

- ACSA, average class-specific accuracy: the mean per-class recall over the classes present in
  ``y_true``, as :func:`sklearn.metrics.balanced_accuracy_score`;
- macro GM: imbalanced-learn's ``geometric_mean_score(average='macro')``, which is
  ``sqrt(mean_c recall_c * mean_c specificity_c)`` (the means are taken first, then the root;
  not the mean of per-class roots);
- macro F1: :func:`sklearn.metrics.f1_score` with ``average='macro'``;
- per-class recall: :func:`sklearn.metrics.recall_score` with ``average=None``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """The protocol's metrics for one set of predictions.

    Attributes
    ----------
    acsa, gm, f1 : float
        ACSA, macro geometric mean and macro F1, in [0, 1].
    recall : tuple of float
        Recall of each class in ``labels`` order.
    """

    acsa: float
    gm: float
    f1: float
    recall: tuple[float, ...]


def _positions(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Index of each value in ``labels``, or -1 for a value outside it."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    found = np.searchsorted(sorted_labels, values).clip(max=len(labels) - 1)
    return np.where(sorted_labels[found] == values, order[found], -1)


def _counts(positions: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(positions[positions >= 0], minlength=n).astype(np.float64)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with 0 where the denominator is 0 (sklearn's zero_division=0)."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def scores(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray | None = None) -> Scores:
    """ACSA, macro GM, macro F1 and per-class recall.

    Parameters
    ----------
    y_true, y_pred : np.ndarray
        True and predicted classes, shape (N,), N >= 1.
    labels : np.ndarray, optional
        The classes to score, in report order; by default the sorted union of ``y_true`` and
        ``y_pred`` (sklearn's default). A class that is never true and never predicted still
        counts in GM and F1 (recall and F1 0, specificity 1), as in sklearn and imbalanced-learn.

    Returns
    -------
    Scores
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must be 1-d of one length, got {y_true.shape} and {y_pred.shape}")
    if len(y_true) == 0:
        raise ValueError("y_true is empty")
    labels = np.union1d(y_true, y_pred) if labels is None else np.asarray(labels)
    true_at, pred_at = _positions(y_true, labels), _positions(y_pred, labels)
    tp = _counts(np.where(true_at == pred_at, true_at, -1), len(labels))
    true_sum, pred_sum = _counts(true_at, len(labels)), _counts(pred_at, len(labels))
    # Samples whose true or predicted class is outside ``labels`` still count as negatives.
    tn = len(y_true) - (true_sum + pred_sum - tp)
    recall = _divide(tp, true_sum)
    specificity = _divide(tn, tn + pred_sum - tp)
    # 2PR / (P + R) written without P and R, so an undefined precision gives 0 as in sklearn.
    f1 = _divide(2 * tp, true_sum + pred_sum)
    present = np.isin(labels, y_true)
    acsa = float(recall[present].mean()) if present.any() else 0.0
    gm = float(np.sqrt(recall.mean() * specificity.mean()))
    return Scores(acsa=acsa, gm=gm, f1=float(f1.mean()), recall=tuple(float(r) for r in recall))
