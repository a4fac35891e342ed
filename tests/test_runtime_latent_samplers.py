"""The latent samplers (smote, borderline, adasyn) against plain numpy references of their definitions.

On the committed golden bundle and the embedded Fashion-MNIST subset: the danger set and the r_i
weights, the bases drawn only where the weights allow and in the order of ``docs/design.md`` §4,
the same bytes for any batch size and thread count, the CLI flag end to end, bad values and the
fallback warnings.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import warnings

import naive
import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, InvalidInputError, generate_dataset, read_dataset
from deepsmote.runtime.bundle import load_bundle, open_models
from deepsmote.runtime.latent_samplers import SAMPLERS, base_weights, danger, draw_bases
from deepsmote.runtime.layout import ImageLayout
from golden import GOLDEN_BUNDLE
from helpers import run_cli, run_main

SEED = 5
# Counts after resampling: class 1's 200 codes against all 900 take the numba k-NN across classes,
# class 5's 35 the numpy one; class 9 has 4 samples (3 neighbours within the class).
STRATEGY = {1: 260, 5: 120, 9: 40}
STRATEGY_JSON = json.dumps({str(c): n for c, n in STRATEGY.items()})


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    dataset = read_dataset(fmnist_mini())
    return dataset.images, dataset.labels


@pytest.fixture(scope="module")
def codes(data) -> np.ndarray:
    """Every sample's code in DATA order, encoded class by class in batches of 256 as a job encodes."""
    images, labels = data
    models = open_models(load_bundle(GOLDEN_BUNDLE), "cpu")
    layout = ImageLayout.of(images, models.bundle.image_shape)
    out = np.empty((len(images), models.bundle.latent_dim), dtype=np.float32)
    for c in np.unique(labels):
        out[labels == c] = models.encode(layout.to_model(images[labels == c]), batch_size=256)
    return out


@pytest.fixture(scope="module")
def fitted(data) -> dict[str, DeepSMOTE]:
    images, labels = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # class 9's 3 neighbours
        return {
            s: DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy=STRATEGY, random_state=SEED, sampler=s).fit(images, labels)
            for s in SAMPLERS
        }


def test_smote_draws_bases_uniformly(fitted):
    latents = fitted["smote"].synthesizer_.latents
    assert all(latents[c].weights is None for c in STRATEGY)


def test_borderline_weights_are_the_danger_set(fitted, codes, data):
    _, labels = data
    for c in STRATEGY:
        expected = naive.borderline_danger(codes, labels, c, m=10)
        assert expected.any() and not expected.all(), f"class {c}: the check needs danger and safe codes"
        weights = fitted["borderline"].synthesizer_.latents[c].weights
        np.testing.assert_array_equal(weights > 0, expected, err_msg=f"class {c}")
        np.testing.assert_array_equal(weights, expected / expected.sum())


def test_adasyn_weights_are_the_normalised_ratios(fitted, codes, data):
    _, labels = data
    for c in STRATEGY:
        ratio = naive.adasyn_ratio(codes, labels, c, k=5)
        assert len(np.unique(ratio)) > 1, f"class {c}: the check needs varied ratios"
        np.testing.assert_allclose(fitted["adasyn"].synthesizer_.latents[c].weights, ratio / ratio.sum(), rtol=1e-12)


@pytest.mark.parametrize("sampler", ["borderline", "adasyn"])
def test_bases_follow_the_weights_in_the_documented_order(fitted, sampler):
    # design.md §4: base (one float64 random() each, inverse CDF), then slot, then gap, from one Generator.
    synthesizer = fitted[sampler].synthesizer_
    for shard in synthesizer.shards:
        latents = synthesizer.latents[shard.class_index]
        draws = synthesizer.made(shard)[0]
        rng = np.random.default_rng(np.random.SeedSequence([SEED, shard.class_index, shard.shard_index]))
        np.testing.assert_array_equal(draws.base, naive.weighted_draw(rng.random(shard.count), latents.weights))
        np.testing.assert_array_equal(draws.slot, rng.integers(0, latents.n_neighbors, size=shard.count))
        np.testing.assert_array_equal(draws.gap, rng.random(shard.count, dtype=np.float32))
        assert (latents.weights[draws.base] > 0).all()


