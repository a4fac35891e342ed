"""Mixing: `--synthetic-share F` fills F of each gap with synthetic images, the rest with real repeats."""

from __future__ import annotations

import csv
import io
import json
import tarfile

import numpy as np
import pytest
from deepsmote.runtime import DeepSMOTE, open_dataset, read_dataset
from deepsmote.runtime.mixing import REPEAT_KEY, split
from deepsmote.runtime.plan import Shard, plan_mixed, plan_shards
from golden import GOLDEN_BUNDLE
from helpers import run_main
from PIL import Image

STRATEGY = {6: 33, 7: 17, 8: 13, 9: 9}  # gaps 13, 7, 7, 5


@pytest.fixture(scope="module")
def data(fmnist_mini):
    return read_dataset(fmnist_mini)


def test_the_split_rounds_half_to_even():
    assert split(np.array([5, 3, 2, 1, 0, 7]), 0.5).tolist() == [2, 2, 1, 0, 0, 4]
    assert split(np.array([10, 5]), 0.1).tolist() == [1, 0]  # 0.5 rounds to 0, as the decimal 0.1 says
    assert split(np.array([9]), 0.0).tolist() == [0] and split(np.array([9]), 1.0).tolist() == [9]


def test_every_plan_gives_each_class_its_exact_share():
    new, synthetic = np.array([2500, 7, 0, 1]), np.array([1250, 4, 0, 0])
    shards = plan_shards(new, 1000, synthetic)
    per_class = [sum(s.synthetic_count for s in shards if s.class_index == c) for c in range(4)]
    assert per_class == synthetic.tolist()
    assert [s.repeats for s in shards if s.class_index == 0] == [500, 500, 250]
    mixed = plan_mixed(new, np.array([3, 3, 3, 3]), 64, synthetic)
    made = np.zeros(4, int)
    for unit in mixed:
        for shard in unit.synthetic:
            made[shard.class_index] += shard.synthetic_count
    assert made.tolist() == synthetic.tolist()
    # Without mixing the shards are as before.
    unmixed = [Shard(0, 0, 1000), Shard(0, 1, 1000), Shard(0, 2, 500), Shard(1, 0, 7), Shard(3, 0, 1)]
    assert list(plan_shards(new, 1000)) == unmixed


def test_the_sampler_returns_synthetic_then_real_repeats_after_the_originals(data):
    sampler = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy=STRATEGY, random_state=3, synthetic_share=0.5)
    X, y = sampler.fit_resample(data.images, data.labels)
    n = len(data.labels)
    np.testing.assert_array_equal(X[:n], data.images)
    added, labels = X[n:], y[n:]
    assert np.bincount(labels, minlength=10)[6:].tolist() == [13, 7, 7, 5]
    start = 0
    for c, synthetic in zip((6, 7, 8, 9), (6, 4, 4, 2), strict=True):
        count = int((labels == c).sum())
        part = added[start : start + count]
        real = data.images[data.labels == c]
        is_real = [any(np.array_equal(image, r) for r in real) for image in part]
        assert is_real == [False] * synthetic + [True] * (count - synthetic), c
        # Random oversampling's draw: uniform with replacement, from the shard's own seed.
        rng = np.random.default_rng(np.random.SeedSequence([3, c, 0, *REPEAT_KEY]))
        np.testing.assert_array_equal(part[synthetic:], real[rng.integers(0, len(real), size=count - synthetic)])
        start += count
    again = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy=STRATEGY, random_state=3, synthetic_share=0.5, batch_size=3)
    np.testing.assert_array_equal(again.fit_resample(data.images, data.labels)[0], X)
    # The synthetic ones are those of an unmixed job of that many samples (the same seeds).
    smaller = {c: int((data.labels == c).sum()) + s for c, s in zip((6, 7, 8, 9), (6, 4, 4, 2), strict=True)}
    unmixed = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy=smaller, random_state=3).fit_resample(data.images, data.labels)
    np.testing.assert_array_equal(unmixed[0][n : n + 6], added[:6])


def test_repeats_are_drawn_from_their_own_seed():
    key = np.random.SeedSequence([7, 3, 2, *REPEAT_KEY]).generate_state(4)
    synthetic_keys = [np.random.SeedSequence([7, 3, 2, *r]).generate_state(4) for r in ([], *([r] for r in range(60)))]
    assert not any(np.array_equal(key, k) for k in synthetic_keys)


def test_a_resume_with_another_share_is_refused(fmnist_mini, tmp_path, capsys):
    args = ["generate", GOLDEN_BUNDLE, fmnist_mini, "--out", tmp_path / "o", "--strategy", '{"9": 8}', "-q"]
    assert run_main([*args, "--synthetic-share", "0.5"], capsys)[0] == 0
    code, _, err = run_main([*args, "--synthetic-share", "0.25"], capsys)
    assert code == 1 and "differs in: synthetic_share" in err


