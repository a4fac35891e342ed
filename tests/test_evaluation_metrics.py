"""ACSA, macro GM, macro F1 and per-class recall against sklearn.metrics and imbalanced-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from deepsmote.evaluation.metrics import scores

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="the references need the eval extra")
imblearn_metrics = pytest.importorskip("imblearn.metrics", reason="the references need the eval extra")


def reference(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray | None) -> dict[str, object]:
    with warnings.catch_warnings():
        # sklearn warns on zero divisions, which both sides count as 0.
        warnings.simplefilter("ignore")
        return {
            "acsa": sklearn_metrics.balanced_accuracy_score(y_true, y_pred),
            "gm": imblearn_metrics.geometric_mean_score(y_true, y_pred, labels=labels, average="macro"),
            "f1": sklearn_metrics.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
            "recall": sklearn_metrics.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0),
        }


def assert_matches(y_true, y_pred, labels=None) -> None:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    got = scores(y_true, y_pred, None if labels is None else np.asarray(labels))
    want = reference(y_true, y_pred, labels)
    assert got.acsa == pytest.approx(want["acsa"], abs=1e-12)
    assert got.gm == pytest.approx(want["gm"], abs=1e-12)
    assert got.f1 == pytest.approx(want["f1"], abs=1e-12)
    np.testing.assert_allclose(got.recall, want["recall"], atol=1e-12)


CASES = {
    "perfect": ([0, 1, 2, 2], [0, 1, 2, 2]),
    "all wrong": ([0, 0, 1, 1], [1, 1, 0, 0]),
    "one class never predicted": ([0, 0, 0, 1, 1, 2, 2, 2], [0, 0, 1, 1, 1, 0, 1, 0]),
    "imbalanced, minority missed": ([0] * 9 + [1] * 3 + [2], [0] * 8 + [1] + [1, 0, 0] + [0]),
    "a predicted class that is never true": ([0, 0, 1, 1], [0, 2, 1, 2]),
    "single class": ([3, 3, 3], [3, 3, 3]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hand_made_cases_match_sklearn_and_imblearn(case):
    assert_matches(*CASES[case])


def test_string_labels_and_an_explicit_label_order():
    y_true = np.array(["cat", "dog", "dog", "bird", "cat", "bird"])
    y_pred = np.array(["cat", "cat", "dog", "cat", "cat", "bird"])
    assert_matches(y_true, y_pred, ["dog", "cat", "bird"])
    assert scores(y_true, y_pred, np.array(["dog", "cat", "bird"])).recall == (0.5, 1.0, 0.5)


def test_a_listed_class_never_true_nor_predicted_counts_as_sklearn_counts_it():
    # Class 3 is in `labels` only: recall and F1 0, specificity 1, in GM and F1 alike.
    assert_matches([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 0, 1], [0, 1, 2, 3])


def test_gm_is_the_root_of_mean_recall_times_mean_specificity():
    # Recalls 1, 1/2, 0; specificities 2/4, 3/4, 4/4 (class 2 is never predicted).
    got = scores(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 0, 1, 0, 1]))
    assert got.acsa == pytest.approx(0.5)
    assert got.gm == pytest.approx(np.sqrt(0.5 * 0.75))
    assert got.recall == (1.0, 0.5, 0.0)


def test_random_predictions_match():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n_classes = int(rng.integers(2, 7))
        y_true = rng.integers(0, n_classes, size=int(rng.integers(5, 60)))
        # Mostly right, sometimes one class is never predicted.
        y_pred = np.where(rng.random(len(y_true)) < 0.6, y_true, rng.integers(0, n_classes, len(y_true)))
        y_pred[y_pred == n_classes - 1] = 0
        assert_matches(y_true, y_pred, list(range(n_classes)))
        assert_matches(y_true, y_pred)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one length"):
        scores(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="empty"):
        scores(np.array([]), np.array([]))