def test_weighted_draws_never_take_a_zero_weight_and_follow_the_weights():
    weights = np.array([0.0, 0.5, 0.0, 0.25, 0.25, 0.0])
    base = draw_bases(np.random.default_rng(0), weights, 40_000)
    assert base.dtype == np.int64
    frequency = np.bincount(base, minlength=len(weights)) / len(base)
    assert (frequency[weights == 0] == 0).all()
    np.testing.assert_allclose(frequency, weights, atol=0.01)
    np.testing.assert_array_equal(base, naive.weighted_draw(np.random.default_rng(0).random(40_000), weights))


class _Fixed:
    """A stand-in Generator whose ``random`` returns given values."""

    def __init__(self, values: list[float]) -> None:
        self.values = np.array(values)

    def random(self, count: int) -> np.ndarray:
        assert count == len(self.values)
        return self.values


def test_weighted_draws_at_the_cdf_boundaries_skip_zero_weights():
    # cdf = [0, .5, .5, .75, 1]: u = 0 falls past the zero first weight, u = .5 past the zero third.
    for weights in ([0.0, 0.5, 0.0, 0.25, 0.25], [0.0, 2.0, 0.0, 1.0, 1.0]):
        base = draw_bases(_Fixed([0.0, 0.4999, 0.5, 0.75, 0.9999]), np.array(weights), 5)
        np.testing.assert_array_equal(base, [1, 1, 3, 4, 4])


def test_danger_is_half_or_more_but_not_all_of_the_neighbours():
    other = np.zeros((5, 10), dtype=bool)
    for row, count in enumerate([0, 4, 5, 9, 10]):
        other[row, :count] = True
    np.testing.assert_array_equal(danger(other), [False, False, True, True, False])
    odd = np.array([[True, False, False], [True, True, False], [True, True, True]])
    np.testing.assert_array_equal(danger(odd), [False, True, False])


def _two_far_clusters() -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(1)
    codes = [rng.standard_normal((12, 3)).astype(np.float32), 100 + rng.standard_normal((12, 3)).astype(np.float32)]
    return codes, np.repeat([0, 1], 12)


@pytest.mark.parametrize(
    ("sampler", "reason"),
    [("borderline", "has no code in danger"), ("adasyn", "has no code with a neighbour of another class")],
)
def test_a_class_without_weights_falls_back_to_smote_with_one_warning(sampler, reason):
    codes, labels = _two_far_clusters()
    with pytest.warns(UserWarning) as caught:
        weights = base_weights(sampler, codes, labels, [False, True], 5, ["a", "b"])
    assert weights == [None, None]
    messages = [str(w.message) for w in caught]
    fallback = "it falls back to SMOTE, bases drawn from all its codes"
    assert messages == [f"class 'b' {reason} (sampler {sampler}): {fallback}"]


