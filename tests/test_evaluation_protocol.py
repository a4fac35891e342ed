"""The evaluation protocol: validation split, the methods, classifiers, a tiny `deepsmote evaluate`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from deepsmote.data import fmnist_mini
from deepsmote.evaluation.classifiers import ClassifierConfig, build_classifier, resnet18
from deepsmote.evaluation.protocol import (
    DEFAULT_METHODS,
    METHODS,
    ProtocolConfig,
    effective_k,
    resample,
    sample_quality,
    split_fit,
    validation_split,
)
from deepsmote.runtime.cli import main
from deepsmote.runtime.readers import LabelledImages, read_dataset
from helpers import run_cli, run_main

pytest.importorskip("imblearn", reason="the baselines need the eval extra")

TRAIN_COUNTS = "40,30,20,20,15,12,10,8,6,4"
TEST_COUNTS = "10,8,6,5,4,3,3,2,2,2"


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 165-image imbalanced training set and two test sets, made with `deepsmote dataset imbalance`."""
    folder = tmp_path_factory.mktemp("sets")
    specs = {
        "train": ("train", ["--counts", TRAIN_COUNTS]),
        "imbalanced": ("t10k", ["--counts", TEST_COUNTS]),
        "balanced": ("t10k", ["--per-class", "10"]),
    }
    for name, (split, options) in specs.items():
        main(["dataset", "imbalance", str(fmnist_mini(split)), *options, "--out", str(folder / f"{name}.npz")])
    return {name: folder / f"{name}.npz" for name in specs}


def test_validation_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(4), [40, 10, 3, 2])
    fit, val = validation_split(labels, 4, 0.1, seed=0)
    assert np.intersect1d(fit, val).size == 0 and len(fit) + len(val) == len(labels)
    assert np.bincount(labels[val], minlength=4).tolist() == [4, 1, 1, 0]  # >= 1, leaves >= 2, tiny stays
    again_fit, again_val = validation_split(labels, 4, 0.1, seed=0)
    assert np.array_equal(fit, again_fit) and np.array_equal(val, again_val)
    assert not np.array_equal(val, validation_split(labels, 4, 0.1, seed=1)[1])


@pytest.mark.parametrize("method", [m for m in METHODS if not METHODS[m].recipe])
def test_each_method_balances_and_keeps_the_originals_first(method, tiny_bundle):
    data = read_dataset(fmnist_mini("train"))
    keep = np.flatnonzero(data.labels < 3)[::4]
    images, labels = data.images[keep], data.labels[keep]
    new_images, new_labels = resample(method, images, labels, seed=0, k_neighbors=3, bundle=tiny_bundle)
    assert new_images.dtype == np.uint8 and new_images.shape[1:] == images.shape[1:]
    assert np.array_equal(new_images[: len(images)], images) and np.array_equal(new_labels[: len(labels)], labels)
    counts = np.bincount(new_labels)
    if METHODS[method].oversampler is None:
        assert len(new_labels) == len(labels)
    else:
        assert counts.tolist() == [counts.max()] * 3
    again = resample(method, images, labels, seed=0, k_neighbors=3, bundle=tiny_bundle)
    assert np.array_equal(again[0], new_images)


def test_effective_k_is_lowered_for_small_classes_and_needs_two():
    assert effective_k(np.array([50, 10]), 5) == 5
    assert effective_k(np.array([50, 3]), 5) == 2
    with pytest.raises(Exception, match="at least 2"):
        effective_k(np.array([50, 1]), 5)


@pytest.mark.parametrize(
    ("shape", "preset"), [((1, 28, 28), "cnn"), ((1, 28, 28), "resnet18"), ((3, 32, 32), "resnet18")]
)
def test_classifiers_give_logits_and_features(shape, preset):
    model = build_classifier(preset, shape[0], 10, 8).eval()
    x = torch.zeros(2, *shape)
    assert model(x).shape == (2, 10)
    assert model.features(x).shape == (2, model.feature_dim)


