"""Latent Remix (``sampler='remix'``) against an independent reference, through the API, the CLI and
every output format.

The reference encodes with its own onnxruntime sessions, draws each shard's bases, partners and
partner weights from ``SeedSequence([seed, class, shard])`` in the documented order, mixes the
codes row by row (`naive.remix_mix`), decodes, rounds, and labels each mix by Remix's rule written
out case by case (`naive.remix_target`). The images must be its bytes and the targets its values.
"""

from __future__ import annotations

import json
import tarfile

import naive
import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, InvalidInputError, read_dataset
from deepsmote.runtime.remix import RemixSettings, remix_targets
from golden import GOLDEN_BUNDLE
from helpers import cpu_session
from helpers import run_cli as _run_cli

SEED = 5
# Classes 7 (10 images), 8 (6) and 9 (4) grow; shards of 40 cut class 7 in three.
NEW = {7: 90, 8: 30, 9: 16}
SHARD_SIZE = 40
K = 3


def run_cli(*args: object) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `deepsmote ARGS` in a fresh interpreter."""
    result = _run_cli(*map(str, args), check=False)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    dataset = read_dataset(fmnist_mini())
    return dataset.images, dataset.labels


@pytest.fixture(scope="module")
def codes(data) -> np.ndarray:
    images, _ = data
    encoder = cpu_session(GOLDEN_BUNDLE / "encoder.onnx")
    x = (images.astype(np.float32) / np.float32(127.5) - np.float32(1.0))[:, None]
    return np.concatenate([encoder.run(None, {"image": x[i : i + 256]})[0] for i in range(0, len(x), 256)])


def reference(codes, labels, settings: RemixSettings, new=NEW, shard_size=SHARD_SIZE, seed=SEED):
    """Per class, the reference's uint8 images (m, 28, 28) and targets (m, K), in shard order."""
    decoder = cpu_session(GOLDEN_BUNDLE / "decoder_cpu.onnx")
    counts = np.bincount(labels)
    out = {}
    for c, total in new.items():
        members = np.flatnonzero(labels == c)
        if settings.partner == "nearest-other":
            others = np.flatnonzero(labels != c)
            distances = naive.sq_distances_diff(np.concatenate([codes[members], codes[others]]))[: len(members)]
            nearest = np.argsort(distances[:, len(members) :], axis=1, kind="stable")[:, :K]
            nearest = others[nearest]
        weights = naive.adasyn_ratio(codes, labels, c, K) if settings.base == "adasyn" else None
        images, targets = [], []
        for s, start in enumerate(range(0, total, shard_size)):
            m = min(shard_size, total - start)
            rng = np.random.default_rng(np.random.SeedSequence([seed, c, s]))
            if weights is None:
                base = rng.integers(0, len(members), size=m, dtype=np.int64)
            else:
                base = naive.weighted_draw(rng.random(m), weights)
            if settings.partner == "uniform":
                partner = rng.integers(0, len(labels), size=m, dtype=np.int64)
            else:
                partner = nearest[base, rng.integers(0, K, size=m, dtype=np.int64)]
            weight = rng.random(m, dtype=np.float32) * np.float32(1 - settings.min_weight)
            z = naive.remix_mix(codes[members[base]], codes[partner], weight)
            decoded = decoder.run(None, {"latent": z})[0]
            images.append(np.rint((np.clip(decoded, -1, 1) + np.float32(1)) * np.float32(127.5)).astype(np.uint8))
            targets += [
                naive.remix_target(c, labels[p], w, counts, settings.kappa, settings.tau, len(counts))
                for p, w in zip(partner.tolist(), weight.tolist(), strict=True)
            ]
        out[c] = np.concatenate(images)[:, 0], np.asarray(targets, dtype=np.float32)
    return out


def api(data, threads: int = 1, epoch: int = 0, **remix):
    images, labels = data
    sampler = DeepSMOTE(
        GOLDEN_BUNDLE,
        sampling_strategy={c: int(np.sum(labels == c)) + n for c, n in NEW.items()},
        k_neighbors=K,
        random_state=SEED,
        shard_size=SHARD_SIZE,
        n_threads=threads,
        sampler="remix",
        **remix,
    ).fit(images, labels)
    return sampler.resample(epoch, return_targets=True)