@pytest.mark.parametrize("fmt", ["npz", "webdataset"])
def test_the_job_marks_each_sample_and_repeats_real_images_of_its_class(data, fmnist_mini, tmp_path, capsys, fmt):
    out = tmp_path / "out"
    args = ["generate", GOLDEN_BUNDLE, fmnist_mini, "--out", out, "--strategy", json.dumps(STRATEGY), "--format", fmt]
    code, stdout, err = run_main(
        [*args, "--synthetic-share", "0.5", "--include-originals", "--shard-size", "16"], capsys
    )
    assert code == 0, err
    assert "wrote 900 originals, 16 synthetic images and 16 repeats of real ones" in stdout and "repeated" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["synthetic_share"] == 0.5
    assert summary["counts"]["6"] == {"original": 20, "synthetic": 6, "repeated": 7, "total": 33}
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    images = written_images(out, rows)
    assert len(rows) == 900 + 32
    flags = np.array([int(r["synthetic"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    assert np.bincount(labels[flags == 1], minlength=10)[6:].tolist() == [6, 4, 4, 2]
    assert (
        np.bincount(labels[flags == 0], minlength=10).tolist()
        == (data.class_counts() + np.array([0] * 6 + [7, 3, 3, 3])).tolist()
    )
    real = {c: {data.images[i].tobytes() for i in np.flatnonzero(data.labels == c)} for c in range(10)}
    for image, label, flag in zip(images, labels, flags, strict=True):
        # An original or a repeat is a real image of its class; a synthetic one is none of them.
        assert (image.tobytes() in real[label]) == (flag == 0)
    if fmt == "webdataset":
        for image, record in zip(images, webdataset_records(out), strict=True):
            if not record["synthetic"]:
                np.testing.assert_array_equal(data.images[record["base"]], image)
                assert data.labels[record["base"]] == record["label"] and record["neighbor"] == record["base"]
            else:
                assert data.labels[record["neighbor"]] == record["label"] and 0 <= record["gap"] < 1


def written_images(out, rows):
    """The image of each manifest row, read from the file it names."""
    images = []
    for row in rows:
        if row["file"].endswith(".npz"):
            with np.load(out / row["file"]) as f:
                images.append(f["images"][int(row["key"])])
        else:
            with tarfile.open(out / row["file"]) as tar:
                images.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(f"{row['key']}.png").read()))))
    return images


def webdataset_records(out):
    """The .json record of every sample of the WebDataset shards, in shard and key order."""
    records = []
    for path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    records.append(json.loads(tar.extractfile(member).read()))
    return records


def test_a_share_outside_zero_one_is_refused(fmnist_mini, tmp_path, capsys):
    code, _, err = run_main(
        ["generate", GOLDEN_BUNDLE, fmnist_mini, "--out", tmp_path / "o", "--synthetic-share", "1.5"], capsys
    )
    assert code == 2 and err.count("\n") == 1 and "--synthetic-share must lie in [0, 1]" in err, err
    with pytest.raises(ValueError, match="`synthetic_share` must lie in"):
        DeepSMOTE(GOLDEN_BUNDLE, synthetic_share=-0.1).fit(np.zeros((2, 28, 28), np.uint8), np.array([0, 1]))


def test_a_share_of_zero_is_random_oversampling_and_needs_no_neighbours(data):
    # A class of one image cannot be interpolated, but can be repeated.
    X = np.concatenate([data.images[:30], data.images[data.labels == 9][:1]])
    y = np.concatenate([np.zeros(30, int), [1]])
    X_res, y_res = DeepSMOTE(GOLDEN_BUNDLE, random_state=0, synthetic_share=0.0).fit_resample(X, y)
    assert (y_res[31:] == 1).all() and len(y_res) == 60
    assert all(np.array_equal(image, X[30]) for image in X_res[31:])


@pytest.mark.parametrize("sampler", ["smote", "borderline"])
def test_data_read_in_batches_gives_the_bytes_of_data_in_memory(data, fmnist_mini, sampler):
    # The streamed fit reads the repeats again from DATA by index; the in-memory one holds them.
    options = {"sampling_strategy": STRATEGY, "random_state": 3, "synthetic_share": 0.5, "sampler": sampler}
    held = DeepSMOTE(GOLDEN_BUNDLE, **options).fit_resample(data.images, data.labels)
    streamed = DeepSMOTE(GOLDEN_BUNDLE, **options).fit_resample(open_dataset(fmnist_mini))
    np.testing.assert_array_equal(streamed[0], held[0])
    np.testing.assert_array_equal(streamed[1], held[1])