def test_resnet18_at_width_64_has_resnet18s_size():
    # 11.17M parameters: torchvision's resnet18 (11.69M) less its 7x7 stem and 1000-class head.
    n = sum(p.numel() for p in resnet18(1, 10).parameters())
    assert 11.1e6 < n < 11.3e6
    convs = [m for m in resnet18(1, 10).modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # the stem and 16 in eight basic blocks


def test_evaluate_end_to_end(small_sets, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "results"
    args = [
        "evaluate",
        small_sets["train"],
        "--test",
        f"imbalanced={small_sets['imbalanced']}",
        "--test",
        f"balanced={small_sets['balanced']}",
        "--bundle",
        tiny_bundle,
        "--out",
        out,
        "--seeds",
        "0",
        "--width",
        "4",
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    code, stdout, err = run_main(args, capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    protocol = results["protocol"]
    assert protocol["counts"]["imbalanced"] == [int(n) for n in TEST_COUNTS.split(",")]  # never resampled
    assert protocol["counts"]["balanced"] == [10] * 10
    assert protocol["counts"]["validation"] == [4, 3, 2, 2, 2, 1, 1, 1, 1, 1]
    assert protocol["k_neighbors_used"] == 2  # class 9 keeps 3 images to fit
    assert protocol["bundle"]["trained_on"] == "other data"
    assert [(r["method"], r["seed"]) for r in results["runs"]] == [(m, 0) for m in DEFAULT_METHODS]
    for run_ in results["runs"]:
        balanced = METHODS[run_["method"]].oversampler is not None
        assert len(set(run_["resampled_counts"])) == (1 if balanced else 9)
        assert run_["best_step"] in (3, 6)
        for name in ("imbalanced", "balanced"):
            scores = run_["tests"][name]
            # Each recall is (correct)/(class count) of the named test set: a whole number of images.
            correct = np.asarray(scores["recall"]) * np.asarray(protocol["counts"][name])
            assert len(correct) == 10 and np.allclose(correct, np.round(correct)) and (correct >= 0).all()
            assert (np.round(correct) <= np.asarray(protocol["counts"][name])).all()
            assert scores["acsa"] == pytest.approx(np.mean(scores["recall"]))
            assert 0 <= scores["gm"] <= 1
    summary = results["summary"]["tests"]["imbalanced"]["deepsmote"]
    deepsmote_run = next(r for r in results["runs"] if r["method"] == "deepsmote")
    assert summary["acsa"] == [pytest.approx(deepsmote_run["tests"]["imbalanced"]["acsa"]), 0.0]
    assert summary["seeds"] == [0]
    markdown = (out / "results.md").read_text()
    assert "(d) DeepSMOTE" in markdown and "**balanced test set**" in markdown
    assert "| method | ACSA | GM | F1 |" in stdout

    code, _, err = run_main(args, capsys)
    assert code == 1 and "already holds results" in err


def test_evaluate_refuses_deepsmote_without_a_bundle(small_sets, tmp_path, capsys):
    code, _, err = run_main(
        ["evaluate", small_sets["train"], "--test", small_sets["balanced"], "--out", tmp_path / "r", "--steps", "1"],
        capsys,
    )
    assert code == 1 and "need a bundle (--bundle)" in err
    assert not (tmp_path / "r").exists()


def test_evaluate_without_torch_gives_the_install_hint(small_sets, tmp_path):
    result = run_cli(
        "evaluate",
        small_sets["train"],
        "--test",
        f"imbalanced={small_sets['imbalanced']}",
        "--methods",
        "none",
        "--out",
        tmp_path / "results",
        check=False,
        prelude='sys.modules["torch"] = None',
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "pip install" in lines[0] and "deepsmote[train]" in lines[0] and "'torch'" in lines[0], lines[0]
    assert not (tmp_path / "results").exists()


def test_sample_quality_scores_every_set(small_sets, tiny_bundle):
    train = read_dataset(small_sets["train"])
    fit, _ = split_fit(train, ProtocolConfig())
    reference = read_dataset(small_sets["balanced"])
    feature_train = LabelledImages(reference.images[::-1].copy(), reference.labels[::-1].copy(), reference.classes)
    classifier = ClassifierConfig(width=4, steps=3, eval_every=3, batch_size=32)
    results = sample_quality(fit, reference, feature_train, tiny_bundle, classifier, max_per_class=5, device="cpu")
    assert results["images_per_class"] == [5] * 9 + [3]
    for name in ("real", "reconstruction", "smote", "deepsmote"):
        per_class = results["sets"][name]["per_class"]
        assert per_class[9] is None  # 3 images: too few for k = 3
        assert all(q["n_fake"] == 5 and q["frechet"] >= 0 and 0 <= q["precision"] <= 1 for q in per_class[:9])


def test_worker_processes_give_the_runs_of_one_process(small_sets):
    from deepsmote.evaluation.protocol import evaluate

    train, test = read_dataset(small_sets["train"]), read_dataset(small_sets["balanced"])
    classifier = ClassifierConfig(width=4, steps=4, eval_every=2, batch_size=32)
    config = ProtocolConfig(methods=("none", "random"), seeds=(0, 1), classifier=classifier, device="cpu", threads=1)
    one = evaluate(train, {"t": test}, config, log=lambda line: None)
    two = evaluate(train, {"t": test}, replace(config, workers=2), log=lambda line: None)
    assert [(r["method"], r["seed"]) for r in two["runs"]] == [("none", 0), ("random", 0), ("none", 1), ("random", 1)]
    for a, b in zip(one["runs"], two["runs"], strict=True):
        assert a["tests"] == b["tests"] and a["history"] == b["history"]
