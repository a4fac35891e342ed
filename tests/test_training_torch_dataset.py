"""The IterableDataset adapter: every sample once, the same bytes, for any number of workers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import read_dataset

torch = pytest.importorskip("torch")
from deepsmote.training.torch_dataset import DeepSMOTEStream, to_tensor  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

GOLDEN_BUNDLE = Path(__file__).resolve().parent / "data" / "golden" / "bundle"


@pytest.fixture(scope="module")
def stream() -> DeepSMOTEStream:
    data = read_dataset(fmnist_mini())
    rows = np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in ((0, 40), (1, 12), (2, 6))])
    return DeepSMOTEStream(GOLDEN_BUNDLE, data.images[rows], data.labels[rows], shard_size=16, include_originals=True)


def samples(stream: DeepSMOTEStream, workers: int) -> list[tuple[bytes, int]]:
    loader = DataLoader(stream, batch_size=8, num_workers=workers)
    return [
        (image.numpy().tobytes(), int(label))
        for images, labels in loader
        for image, label in zip(images, labels, strict=True)
    ]


def test_the_stream_is_the_balanced_set(stream):
    got = samples(stream, 0)
    assert len(got) == len(stream) == 120
    assert Counter(label for _, label in got) == {0: 40, 1: 40, 2: 40}


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_same_samples_for_any_number_of_workers(stream, workers):
    single = samples(stream, 0)
    parallel = samples(stream, workers)
    assert sorted(parallel) == sorted(single)
    if workers == 1:
        assert parallel == single


def test_the_stream_takes_the_latent_sampler():
    # The stream's synthetic samples are the sampler's: the same images as DeepSMOTE's, per class.
    from deepsmote.runtime import DeepSMOTE

    data = read_dataset(fmnist_mini())
    strategy = {1: 230, 6: 40}
    stream = DeepSMOTEStream(
        GOLDEN_BUNDLE, data.images, data.labels, sampling_strategy=strategy, seed=2, sampler="borderline"
    )
    got = sorted(samples(stream, 0))
    X_res, y_res = DeepSMOTE(
        GOLDEN_BUNDLE, sampling_strategy=strategy, random_state=2, sampler="borderline"
    ).fit_resample(data.images, data.labels)
    new = slice(len(data.images), None)
    expected = sorted(
        (to_tensor(image).numpy().tobytes(), int(y)) for image, y in zip(X_res[new], y_res[new], strict=True)
    )
    assert got == expected