def split_by_class(X, y, T, n_real):
    """The synthetic part of a fit_resample result, per class, as (images, targets)."""
    return {c: (X[n_real:][y[n_real:] == c], T[n_real:][y[n_real:] == c]) for c in NEW}


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_api_gives_the_reference_bytes_and_targets(data, codes, threads):
    expected = reference(codes, data[1], RemixSettings())
    got = split_by_class(*api(data, threads), len(data[1]))
    for c in NEW:
        np.testing.assert_array_equal(got[c][0], expected[c][0])
        np.testing.assert_allclose(got[c][1], expected[c][1], rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "remix",
    [
        {"remix_partner": "nearest-other"},
        {"remix_min_weight": 0.1, "remix_kappa": 2.0, "remix_tau": 0.3},
        {"remix_base": "adasyn"},
    ],
    ids=["nearest-other", "settings", "adasyn-bases"],
)
def test_partner_rule_and_settings_follow_the_reference(data, codes, remix):
    settings = RemixSettings(**{name.removeprefix("remix_"): value for name, value in remix.items()})
    expected = reference(codes, data[1], settings)
    got = split_by_class(*api(data, **remix), len(data[1]))
    for c in NEW:
        np.testing.assert_array_equal(got[c][0], expected[c][0])
        np.testing.assert_allclose(got[c][1], expected[c][1], rtol=0, atol=1e-7)


def test_targets_sum_to_one_and_real_samples_are_one_hot(data):
    X, _, T = api(data)
    n = len(data[1])
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-6)
    assert T.dtype == np.float32 and T.shape == (len(X), 10)
    np.testing.assert_array_equal(T[:n], np.eye(10, dtype=np.float32)[data[1]])
    # Some mixes keep the minority label alone (the hard-label rule), some are soft.
    synthetic = T[n:]
    assert (synthetic.max(axis=1) == 1).any() and (synthetic.max(axis=1) < 1).any()


@pytest.mark.parametrize(
    ("n_base", "n_partner", "weight", "expected_base"),
    [
        (10, 30, 0.49, 1.0),  # n_p = κ·n_b exactly, g < τ: the base's class alone
        (10, 29, 0.49, 1 - np.float32(0.49)),  # n_p just below κ·n_b: mixed
        (10, 30, 0.5, 0.5),  # g = τ: mixed
        (10, 30, np.nextafter(np.float32(0.5), np.float32(0)), 1.0),  # g just below τ
        (30, 10, 0.51, 0.0),  # the mirror case: the base's weight below τ, the partner's class alone
        (30, 10, 0.5, 0.5),  # λ = τ: mixed
    ],
)
def test_label_rule_at_its_kappa_and_tau_boundaries(n_base, n_partner, weight, expected_base):
    counts = np.array([n_base, n_partner])
    got = remix_targets(0, np.array([1]), np.array([weight], dtype=np.float32), counts, kappa=3.0, tau=0.5)
    expected = naive.remix_target(0, 1, weight, counts, 3.0, 0.5, 2)
    assert got[0, 0] == pytest.approx(expected_base, abs=1e-7)
    np.testing.assert_allclose(got[0], expected, atol=1e-7)


def test_a_partner_of_the_same_class_gives_a_hard_label():
    got = remix_targets(1, np.array([1]), np.array([0.3], dtype=np.float32), np.array([5, 5]), 3.0, 0.5)
    np.testing.assert_array_equal(got, [[0.0, 1.0]])


