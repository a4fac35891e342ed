"""The protocol's Remix rows: soft-target training, fresh draws per epoch, pixel Remix, method overrides."""

from __future__ import annotations

import naive
import numpy as np
import pytest
import torch
from deepsmote.evaluation.classifiers import (
    ClassifierConfig,
    TrainingSet,
    build_classifier,
    log_prior,
    random_crops,
    train_classifier,
)
from deepsmote.evaluation.pixel_remix import pixel_remix
from deepsmote.evaluation.protocol import METHODS, method_spec, training_sets
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.pixels import to_model
from deepsmote.runtime.remix import RemixSettings
from torch.nn import functional as F

CPU = torch.device("cpu")


def test_pixel_remix_follows_the_documented_draws_and_rule(three_classes):
    images, labels = three_classes
    settings = RemixSettings()
    X, y, T = pixel_remix(images, labels, seed=4, settings=settings, epoch=2)
    counts = np.bincount(labels)
    assert np.bincount(y).tolist() == [24, 24, 24]
    np.testing.assert_array_equal(X[: len(images)], images)
    flat = images.reshape(len(images), -1).astype(np.float32)
    start = len(images)
    for c in (1, 2):
        members = np.flatnonzero(labels == c)
        gap = 24 - len(members)
        rng = np.random.default_rng(np.random.SeedSequence([4, c, 2]))
        base = rng.integers(0, len(members), size=gap, dtype=np.int64)
        partner = rng.integers(0, len(labels), size=gap, dtype=np.int64)
        weight = rng.random(gap, dtype=np.float32) * np.float32(0.5)
        mixed = naive.remix_mix(flat[members[base]], flat[partner], weight)
        expected = np.rint(np.clip(mixed, 0, 255)).astype(np.uint8).reshape(gap, 28, 28)
        np.testing.assert_array_equal(X[start : start + gap], expected)
        rule = [naive.remix_target(c, labels[p], w, counts, 3.0, 0.5, 3) for p, w in zip(partner, weight, strict=True)]
        np.testing.assert_allclose(T[start : start + gap], rule, atol=1e-7)
        start += gap


def test_soft_targets_train_on_their_cross_entropy(three_classes):
    images, labels = three_classes
    targets = np.full((len(images), 3), 0.1, dtype=np.float32)
    targets[np.arange(len(images)), labels] = 0.8
    config = ClassifierConfig(width=4, steps=1, eval_every=1, batch_size=36)
    trained = train_classifier(images, labels, images, labels, 3, config, 0, CPU, targets=targets)
    torch.manual_seed(0)
    model = build_classifier("cnn", 1, 3, 4).train()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(torch.from_numpy(to_model(images))[order])
    expected = -(torch.from_numpy(targets)[order] * F.log_softmax(logits, dim=1)).sum(dim=1).mean().item()
    assert trained.history[0]["train_loss"] == pytest.approx(expected, rel=1e-5)
    # One-hot targets train exactly as the labels do.
    one_hot = np.eye(3, dtype=np.float32)[labels]
    soft = train_classifier(images, labels, images, labels, 3, config, 0, CPU, targets=one_hot)
    hard = train_classifier(images, labels, images, labels, 3, config, 0, CPU)
    assert soft.history[0]["train_loss"] == pytest.approx(hard.history[0]["train_loss"], rel=1e-6)


def test_balanced_softmax_on_soft_targets_takes_their_summed_prior():
    targets = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.25, 0.75]], dtype=np.float32)
    np.testing.assert_allclose(np.exp(log_prior(np.zeros(3), 3, targets)), [1.5 / 3, 0.75 / 3, 0.75 / 3], rtol=1e-6)


def test_refresh_is_asked_for_each_new_pass_over_the_data(three_classes):
    images, labels = three_classes
    asked = []

    def refresh(epoch: int) -> TrainingSet:
        asked.append(epoch)
        return TrainingSet(images, labels)

    # 36 images in batches of 12: three steps a pass, so 8 steps start passes 2 and 3.
    config = ClassifierConfig(width=4, steps=8, eval_every=8, batch_size=12)
    train_classifier(images, labels, images, labels, 3, config, 0, CPU, refresh=refresh)
    assert asked == [1, 2]


def test_random_crops_shift_each_image_within_the_pad():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    out = random_crops(x, torch.Generator().manual_seed(0), pad=1)
    assert out.shape == x.shape
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    for i in range(2):
        windows = [padded[i, :, dy : dy + 4, dx : dx + 4] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_per_epoch_methods_draw_fresh_sets_and_fixed_ones_do_not(three_classes):
    images, labels = three_classes
    sets = training_sets("pixel-remix-per-epoch", images, labels, seed=0, k_neighbors=3)
    first, again, second = sets(0), sets(0), sets(1)
    np.testing.assert_array_equal(first.images, again.images)
    assert (first.images[36:] != second.images[36:]).any()
    assert METHODS["pixel-remix-per-epoch"].per_epoch and not METHODS["pixel-remix"].per_epoch
    assert METHODS["remix-per-epoch"].recipe == {"sampler": "remix"} and METHODS["remix-per-epoch"].per_epoch


def test_method_overrides_change_the_recipe_and_flags():
    spec = method_spec("remix@remix_kappa=2+synthetic_share=0.5+balanced_softmax=1")
    assert spec.recipe == {"sampler": "remix", "remix_kappa": 2, "synthetic_share": 0.5}
    assert spec.balanced_softmax and spec.title.endswith("[remix_kappa=2+synthetic_share=0.5+balanced_softmax=1]")
    with pytest.raises(DeepSMOTEError, match="key=value"):
        method_spec("remix@kappa")
    with pytest.raises(DeepSMOTEError, match="method must be one of"):
        method_spec("nope@remix_kappa=2")
