"""The quality gate: the classifier in the bundle, its export and checks, and `generate --filter`."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from deepsmote.kernels import NeighborRows, interpolate, kneighbors
from deepsmote.runtime import DeepSMOTE, DeepSMOTEError, load_bundle, read_dataset
from deepsmote.runtime.bundle import CLASSIFIER_FILE, MANIFEST_NAME, create_session, open_models, sha256_file
from deepsmote.runtime.cli import main
from deepsmote.runtime.gate import CLASSIFY_BATCH
from deepsmote.runtime.pixels import to_model
from deepsmote.runtime.plan import Draws
from deepsmote.training import GateConfig, add_classifier
from deepsmote.training.gate import GateNet, export_gate
from golden import GOLDEN_BUNDLE
from helpers import run_main

TINY = GateConfig(width=4, steps=40, batch_size=32, seed=0)
STRATEGY = {7: 30, 8: 25, 9: 20}


@pytest.fixture(scope="module")
def data(fmnist_mini):
    return read_dataset(fmnist_mini)


@pytest.fixture(scope="module")
def gated_bundle(fmnist_mini, tmp_path_factory):
    """The golden bundle with a tiny classifier (width 4, 40 steps) added by `deepsmote add-classifier`."""
    bundle = tmp_path_factory.mktemp("gated") / "bundle"
    shutil.copytree(GOLDEN_BUNDLE, bundle)
    printed = io.StringIO()
    args = ("add-classifier", bundle, fmnist_mini, "--steps", 40, "--width", 4, "--batch-size", 32, "--seed", 0)
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
        raise SystemExit(0)
    assert exit_.value.code in (0, None)
    (bundle.parent / "printed.txt").write_text(printed.getvalue())
    return bundle


@pytest.fixture(scope="module")
def untrained(data, tmp_path_factory):
    """An untrained classifier (near-uniform probabilities), exported and checked against torch."""
    folder = tmp_path_factory.mktemp("untrained")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GateNet(1, 10, 4).eval()
    images = torch.from_numpy(to_model(data.images[:64]))
    checks = export_gate(model, images, folder / CLASSIFIER_FILE)
    return model, images, checks, folder / CLASSIFIER_FILE


@pytest.fixture(scope="module")
def uniform_bundle(untrained, tmp_path_factory):
    """The golden bundle with the untrained classifier: no candidate reaches 0.99."""
    bundle = tmp_path_factory.mktemp("uniform") / "bundle"
    shutil.copytree(GOLDEN_BUNDLE, bundle)
    shutil.copyfile(untrained[3], bundle / CLASSIFIER_FILE)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["files"][CLASSIFIER_FILE] = sha256_file(bundle / CLASSIFIER_FILE)
    manifest["classifier"] = {"config": {}, "train_accuracy": None}
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    return bundle


def threshold_for(bundle, data, strategy, seed):
    """A threshold that ~40% of each class's first candidates pass, whatever the tiny classifier learnt."""
    sampler = DeepSMOTE(bundle, sampling_strategy=strategy, random_state=seed).fit(data.images, data.labels)
    models = open_models(sampler.bundle_, "cpu", classifier=True)
    quantiles = []
    for shard in sampler.synthesizer_.shards:
        p = models.classify(sampler.synthesizer_.made(shard)[1], 256)[:, shard.class_index]
        quantiles.append(float(np.quantile(p, 0.6)))
    return round(min(quantiles), 4)


