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


def test_the_stream_spreads_the_originals_over_its_units_and_takes_torch_layout():
    data = read_dataset(fmnist_mini())
    rows = np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in ((0, 40), (1, 12), (2, 6))])
    images, labels = data.images[rows], data.labels[rows]
    nhw = DeepSMOTEStream(GOLDEN_BUNDLE, images, labels, shard_size=16)
    nchw = DeepSMOTEStream(GOLDEN_BUNDLE, images[:, None], labels, shard_size=16)
    assert samples(nchw, 0) == samples(nhw, 0)  # the same (C, H, W) tensors from either layout
    real = {image.tobytes() for image in images}
    units = [nhw.synthesizer.samples(unit) for unit in nhw.units]
    shares = [np.mean([image.tobytes() in real for image in unit.images]) for unit in units[:-1]]
    # 58 originals of 120: every full unit holds about that share, none all real
    assert len(shares) == 7 and max(abs(share - 58 / 120) for share in shares) <= 0.1  # 1.6 of 16
    raw = DeepSMOTEStream(GOLDEN_BUNDLE, images[:, None], labels, shard_size=16, transform=lambda image: image.shape)
    assert {shape for shape, _ in raw} == {(1, 28, 28)}  # the transform sees the layout given


def test_the_stream_takes_the_latent_sampler():
    # The stream's synthetic samples are the sampler's: the same images as DeepSMOTE's, per class.
    from deepsmote.runtime import DeepSMOTE

    data = read_dataset(fmnist_mini())
    strategy = {1: 230, 6: 40}
    stream = DeepSMOTEStream(
        GOLDEN_BUNDLE,
        data.images,
        data.labels,
        sampling_strategy=strategy,
        seed=2,
        sampler="borderline",
        include_originals=False,
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


@pytest.fixture(scope="module")
def remix_stream() -> DeepSMOTEStream:
    data = read_dataset(fmnist_mini())
    rows = np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in ((0, 40), (1, 12), (2, 6))])
    return DeepSMOTEStream(
        GOLDEN_BUNDLE,
        data.images[rows],
        data.labels[rows],
        shard_size=16,
        include_originals=True,
        sampler="remix",
        soft_labels=True,
        shuffle=True,
        seed=3,
    )


def soft_samples(stream: DeepSMOTEStream, workers: int, epoch: int) -> list[tuple[bytes, tuple[float, ...]]]:
    stream.set_epoch(epoch)
    loader = DataLoader(stream, batch_size=8, num_workers=workers)
    return [
        (image.numpy().tobytes(), tuple(target.tolist()))
        for images, targets in loader
        for image, target in zip(images, targets, strict=True)
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_set_epoch_gives_each_epoch_its_own_draws_the_same_for_any_workers(remix_stream, workers):
    first = soft_samples(remix_stream, 0, 1)
    again = soft_samples(remix_stream, workers, 1)
    assert sorted(again) == sorted(first)
    if workers == 0:
        assert again == first  # the same order too: the shuffle is a function of the seed and epoch
    other = soft_samples(remix_stream, 0, 2)
    synthetic = {image for image, target in first if max(target) < 1}
    assert len(synthetic) > 10
    assert not synthetic & {image for image, _ in other}
    assert [image for image, _ in other] != [image for image, _ in first]


def test_the_streams_epoch_is_the_samplers_and_epoch_0_is_generate():
    # One shard per class (the default shard size): the stream's mixed units draw what the
    # sampler's per-class shards draw.
    from deepsmote.runtime import DeepSMOTE

    data = read_dataset(fmnist_mini())
    rows = np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in ((0, 40), (1, 12), (2, 6))])
    images, labels = data.images[rows], data.labels[rows]
    stream = DeepSMOTEStream(
        GOLDEN_BUNDLE, images, labels, include_originals=True, sampler="remix", soft_labels=True, seed=3
    )
    sampler = DeepSMOTE(GOLDEN_BUNDLE, random_state=3, sampler="remix").fit(images, labels)
    for epoch in (0, 1):
        X, _, T = sampler.resample(epoch, return_targets=True)
        expected = sorted(
            (to_tensor(image).numpy().tobytes(), tuple(t.tolist())) for image, t in zip(X, T, strict=True)
        )
        assert sorted(soft_samples(stream, 0, epoch)) == expected


def test_soft_targets_are_k_vectors_summing_to_one(remix_stream):
    got = soft_samples(remix_stream, 0, 0)
    assert len(got) == 120
    targets = np.asarray([t for _, t in got])
    assert targets.shape == (120, 3)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)


def test_a_bad_epoch_is_refused_when_set(remix_stream):
    from deepsmote.runtime import InvalidInputError

    with pytest.raises(InvalidInputError, match="epoch"):
        remix_stream.set_epoch(-1)
