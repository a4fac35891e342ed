"""The DeepSMOTE sampler API: imbalanced-learn contract, layouts, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.readers import read_dataset


@pytest.fixture(scope="module")
def data():
    dataset = read_dataset(fmnist_mini("train"))
    # A small, still imbalanced slice keeps these tests fast.
    keep = np.concatenate([np.flatnonzero(dataset.labels == c)[:n] for c, n in enumerate([60, 30, 12, 6, 3])])
    return dataset.images[keep], dataset.labels[keep]


def test_fit_resample_balances_and_keeps_originals_first(tiny_bundle, data):
    X, y = data
    X_res, y_res = DeepSMOTE(tiny_bundle, random_state=0).fit_resample(X, y)
    assert X_res.dtype == np.uint8 and X_res.shape[1:] == X.shape[1:]
    np.testing.assert_array_equal(X_res[: len(X)], X)
    np.testing.assert_array_equal(y_res[: len(y)], y)
    assert np.bincount(y_res).tolist() == [60] * 5
    assert y_res.dtype == y.dtype


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "flat", "float"])
def test_layouts_and_dtypes_are_kept(tiny_bundle, data, layout):
    X, y = data
    reference, _ = DeepSMOTE(tiny_bundle, random_state=1).fit_resample(X, y)
    X_in = {
        "nhwc": X[..., None],
        "nchw": X[:, None],
        "flat": X.reshape(len(X), -1),
        "float": X.astype(np.float32) / 255,
    }[layout]
    X_res, _ = DeepSMOTE(tiny_bundle, random_state=1).fit_resample(X_in, y)
    assert X_res.shape[1:] == X_in.shape[1:] and X_res.dtype == X_in.dtype
    if layout == "float":
        # Float pixels in 0..1 reach the model as 2x - 1 and come back unrounded: within half a
        # uint8 level (plus float rounding) of the uint8 path's images.
        assert X_res.min() >= 0 and X_res.max() <= 1
        np.testing.assert_array_equal(X_res[: len(X)], X_in)
        assert np.abs(X_res.reshape(reference.shape) * 255.0 - reference).max() <= 0.51
    else:
        np.testing.assert_array_equal(X_res.reshape(reference.shape), reference)


def test_same_seed_same_bytes_across_batch_sizes_and_threads(tiny_bundle, data):
    X, y = data
    outputs = [
        DeepSMOTE(tiny_bundle, random_state=7, batch_size=b, n_threads=t, shard_size=40).fit_resample(X, y)[0]
        for b, t in [(1, 1), (7, 2), (256, 1), (256, 2)]
    ]
    for other in outputs[1:]:
        assert other.tobytes() == outputs[0].tobytes()
    different = DeepSMOTE(tiny_bundle, random_state=8, shard_size=40).fit_resample(X, y)[0]
    assert different.tobytes() != outputs[0].tobytes()


def test_streaming_yields_the_same_samples(tiny_bundle, data):
    X, y = data
    sampler = DeepSMOTE(tiny_bundle, random_state=3, shard_size=25)
    batches = list(sampler.iter_synthetic(X, y))
    assert max(len(b[0]) for b in batches) == 25
    X_res, y_res = DeepSMOTE(tiny_bundle, random_state=3, shard_size=25).fit_resample(X, y)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), X_res[len(X) :])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y_res[len(y) :])


def test_fitted_attributes(tiny_bundle, data):
    X, y = data
    sampler = DeepSMOTE(tiny_bundle, sampling_strategy="minority", random_state=0).fit(X, y)
    assert sampler.sampling_strategy_ == {4: 57}
    assert sampler.provider_ == "CPUExecutionProvider"
    assert sampler.classes_.tolist() == [0, 1, 2, 3, 4]


def test_small_class_uses_fewer_neighbours_with_warning(tiny_bundle, data):
    X, y = data
    with pytest.warns(UserWarning, match="class '4' has 3 samples: using 2 neighbours"):
        DeepSMOTE(tiny_bundle, random_state=0).fit(X, y)


@pytest.mark.parametrize(
    ("kwargs", "mangle", "match"),
    [
        ({"k_neighbors": 0}, None, "k_neighbors must be a positive integer"),
        ({"batch_size": -1}, None, "batch_size must be a positive integer"),
        ({"random_state": -3}, None, "random_state must be"),
        ({}, lambda X, y: (X[:, :20], y), "X has shape"),
        ({}, lambda X, y: (X, y[:-1]), "y must have shape"),
        ({}, lambda X, y: (X.astype(np.float32), y), "must lie in \\[0, 1\\]"),
        ({}, lambda X, y: (X.astype(str), y), "integer \\(0..255\\) or float"),
        ({}, lambda X, y: (np.concatenate([X, X[:1]]), np.append(y, 9)), "class '9' has 1 sample"),
        ({"sampling_strategy": {7: 10}}, None, "not in the data"),
    ],
)
def test_bad_input(tiny_bundle, data, kwargs, mangle, match):
    X, y = data
    if mangle is not None:
        X, y = mangle(X, y)
    with pytest.raises(DeepSMOTEError, match=match) as info:
        DeepSMOTE(tiny_bundle, **{"random_state": 0, **kwargs}).fit_resample(X, y)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)  # as scikit-learn and imbalanced-learn raise