def test_classifier_export_matches_torch(untrained):
    model, images, checks, path = untrained
    assert [c.batch for c in checks] == [64, 1]
    assert all(c.max_abs_diff <= 1e-4 for c in checks)
    got = create_session(path.read_bytes(), "cpu")[0].run(None, {"image": images[:5].numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(images[:5]).numpy(), atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_the_bundle_records_and_checks_its_classifier(gated_bundle, data):
    bundle = load_bundle(gated_bundle)
    manifest = json.loads((gated_bundle / MANIFEST_NAME).read_text())
    assert manifest["files"][CLASSIFIER_FILE] == sha256_file(gated_bundle / CLASSIFIER_FILE)
    record = manifest["classifier"]
    assert 0.2 < record["train_accuracy"] <= 1 and record["config"]["steps"] == 40
    assert [c["batch"] for c in record["checks"]] == [64, 1] and record["max_abs_diff"] <= 1e-4
    # The fingerprint covers the classifier; the encoder and decoder are the golden ones.
    assert bundle.fingerprint != load_bundle(GOLDEN_BUNDLE).fingerprint
    assert bundle.encoder_bytes == load_bundle(GOLDEN_BUNDLE).encoder_bytes
    probabilities = open_models(bundle, "cpu", classifier=True).classify(to_model(data.images[:10]), 4)
    assert probabilities.shape == (10, 10)
    assert "classifier training accuracy" in (gated_bundle.parent / "printed.txt").read_text()


def test_load_bundle_refuses_a_modified_classifier(gated_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(gated_bundle, bundle)
    with open(bundle / CLASSIFIER_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DeepSMOTEError, match=r"classifier\.onnx: sha256 does not match"):
        load_bundle(bundle)


def test_load_bundle_refuses_a_classifier_of_other_classes(gated_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(gated_bundle, bundle)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["classes"] = manifest["classes"][:9]
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    expected = r"classifier\.onnx: output 'probabilities' has shape \['batch', 10\], the manifest implies \['N', 9\]"
    with pytest.raises(DeepSMOTEError, match=expected):
        load_bundle(bundle)


def test_add_classifier_refuses_other_data_and_keeps_the_bundle(gated_bundle, data, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(gated_bundle, bundle)
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    with pytest.raises(DeepSMOTEError, match=r"already has a classifier\.onnx; pass `overwrite`"):
        add_classifier(bundle, data, TINY)
    other = type(data)(data.images, data.labels, tuple(f"c{c}" for c in data.classes))
    with pytest.raises(DeepSMOTEError, match="DATA has classes"):
        add_classifier(bundle, other, TINY, overwrite=True)
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging left beside it


def reference_gate(sampler, shard, threshold):
    """The gate rebuilt from plain pieces: rounds of draws, decode, classify, keep in order."""
    synthesizer = sampler.synthesizer_
    latents = synthesizer.latents[shard.class_index]
    models = open_models(sampler.bundle_, "cpu", 1, classifier=True)
    images, bases, slots, gaps = [], [], [], []
    for r in range(50):
        rng = np.random.default_rng(
            np.random.SeedSequence([synthesizer.seed, shard.class_index, 0, *([r] if r else [])])
        )
        n, m = len(latents.codes), shard.count
        d = Draws(rng.integers(0, n, m), rng.integers(0, latents.n_neighbors, m), rng.random(m, dtype=np.float32))
        x = models.decode(interpolate(latents.codes, latents.neighbors_of(d.base), d.base, d.slot, d.gap), 1)
        p = np.concatenate([models.classify(x[i : i + CLASSIFY_BATCH], 10_000) for i in range(0, len(x), 256)])
        keep = p[:, shard.class_index] >= threshold
        images.append(x[keep])
        bases.append(d.base[keep])
        slots.append(d.slot[keep])
        gaps.append(d.gap[keep])
        if sum(map(len, bases)) >= shard.count:
            break
    cut = slice(0, shard.count)
    return tuple(np.concatenate(a)[cut] for a in (images, bases, slots, gaps))


def test_the_filter_keeps_what_the_reference_keeps(gated_bundle, data):
    threshold = threshold_for(gated_bundle, data, STRATEGY, 4)
    sampler = DeepSMOTE(gated_bundle, sampling_strategy=STRATEGY, random_state=4, filter_threshold=threshold)
    X, y = sampler.fit_resample(data.images, data.labels)
    synthesizer = sampler.synthesizer_
    assert {c: kept for c, (kept, _) in synthesizer.acceptance.items()} == {7: 20, 8: 19, 9: 16}
    assert all(drawn % kept == 0 for kept, drawn in synthesizer.acceptance.values())
    assert any(drawn > kept for kept, drawn in synthesizer.acceptance.values())  # some rounds after the first
    for shard in synthesizer.shards:
        images, base, slot, gap = reference_gate(sampler, shard, threshold)
        draws, made = synthesizer.made(shard)
        np.testing.assert_array_equal(made, images)
        np.testing.assert_array_equal(draws.base, base)
        np.testing.assert_array_equal(draws.slot, slot)
        np.testing.assert_array_equal(draws.gap, gap)
    probabilities = open_models(sampler.bundle_, "cpu", classifier=True).classify(to_model(X[len(data.labels) :]), 64)
    labels = y[len(data.labels) :]
    # What is written is rounded to uint8, so a kept candidate may sit a hair under the threshold.
    assert (probabilities[np.arange(len(labels)), labels] >= threshold - 0.05).all()


def test_the_filter_gives_the_same_bytes_for_any_batch_size_and_thread_count(gated_bundle, data):
    threshold = threshold_for(gated_bundle, data, STRATEGY, 1)
    results = [
        DeepSMOTE(
            gated_bundle,
            sampling_strategy=STRATEGY,
            random_state=1,
            filter_threshold=threshold,
            batch_size=batch,
            n_threads=threads,
        ).fit_resample(data.images, data.labels)[0]
        for batch, threads in ((1, 1), (7, 2), (256, 2))
    ]
    assert all(np.array_equal(results[0], r) for r in results[1:])
    unfiltered = DeepSMOTE(gated_bundle, sampling_strategy=STRATEGY, random_state=1).fit_resample(
        data.images, data.labels
    )[0]
    assert not np.array_equal(results[0], unfiltered)


def test_a_filter_that_rejects_everything_is_one_line_and_leaves_nothing(uniform_bundle, fmnist_mini, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["generate", uniform_bundle, fmnist_mini, "--out", out, "--strategy", '{"9": 10}', "--filter", "0.99"]
    code, _, err = run_main([*args, "--max-draw-ratio", "3", "-q"], capsys)
    assert code == 1
    assert err.count("\n") == 1
    assert "class '9'" in err and "0.00% of 18 candidates" in err and "lower --filter" in err, err
    assert not out.exists()


def test_filter_on_a_bundle_without_classifier_names_the_fix(fmnist_mini, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_main(["generate", GOLDEN_BUNDLE, fmnist_mini, "--out", out, "--filter", "0.5"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "--filter needs a classifier" in err and "deepsmote add-classifier" in err and "--classifier" in err
    assert not out.exists()
    with pytest.raises(DeepSMOTEError, match="add_classifier"):
        DeepSMOTE(GOLDEN_BUNDLE, filter_threshold=0.5).fit(np.zeros((4, 28, 28), np.uint8), np.array([0, 0, 1, 1]))


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "nan"])
def test_a_threshold_outside_zero_one_is_refused(gated_bundle, fmnist_mini, tmp_path, capsys, value):
    code, _, err = run_main(["generate", gated_bundle, fmnist_mini, "--out", tmp_path / "o", "--filter", value], capsys)
    assert code == 2 and "--filter must lie in (0, 1]" in err, err
    with pytest.raises(ValueError, match="`filter_threshold` must lie in"):
        DeepSMOTE(gated_bundle, filter_threshold=float(value)).fit(np.zeros((2, 28, 28), np.uint8), np.array([0, 1]))


def test_cli_reports_acceptance_and_refuses_a_resume_with_another_filter(
    gated_bundle, data, fmnist_mini, tmp_path, capsys
):
    out = tmp_path / "out"
    threshold = threshold_for(gated_bundle, data, {8: 20, 9: 15}, 2)
    base = ["generate", gated_bundle, fmnist_mini, "--out", out, "--strategy", '{"8": 20, "9": 15}', "--format", "npz"]
    base += ["--synthetic-only"]
    code, stdout, err = run_main([*base, "--filter", threshold, "--seed", "2", "-q"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["filter_threshold"] == threshold
    for name, made in (("8", 14), ("9", 11)):
        record = summary["acceptance"][name]
        assert record["accepted"] == made and record["drawn"] % made == 0
        assert record["rate"] == round(made / record["drawn"], 4)
        assert f"{record['rate']:.1%}" in stdout
    assert any(r["drawn"] > r["accepted"] for r in summary["acceptance"].values())
    assert "accepted" in stdout.splitlines()[1]
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 25 and all(r["synthetic"] == "1" for r in rows)
    code, _, err = run_main([*base, "--filter", threshold / 2, "--seed", "2", "-q"], capsys)
    assert code == 1 and "differs in: filter_threshold" in err


def test_add_classifier_refuses_a_second_classifier_on_the_command_line(gated_bundle, fmnist_mini, capsys):
    code, _, err = run_main(["add-classifier", gated_bundle, fmnist_mini, "--steps", "30"], capsys)
    assert code == 1 and err.count("\n") == 1 and "pass --overwrite to replace it" in err


def test_train_with_classifier_then_generate_filtered_end_to_end(fmnist_mini, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    tiny = ["--epochs", "1", "--width", "4", "--latent-dim", "8", "--device", "cpu", "-q"]
    code, stdout, err = run_main(
        ["train", fmnist_mini, "--out", bundle, *tiny, "--classifier", "--classifier-steps", "20"], capsys
    )
    assert code == 0, err
    assert "classifier training accuracy" in stdout and load_bundle(bundle).manifest.classifier.config["steps"] == 20
    out = tmp_path / "out"
    args = ["generate", bundle, fmnist_mini, "--out", out, "--strategy", '{"9": 8}', "--filter", "0.05"]
    code, stdout, err = run_main([*args, "--synthetic-share", "0.5", "-q"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["9"] == {"original": 4, "synthetic": 2, "repeated": 2, "total": 8}
    assert summary["acceptance"]["9"]["accepted"] == 2


def test_the_classifier_trains_in_channels_last_and_learns_what_channels_first_learns(data, monkeypatch):
    # The same function, other orders of the sums: after TINY's 40 steps the two classifiers' logits
    # agree to float32 rounding grown by training, far below the logits' own size.
    from deepsmote.training import gate

    channels_last, _ = gate.train_gate(data, TINY)
    weights = [p for p in channels_last.parameters() if p.dim() == 4]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    monkeypatch.setattr(gate, "memory_format", lambda device: torch.contiguous_format)
    channels_first, _ = gate.train_gate(data, TINY)
    first_weights = [p for p in channels_first.parameters() if p.dim() == 4]
    assert not all(w.is_contiguous(memory_format=torch.channels_last) for w in first_weights)
    x = torch.from_numpy(to_model(data.images))
    with torch.no_grad():
        last, first = channels_last.logits(x), channels_first.logits(x)
    difference = float((last - first).abs().max())
    # 5.8e-4 of logits up to 1.28 on the AVX-512 EPYC; scrambled channels would differ by the logits' size.
    assert difference <= 1e-2 * float(first.abs().max())


def test_the_filter_on_neighbours_found_on_demand_keeps_what_it_keeps_on_the_whole_search(gated_bundle, data):
    # Class 0 tripled by its mirror images (1,200 codes) grows by 12 in at most 25 rounds: 300 draws
    # at most (7,090 at most take `NeighborRows`), so its shards find their bases' neighbours as they
    # draw them.
    class_0 = data.images[data.labels == 0]
    images = np.concatenate([data.images, class_0[:, :, ::-1], class_0[:, ::-1, :]])
    labels = np.concatenate([data.labels, np.zeros(2 * len(class_0), dtype=data.labels.dtype)])
    tripled = SimpleNamespace(images=images, labels=labels)
    strategy = {0: 1212}
    threshold = threshold_for(gated_bundle, tripled, strategy, 2)
    sampler = DeepSMOTE(
        gated_bundle, sampling_strategy=strategy, random_state=2, filter_threshold=threshold, max_draw_ratio=25
    ).fit(images, labels)
    synthesizer = sampler.synthesizer_
    latents = synthesizer.latents[0]
    assert isinstance(latents.neighbors, NeighborRows)
    whole = replace(
        synthesizer,
        latents=(replace(latents, neighbors=kneighbors(latents.codes, 5)[0]), *synthesizer.latents[1:]),
        acceptance={},
        _models=[],
        _last=[],
    )
    for shard in synthesizer.shards:
        draws, made = synthesizer.made(shard)
        whole_draws, whole_made = whole.made(shard)
        assert made.tobytes() == whole_made.tobytes()
        assert draws.base.tobytes() == whole_draws.base.tobytes()
    assert synthesizer.acceptance[0][1] > 12  # some rounds after the first
    # 591 rounds of 12 may draw 7,092 bases, over the 7,090: the whole class is searched.
    more_rounds = DeepSMOTE(
        gated_bundle, sampling_strategy=strategy, random_state=2, filter_threshold=threshold, max_draw_ratio=591
    ).fit(images, labels)
    assert isinstance(more_rounds.synthesizer_.latents[0].neighbors, np.ndarray)
