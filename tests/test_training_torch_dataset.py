"""The IterableDataset adapter: every sample once, the same bytes, for any number of workers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import read_dataset

torch = pytest.importorskip("torch")
from deepsmote.training.torch_dataset import DeepSMOTEStream  # noqa: E402
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