def test_epochs_draw_fresh_samples_and_epoch_0_is_fit_resample(data):
    images, labels = data
    sampler = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy="auto", random_state=SEED, sampler="remix")
    X0, y0, T0 = sampler.fit_resample(images, labels, return_targets=True)
    again = sampler.resample(0, return_targets=True)
    one, one_again = sampler.resample(1, return_targets=True), sampler.resample(1, return_targets=True)
    two = sampler.resample(2)
    for a, b in zip((X0, y0, T0), again, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(one, one_again, strict=True):
        np.testing.assert_array_equal(a, b)
    n = len(labels)
    np.testing.assert_array_equal(one[0][:n], images)  # the originals stay
    np.testing.assert_array_equal(one[1], y0)  # the same counts per class, in the same order
    assert (one[0][n:] != X0[n:]).any(axis=(1, 2)).mean() > 0.9
    assert (two[0][n:] != one[0][n:]).any(axis=(1, 2)).mean() > 0.9


@pytest.mark.parametrize("epoch", [-1, 1.5, True])
def test_a_bad_epoch_is_refused(data, epoch):
    images, labels = data
    sampler = DeepSMOTE(GOLDEN_BUNDLE, random_state=0, sampler="remix").fit(images, labels)
    with pytest.raises(InvalidInputError, match="`epoch` must be an integer >= 0"):
        sampler.resample(epoch)


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("remix_min_weight", 1.0, "remix_min_weight"),
        ("remix_min_weight", -0.1, "remix_min_weight"),
        ("remix_kappa", 0.5, "remix_kappa"),
        ("remix_kappa", float("inf"), "remix_kappa"),
        ("remix_tau", 1.5, "remix_tau"),
        ("remix_tau", float("nan"), "remix_tau"),
        ("remix_partner", "nearest", "remix_partner"),
    ],
)
def test_bad_remix_parameters_are_refused_as_value_errors(data, param, value, message):
    with pytest.raises(ValueError, match=message):
        DeepSMOTE(GOLDEN_BUNDLE, sampler="remix", **{param: value}).fit(*data)


def test_the_gate_is_refused_with_remix(data):
    with pytest.raises(InvalidInputError, match="cannot gate latent Remix"):
        DeepSMOTE(GOLDEN_BUNDLE, sampler="remix", filter_threshold=0.9).fit(*data)


# --- the CLI and the formats ------------------------------------------------------------------


STRATEGY = json.dumps({str(c): int(n) for c, n in {7: 100, 8: 36, 9: 20}.items()})


# The job of the CLI tests: the new samples alone (the default adds the originals, one-hot).
JOB = ["--strategy", STRATEGY, "--sampler", "remix", "--seed", SEED, "--k", K, "--shard-size", SHARD_SIZE]


def _generate(tmp_path, fmt, *extra, synthetic_only=True):
    out = tmp_path / fmt
    only = ["--synthetic-only"] if synthetic_only else []
    code, _, err = run_cli("generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--format", fmt, *JOB, *only, *extra)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def cli_outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remix-cli")
    return {fmt: _generate(tmp, fmt) for fmt in ("npz", "webdataset", "parquet")}


def test_cli_npz_holds_the_reference_bytes_and_targets(cli_outputs, data, codes):
    expected = reference(codes, data[1], RemixSettings())
    for c in NEW:
        shards = sorted(cli_outputs["npz"].glob(f"class-{c:04d}-shard-*.npz"))
        with_targets = [np.load(p) for p in shards]
        images = np.concatenate([f["images"] for f in with_targets])
        targets = np.concatenate([f["targets"] for f in with_targets])
        np.testing.assert_array_equal(images, expected[c][0])
        np.testing.assert_allclose(targets, expected[c][1], atol=1e-7)
        assert all(f["targets"].dtype == np.float32 for f in with_targets)


def _npz_targets(out):
    return np.concatenate([np.load(p)["targets"] for p in sorted(out.glob("*.npz"))])