@pytest.mark.parametrize("sampler", ["borderline", "adasyn"])
def test_same_bytes_for_any_batch_size_and_thread_count(data, sampler):
    images, labels = data
    results = []
    for batch_size, threads in ((7, 1), (64, 2)):
        sampler_ = DeepSMOTE(
            GOLDEN_BUNDLE,
            sampling_strategy=STRATEGY,
            random_state=SEED,
            sampler=sampler,
            batch_size=batch_size,
            n_threads=threads,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            results.append(sampler_.fit_resample(images, labels))
    assert results[0][0].tobytes() == results[1][0].tobytes()
    assert results[0][1].tobytes() == results[1][1].tobytes()


@pytest.mark.parametrize("sampler", ["borderline", "adasyn"])
def test_cli_with_3_threads_matches_the_api(fitted, data, sampler, tmp_path):
    images, _ = data
    out = tmp_path / "out"
    # numba's pool has one thread per core unless told otherwise: 3 threads must be real threads.
    env = {**os.environ, "NUMBA_NUM_THREADS": "4"}
    args = ["generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--format", "npz", "--strategy", STRATEGY_JSON]
    run_cli(
        *map(str, args),
        "--seed",
        str(SEED),
        "--sampler",
        sampler,
        "--threads",
        "3",
        "--quiet",
        "--synthetic-only",
        env=env,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        X_res, y_res = fitted[sampler].fit_resample(*data)
    back = read_dataset(out)
    for c in STRATEGY:
        got = back.images[back.labels == back.classes.index(str(c))]
        assert got.tobytes() == X_res[len(images) :][y_res[len(images) :] == c].tobytes(), f"class {c}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sampler"] == summary["settings"]["sampler"] == sampler
    latents = fitted[sampler].synthesizer_.latents
    assert summary["base_codes"] == {str(c): int(np.count_nonzero(latents[c].weights)) for c in STRATEGY}


def test_provenance_names_danger_bases_and_a_resume_with_another_sampler_is_refused(fitted, data, tmp_path, capsys):
    _, labels = data
    out = tmp_path / "wds"
    args = ["generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--format", "webdataset", "--quiet"]
    args += ["--strategy", STRATEGY_JSON, "--seed", SEED, "--shard-size", 100]
    code, _, err = run_main([*args, "--sampler", "borderline"], capsys)
    assert code == 0, err
    latents = fitted["borderline"].synthesizer_.latents
    allowed = {c: set(np.flatnonzero(labels == c)[latents[c].weights > 0].tolist()) for c in STRATEGY}
    records = []
    for tar in sorted(out.rglob("*.tar")):
        with tarfile.open(tar) as archive:
            for member in archive.getmembers():
                if member.name.endswith(".json"):
                    records.append(json.load(io.BytesIO(archive.extractfile(member).read())))
    synthetic = [r for r in records if r["synthetic"]]
    assert len(synthetic) == sum(n - int(np.sum(labels == c)) for c, n in STRATEGY.items())
    assert all(r["base"] in allowed[r["label"]] for r in synthetic)
    code, _, err = run_main([*args, "--sampler", "adasyn"], capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("Error:") and "differs in: sampler" in lines[0], err


@pytest.mark.parametrize("command", ["generate", "grid"])
def test_cli_refuses_an_unknown_sampler_in_one_line(command, tmp_path, capsys):
    out = tmp_path / ("out.png" if command == "grid" else "out")
    code, _, err = run_main([command, GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--sampler", "foo"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error:"), err
    assert "--sampler" in lines[0] and "'foo'" in lines[0] and "borderline" in lines[0]
    assert not out.exists()


def test_api_keeps_the_sampler_unchanged_until_fit_then_refuses_a_bad_one(data, tmp_path):
    with pytest.raises(InvalidInputError, match="`sampler`"):  # checked before the bundle is read
        DeepSMOTE(tmp_path / "no-bundle", sampler="foo").fit(*data)
    sampler = DeepSMOTE(GOLDEN_BUNDLE, sampler="foo")
    assert sampler.get_params()["sampler"] == "foo"
    refusal = r"^`sampler` must be one of smote, borderline, adasyn, remix, got 'foo'$"
    with pytest.raises(InvalidInputError, match=refusal):
        sampler.fit_resample(*data)
    assert sampler.set_params(sampler="adasyn").get_params()["sampler"] == "adasyn"
    assert "sampler='adasyn'" in repr(sampler)
    out = tmp_path / "never"
    for bundle in (GOLDEN_BUNDLE, tmp_path / "no-bundle"):
        with pytest.raises(InvalidInputError, match="`sampler`"):
            generate_dataset(bundle, read_dataset(fmnist_mini()), out, sampler="borderline-2", progress=False)
    assert not out.exists()


def test_grid_draws_with_the_sampler(tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = ["grid", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--per-row", 3, "--synthetic-rows", 1]
    code, _, err = run_main([*args, "--sampler", "adasyn"], capsys)
    assert code == 0 and out.is_file(), err
    smote = tmp_path / "smote.png"
    code, _, err = run_main([*args[:4], smote, *args[5:]], capsys)
    assert code == 0, err
    assert out.read_bytes() != smote.read_bytes()
