"""DeepSMOTE as an imbalanced-learn sampler: clone, GridSearchCV in a Pipeline, seeds, pandas,
ValueErrors, and imbalanced-learn's own sampler checks where they apply to an image sampler."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, InvalidInputError, read_dataset
from imblearn.utils import estimator_checks
from sklearn.base import clone

GOLDEN_BUNDLE = Path(__file__).resolve().parent / "data" / "golden" / "bundle"


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    """Three classes of 40, 20 and 10 flattened images, floats in [0, 1]."""
    data = read_dataset(fmnist_mini())
    rows = np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in ((0, 40), (1, 20), (2, 10))])
    return data.images[rows].reshape(len(rows), -1) / 255.0, data.labels[rows]


def test_clone_gives_an_unfitted_equal_copy():
    sampler = DeepSMOTE(GOLDEN_BUNDLE, k_neighbors=3, random_state=7)
    copy = clone(sampler)
    assert copy is not sampler and copy.get_params() == sampler.get_params()
    assert set(copy.get_params()) == {
        "bundle",
        "sampling_strategy",
        "k_neighbors",
        "random_state",
        "provider",
        "batch_size",
        "n_threads",
        "shard_size",
        "precision",
        "sampler",
        "filter_threshold",
        "max_draw_ratio",
        "synthetic_share",
        "remix_min_weight",
        "remix_kappa",
        "remix_tau",
        "remix_partner",
        "remix_base",
    }
    assert copy.set_params(k_neighbors=4) is copy and copy.k_neighbors == 4 and sampler.k_neighbors == 3
    with pytest.raises(ValueError, match="invalid parameter 'k'"):
        copy.set_params(k=4)
    with pytest.raises(TypeError):
        DeepSMOTE(GOLDEN_BUNDLE, "auto")  # everything but the bundle is keyword-only


def test_grid_search_over_k_in_an_imblearn_pipeline(small):
    from imblearn.pipeline import Pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    X, y = small
    pipeline = Pipeline(
        [("deepsmote", DeepSMOTE(GOLDEN_BUNDLE, random_state=0)), ("clf", LogisticRegression(max_iter=200))]
    )
    search = GridSearchCV(pipeline, {"deepsmote__k_neighbors": [2, 4]}, cv=2, scoring="balanced_accuracy")
    search.fit(X, y)
    # The reference: the same folds (StratifiedKFold, unshuffled) resampled by hand with each k.
    expected, resampled = [], {}
    for k in (2, 4):
        scores = []
        for train, test in StratifiedKFold(n_splits=2).split(X, y):
            X_res, y_res = DeepSMOTE(GOLDEN_BUNDLE, random_state=0, k_neighbors=k).fit_resample(X[train], y[train])
            resampled.setdefault(k, X_res)
            predicted = LogisticRegression(max_iter=200).fit(X_res, y_res).predict(X[test])
            scores.append(balanced_accuracy_score(y[test], predicted))
        expected.append(np.mean(scores))
    assert not np.array_equal(resampled[2], resampled[4])  # k reaches the images, so the scores can tell
    assert search.cv_results_["mean_test_score"].tolist() == pytest.approx(expected, rel=1e-12)
    best = (2, 4)[int(np.argmax(expected))]
    assert search.best_params_ == {"deepsmote__k_neighbors": best}
    assert search.best_estimator_.named_steps["deepsmote"].k_neighbors == best


@pytest.mark.parametrize("make_state", [int, np.random.RandomState, np.random.default_rng])
def test_random_state_takes_int_randomstate_and_generator(small, make_state):
    X, y = small
    first = DeepSMOTE(GOLDEN_BUNDLE, random_state=make_state(5)).fit_resample(X, y)
    again = DeepSMOTE(GOLDEN_BUNDLE, random_state=make_state(5)).fit_resample(X, y)
    assert np.array_equal(first[0], again[0])
    other = DeepSMOTE(GOLDEN_BUNDLE, random_state=make_state(6)).fit_resample(X, y)
    assert not np.array_equal(first[0], other[0])


def test_bad_random_state_is_a_value_error():
    with pytest.raises(ValueError, match="random_state must be"):
        DeepSMOTE(GOLDEN_BUNDLE, random_state="seed").fit_resample(np.zeros((4, 784)), np.array([0, 0, 1, 1]))


def test_pandas_in_pandas_out_with_a_categorical_target(small):
    X, y = small
    names = np.asarray(["shirt", "coat", "bag"])[y]
    X_df = pd.DataFrame(X, columns=[f"p{i}" for i in range(X.shape[1])])
    y_s = pd.Series(pd.Categorical(names, categories=["shirt", "coat", "bag"]), name="kind")
    X_res, y_res = DeepSMOTE(GOLDEN_BUNDLE, random_state=0).fit_resample(X_df, y_s)
    assert isinstance(X_res, pd.DataFrame) and list(X_res.columns) == list(X_df.columns)
    assert isinstance(y_res, pd.Series) and y_res.name == "kind" and y_res.dtype == y_s.dtype
    assert Counter(y_res) == {"shirt": 40, "coat": 40, "bag": 40}
    X_np, _ = DeepSMOTE(GOLDEN_BUNDLE, random_state=0).fit_resample(X, names)
    assert np.array_equal(X_res.to_numpy(), X_np)


def test_parameter_errors_are_value_errors():
    assert issubclass(InvalidInputError, ValueError)
    with pytest.raises(ValueError, match="bundle` is required"):
        DeepSMOTE().fit_resample(np.zeros((4, 784)), np.array([0, 0, 1, 1]))


def test_n_features_in_is_the_values_per_sample_in_any_layout(small):
    X, y = small
    sampler = DeepSMOTE(GOLDEN_BUNDLE, random_state=0)
    assert not hasattr(sampler, "n_features_in_")
    for X_in in (X, X.reshape(-1, 28, 28), X.reshape(-1, 1, 28, 28)):
        assert sampler.fit(X_in, y).n_features_in_ == 784
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(784)])
    assert list(sampler.fit(frame, y).feature_names_in_) == list(frame.columns)
    assert not hasattr(sampler.fit(X, y), "feature_names_in_")


def test_sparse_input_is_refused_with_a_value_error(small):
    sparse = pytest.importorskip("scipy.sparse")
    X, y = small
    for matrix in (sparse.csr_matrix(X), sparse.csr_array(X)):
        with pytest.raises(ValueError, match=r"sparse .*pass X.toarray"):
            DeepSMOTE(GOLDEN_BUNDLE, random_state=0).fit_resample(matrix, y)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"provider": "tpu"}, "provider must be one of"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"bundle": 123}, "`bundle` must be a path"),
        ({"bundle": Path(__file__)}, "not a bundle directory"),
        ({"k_neighbors": 0}, "k_neighbors must be a positive integer"),
        ({"sampler": "tomek"}, "`sampler` must be one of"),
    ],
)
def test_every_bad_parameter_is_a_value_error(small, params, match):
    X, y = small
    with pytest.raises(ValueError, match=match):
        DeepSMOTE(**{"bundle": GOLDEN_BUNDLE, **params}).fit_resample(X, y)


def test_a_missing_bundle_is_a_file_not_found_error(small, tmp_path):
    X, y = small
    with pytest.raises(FileNotFoundError, match="nothing is there"):
        DeepSMOTE(tmp_path / "nothing.bundle").fit_resample(X, y)


# imbalanced-learn's sampler checks draw 2-feature tabular data, which an image sampler cannot take:
# the checks that draw from sample_dataset_generator run on images instead; those that test the
# target run as they are (the target is checked before X).
APPLICABLE = [
    "check_target_type",
    "check_samplers_one_label",
    "check_samplers_list",
    "check_samplers_preserve_dtype",
    "check_samplers_pandas",
    "check_samplers_2d_target",
    "check_samplers_multiclass_ova",
    "check_samplers_sample_indices",
]


@pytest.mark.parametrize("check", APPLICABLE)
def test_imblearn_sampler_checks(check, small, monkeypatch):
    X, y = small
    monkeypatch.setattr(estimator_checks, "sample_dataset_generator", lambda: (X, y))
    getattr(estimator_checks, check)("DeepSMOTE", DeepSMOTE(GOLDEN_BUNDLE, random_state=0))


def test_oversampling_checks_that_imblearn_skips_for_samplers_outside_its_class_tree(small):
    # check_samplers_fit_resample and ..._sampling_strategy_fit_resample assert only for
    # imblearn's own base classes; their over-sampler assertions, here.
    X, y = small
    sampler = DeepSMOTE(GOLDEN_BUNDLE, random_state=0)
    _, y_res = sampler.fit_resample(X, y)
    assert hasattr(sampler, "sampling_strategy_") and all(n >= 40 for n in Counter(y_res).values())
    _, y_res = sampler.set_params(sampling_strategy={2: 35, 0: 40}).fit_resample(X, y)
    assert Counter(y_res) == {0: 40, 1: 20, 2: 35}