def test_webdataset_and_parquet_carry_the_same_targets_sample_for_sample(cli_outputs):
    # Both write the mixed-class units (the same draws, in the same order); npz writes per-class
    # units, whose targets are the API's (above).
    import pyarrow.parquet as pq

    records = []
    for shard in sorted((cli_outputs["webdataset"] / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            records += [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]
    tables = [pq.read_table(p) for p in sorted((cli_outputs["parquet"] / "data").glob("*.parquet"))]
    rows = [row for table in tables for row in table.select(["label", "base", "targets"]).to_pylist()]
    assert len(rows) == len(records) == sum(NEW.values())
    for record, row in zip(records, rows, strict=True):
        assert (record["label"], record["base"]) == (row["label"], row["base"])
        np.testing.assert_array_equal(np.float32(record["targets"]), np.float32(row["targets"]))
        assert sum(record["targets"]) == pytest.approx(1.0, abs=1e-6)
    features = json.loads(tables[0].schema.metadata[b"huggingface"])["info"]["features"]
    assert features["targets"] == {"_type": "Sequence", "feature": {"_type": "Value", "dtype": "float32"}}


def test_each_record_target_follows_the_rule_from_its_own_provenance(cli_outputs, data):
    counts = np.bincount(data[1])
    for shard in sorted((cli_outputs["webdataset"] / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in (m for m in tar.getmembers() if m.name.endswith(".json")):
                r = json.load(tar.extractfile(member))
                partner_class = int(data[1][r["neighbor"]])
                expected = naive.remix_target(r["label"], partner_class, r["gap"], counts, 3.0, 0.5, 10)
                np.testing.assert_allclose(r["targets"], expected, atol=1e-7)


def test_manifest_names_each_partner_class_and_weight(cli_outputs, data):
    import csv

    rows = list(csv.DictReader((cli_outputs["npz"] / "manifest.csv").open()))
    assert {"partner_class", "weight"} <= set(rows[0])
    targets = _npz_targets(cli_outputs["npz"])
    for row, target in zip(rows, targets, strict=True):
        label, partner = int(row["label"]), int(row["partner_class"])
        weight = float(row["weight"])
        if partner != label:
            # The base's share of the label is its weight, unless the hard-label rule applied.
            assert target[label] == pytest.approx(weight, abs=1e-6) or target[label] in (0.0, 1.0)
            assert weight >= 0.5


def test_imagefolder_refuses_soft_labels_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "images"
    code, _, err = run_cli(
        "generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--sampler", "remix", "--format", "imagefolder"
    )
    assert code != 0
    assert "--hard-labels" in err and "npz" in err and "webdataset" in err and "parquet" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_hard_labels_write_an_imagefolder_without_targets(tmp_path):
    out = _generate(tmp_path, "imagefolder", "--hard-labels")
    assert len(list((out / "7").glob("*.png"))) == 90
    npz = _generate(tmp_path, "npz", "--hard-labels")
    assert all("targets" not in np.load(p).files for p in npz.glob("*.npz"))


def test_remix_options_without_remix_are_refused(tmp_path):
    code, _, err = run_cli(
        "generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", tmp_path / "o", "--remix-kappa", "2", "--format", "npz"
    )
    assert code != 0 and "--sampler remix" in err
    assert not (tmp_path / "o").exists()


def test_a_rerun_resumes_and_other_remix_settings_are_refused(tmp_path):
    from helpers import tree_digest

    out = _generate(tmp_path, "npz")
    before = tree_digest(out)
    _generate(tmp_path, "npz")  # the same job again: every unit is done, nothing changes
    assert tree_digest(out) == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_generated_this_run"] == 0 and summary["soft_labels"] is True
    code, _, err = run_cli(
        "generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--format", "npz", *JOB, "--synthetic-only",
        "--remix-kappa", "2",
    )  # fmt: skip
    assert code != 0 and "remix" in err and "--overwrite" in err
    assert tree_digest(out) == before


def test_with_the_originals_webdataset_loads_in_datasets_with_one_target_per_sample(tmp_path, data):
    datasets = pytest.importorskip("datasets")
    out = _generate(tmp_path, "webdataset", synthetic_only=False)
    loaded = datasets.load_dataset("webdataset", data_dir=str(out / "shards"), split="train")
    records = loaded["json"]
    assert len(records) == len(data[1]) + sum(NEW.values())
    real = [r for r in records if not r["synthetic"]]
    assert len(real) == len(data[1])
    assert all(r["targets"][r["label"]] == 1.0 and sum(r["targets"]) == 1.0 for r in real)
    assert all(len(r["targets"]) == 10 for r in records)
