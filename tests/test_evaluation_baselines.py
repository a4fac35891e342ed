"""The classifier-side baselines: balanced softmax and deferred re-sampling, and the method table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deepsmote.evaluation.classifiers import (
    ClassifierConfig,
    Deferred,
    build_classifier,
    log_prior,
    predict,
    train_classifier,
)
from deepsmote.evaluation.protocol import DEFAULT_METHODS, METHODS, resample
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.pixels import to_model
from torch.nn import functional as F

pytest.importorskip("imblearn", reason="the baselines need the eval extra")

CPU = torch.device("cpu")


def _state(trained) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trained.model.state_dict().items()}


def test_log_prior_is_the_log_of_each_class_share():
    prior = log_prior(np.array([0, 0, 0, 1, 2, 2, 2, 2]), 4)
    assert prior.dtype == np.float32
    assert np.allclose(np.exp(prior[:3]), [3 / 8, 1 / 8, 4 / 8])
    assert np.isfinite(prior[3]) and np.exp(prior[3]) == pytest.approx(0.5 / 8)


def test_balanced_softmax_trains_on_logits_plus_the_log_prior(three_classes):
    images, labels = three_classes
    config = ClassifierConfig(width=4, steps=1, eval_every=1, batch_size=36, lr=1e-3)
    trained = train_classifier(images, labels, images, labels, 3, config, 0, CPU, balanced_softmax=True)
    # The first (and only) batch is the whole set, in the order of the seeded permutation.
    torch.manual_seed(0)
    model = build_classifier("cnn", 1, 3, 4).train()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    x = torch.from_numpy(to_model(images))[order]
    y = torch.from_numpy(labels.astype(np.int64))[order]
    with torch.no_grad():
        logits = model(x)
    expected = F.cross_entropy(logits + torch.from_numpy(log_prior(labels, 3)), y).item()
    plain = F.cross_entropy(logits, y).item()
    assert trained.history[0]["train_loss"] == pytest.approx(expected, rel=1e-5)
    assert abs(expected - plain) > 1e-3  # the prior changes the loss, so the check above can fail


def test_balanced_softmax_predicts_from_the_raw_logits(three_classes):
    images, labels = three_classes
    steps, lr = 3, 1e-2
    config = ClassifierConfig(width=4, steps=steps, eval_every=steps, batch_size=12, lr=lr, weight_decay=0.0)
    trained = train_classifier(images, labels, images, labels, 3, config, 0, CPU, balanced_softmax=True)
    # The reference: the same steps written out (seeded weights and batch order, Adam, cosine
    # decay), the loss on logits + log prior; its predictions are the argmax of the raw logits.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_classifier("cnn", 1, 3, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    x, y = torch.from_numpy(to_model(images)), torch.from_numpy(labels.astype(np.int64))
    prior = torch.from_numpy(log_prior(labels, 3))
    for batch in order[: len(images) // 12 * 12].split(12)[:steps]:
        model.train()
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]) + prior, y[batch]).backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        logits = model.eval()(x)
    raw, adjusted = logits.argmax(1).numpy(), (logits + prior).argmax(1).numpy()
    assert np.count_nonzero(raw != adjusted) > 0  # adding the prior changes predictions, so this can fail
    np.testing.assert_array_equal(predict(trained.model, images, CPU), raw)


def test_deferred_from_the_first_step_is_training_on_the_second_set(three_classes):
    images, labels = three_classes
    second_images, second_labels = images[::-1].copy(), labels[::-1].copy()
    second_images[-5:] = 255 - second_images[-5:]
    config = ClassifierConfig(width=4, steps=6, eval_every=3, batch_size=8)
    plain = train_classifier(second_images, second_labels, images, labels, 3, config, 1, CPU)
    deferred = Deferred(second_images, second_labels, from_step=1)
    switched = train_classifier(images, labels, images, labels, 3, config, 1, CPU, deferred=deferred)
    for key, value in _state(plain).items():
        assert torch.equal(value, _state(switched)[key]), key


def test_deferred_switches_at_its_step_and_not_before(three_classes):
    images, labels = three_classes
    other_images = 255 - images
    config = ClassifierConfig(width=4, steps=6, eval_every=3, batch_size=8)
    first_only = train_classifier(images, labels, images, labels, 3, config, 2, CPU)
    late = train_classifier(
        images, labels, images, labels, 3, config, 2, CPU, deferred=Deferred(other_images, labels, from_step=4)
    )
    # Steps 1-3 draw from the first set alone: the scores at step 3 are those of plain training.
    assert late.history[0] == first_only.history[0]
    assert late.history[1] != first_only.history[1]


@pytest.mark.parametrize("from_step", [0, 7])
def test_deferred_step_outside_the_run_is_refused(three_classes, from_step):
    images, labels = three_classes
    config = ClassifierConfig(width=4, steps=6, eval_every=3, batch_size=8)
    with pytest.raises(DeepSMOTEError, match=r"from_step must be in 1\.\.6"):
        train_classifier(
            images, labels, images, labels, 3, config, 0, CPU, deferred=Deferred(images, labels, from_step)
        )


def test_the_method_table_names_every_default_and_each_title_once():
    assert set(DEFAULT_METHODS) <= set(METHODS)
    titles = [m.title for m in METHODS.values()]
    assert len(set(titles)) == len(titles)
    assert METHODS["deferred"].oversampler == "random" and METHODS["deferred"].deferred
    assert METHODS["balanced-softmax"].oversampler is None and METHODS["balanced-softmax"].balanced_softmax


def test_classifier_side_methods_train_on_the_set_as_it_is(three_classes):
    images, labels = three_classes
    for method in ("none", "balanced-softmax"):
        out_images, out_labels = resample(method, images, labels, seed=0, k_neighbors=3)
        assert out_images is images and out_labels is labels
    # deferred's second phase is random oversampling's set.
    deferred = resample("deferred", images, labels, seed=0, k_neighbors=3)
    random = resample("random", images, labels, seed=0, k_neighbors=3)
    assert np.array_equal(deferred[0], random[0]) and np.bincount(deferred[1]).tolist() == [24, 24, 24]
