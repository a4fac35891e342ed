"""Every output format read back with the libraries that training stacks use.

ImageFolder by torchvision's documented class-discovery rule (torchvision cannot be installed
beside the pinned torch) and by Hugging Face ``datasets``; WebDataset by ``webdataset`` and
``ray.data``; Parquet by ``datasets`` and ``pyarrow``; NPZ by ``read_dataset``. Each check counts,
labels and class order, with class names ``01`` and ``1`` that must stay two classes.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from deepsmote.runtime import read_dataset
from helpers import run_main
from PIL import Image

GOLDEN_BUNDLE = Path(__file__).resolve().parent / "data" / "golden" / "bundle"
CLASSES = ("01", "1", "b")
PER_CLASS = {"01": 30, "1": 10, "b": 5}
# torchvision.datasets.folder.IMG_EXTENSIONS
TORCHVISION_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@pytest.fixture(scope="module")
def names_data(tmp_path_factory, fmnist_mini) -> Path:
    """An ImageFolder DATA whose class names 01 and 1 are the same number."""
    images = read_dataset(fmnist_mini).images
    root = tmp_path_factory.mktemp("names") / "data"
    start = 0
    for name, n in PER_CLASS.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(images[start + i]).save(root / name / f"{i:03d}.png")
        start += n
    return root


def generate(data: Path, out: Path, fmt: str, capsys, *extra: object) -> dict:
    args = ["generate", GOLDEN_BUNDLE, data, "--out", out, "--format", fmt, "--shard-size", 16, "--quiet", *extra]
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    return json.loads((out / "summary.json").read_text())


def torchvision_find_classes(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """torchvision.datasets.ImageFolder's documented rule: every directory under root is a class
    (sorted by name, hidden ones included), every file with an image extension in it a sample."""
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    samples = []
    for index, name in enumerate(classes):
        for folder, _, files in sorted(os.walk(root / name, followlinks=True)):
            samples += [
                (str(Path(folder) / f), index) for f in sorted(files) if f.lower().endswith(TORCHVISION_EXTENSIONS)
            ]
    return classes, samples


def test_imagefolder_loads_as_it_is_in_torchvision_and_datasets(names_data, tmp_path, capsys):
    # The default output is the whole balanced set: class 01, the majority, gets no new samples and
    # still has its folder, so both loaders' numbering by sorted folder name is the job's.
    out = tmp_path / "out"
    summary = generate(names_data, out, "imagefolder", capsys)
    assert summary["classes"] == list(CLASSES) and summary["counts"]["01"]["synthetic"] == 0
    classes, samples = torchvision_find_classes(out)
    assert classes == list(CLASSES)  # nothing of the bookkeeping counts as a class
    assert Counter(label for _, label in samples) == {0: 30, 1: 30, 2: 30}
    manifest = {row["file"]: int(row["label"]) for row in csv.DictReader((out / "manifest.csv").open())}
    assert {str(Path(path).relative_to(out)): label for path, label in samples} == manifest

    import datasets

    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    # metadata.csv carries the labels (and the provenance) in place of the folder names
    assert Counter(loaded["label"]) == {0: 30, 1: 30, 2: 30}
    assert [CLASSES[label] for label in loaded["label"]] == loaded["class"]
    assert Counter(loaded["synthetic"]) == {False: 45, True: 45}
    data = read_dataset(names_data)
    for row in loaded.select_columns(["label", "base", "neighbor", "synthetic"]):
        assert data.labels[row["base"]] == data.labels[row["neighbor"]] == row["label"]


def test_imagefolder_metadata_lists_each_file_once_in_the_manifest_order(names_data, tmp_path, capsys):
    out = tmp_path / "out"
    generate(names_data, out, "imagefolder", capsys, "--strategy", '{"b": 12}')
    meta = list(csv.DictReader((out / "metadata.csv").open()))
    manifest = list(csv.DictReader((out / "manifest.csv").open()))
    assert [m["file_name"] for m in meta] == [r["file"] for r in manifest]
    assert sorted(m["file_name"] for m in meta) == sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    for m, r in zip(meta, manifest, strict=True):
        assert (m["label"], m["class"], m["synthetic"]) == (
            r["label"],
            r["class"],
            "true" if r["synthetic"] == "1" else "false",
        )
        if m["synthetic"] == "false":
            assert m["neighbor"] == m["base"] and float(m["gap"]) == 0.0
        else:
            assert 0 <= float(m["gap"]) < 1


def test_manifest_lists_every_written_file_with_label_class_and_flag(names_data, tmp_path, capsys):
    out = tmp_path / "out"
    generate(names_data, out, "imagefolder", capsys, "--include-originals")
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert sorted(r["file"] for r in rows) == files
    for row in rows:
        assert row["file"].split("/")[0] == row["class"] == CLASSES[int(row["label"])]
    synthetic = Counter((r["class"], r["synthetic"]) for r in rows)
    assert synthetic == {("01", "0"): 30, ("1", "0"): 10, ("1", "1"): 20, ("b", "0"): 5, ("b", "1"): 25}


@pytest.mark.parametrize("fmt", ["imagefolder", "npz", "webdataset", "parquet"])
def test_the_streamed_manifest_is_the_one_built_from_the_eager_plan(names_data, tmp_path, capsys, fmt):
    import naive
    from deepsmote.runtime.writers import make_writer

    out = tmp_path / "out"
    summary = generate(names_data, out, fmt, capsys, "--include-originals")
    counts = [summary["counts"][name]["original"] for name in CLASSES]
    new = [summary["counts"][name]["synthetic"] for name in CLASSES]
    eager = naive.plan_mixed_eager if fmt in ("webdataset", "parquet") else naive.plan_per_class_eager
    units = eager(np.array(new), np.array(counts), 16)
    expected = naive.manifest_csv_eager(units, make_writer(fmt, out, CLASSES).entries, CLASSES)
    assert (out / "manifest.csv").read_bytes() == expected


def test_npz_keeps_class_names_exactly(names_data, tmp_path, capsys):
    out = tmp_path / "out"
    generate(names_data, out, "npz", capsys, "--include-originals")
    back = read_dataset(out)
    assert back.classes == CLASSES
    assert back.class_counts().tolist() == [30, 30, 30]
    with np.load(next(out.glob("*.npz"))) as shard:
        assert shard["classes"].tolist() == list(CLASSES) and shard["labels"].dtype == np.int64


def test_webdataset_shards_mix_classes_and_carry_names_and_provenance(names_data, tmp_path, capsys):
    import webdataset as wds

    out = tmp_path / "out"
    generate(names_data, out, "webdataset", capsys, "--include-originals")
    shard_dir = out / "shards"
    names = sorted(p.name for p in shard_dir.iterdir())
    assert names == [f"train-{i:06d}.tar" for i in range(len(names))]  # nothing but shards
    pattern = f"{shard_dir}/train-{{000000..{len(names) - 1:06d}}}.tar"
    records = list(wds.WebDataset(pattern, shardshuffle=False).decode("rgb8").to_tuple("png", "cls", "json"))
    assert len(records) == 90
    for image, label, meta in records:
        assert image.shape == (28, 28, 3) and meta["label"] == label and meta["class"] == CLASSES[label]
        assert set(meta) == {"label", "class", "synthetic", "base", "neighbor", "gap"}
        if meta["synthetic"]:
            assert 0 <= meta["gap"] < 1 and meta["neighbor"] >= 0 and meta["base"] >= 0
        else:  # an original is its DATA image itself: no null where a synthetic sample has a number
            assert meta["gap"] == 0.0 and meta["neighbor"] == meta["base"] >= 0
    assert Counter(r[1] for r in records) == {0: 30, 1: 30, 2: 30}
    first = list(wds.WebDataset(str(shard_dir / names[0]), shardshuffle=False).to_tuple("cls"))
    assert len({int(c[0]) for c in first}) == 3  # every shard holds every class


def test_webdataset_synthetic_provenance_matches_the_data(names_data, tmp_path, capsys):
    # base and neighbour are DATA indices of the sample's own class
    import webdataset as wds

    out = tmp_path / "out"
    generate(names_data, out, "webdataset", capsys, "--synthetic-only")
    data = read_dataset(names_data)
    metas = [
        m
        for (m,) in wds.WebDataset(str(out / "shards" / "train-{000000..000002}.tar"), shardshuffle=False)
        .decode()
        .to_tuple("json")
    ]
    assert len(metas) == 45 and all(m["synthetic"] for m in metas)
    for m in metas:
        assert data.labels[m["base"]] == data.labels[m["neighbor"]] == m["label"]


def test_mixed_webdataset_batches_hold_the_majority_in_its_share(names_data, tmp_path, capsys):
    import webdataset as wds

    out = tmp_path / "out"
    # synthetic only: 50 of class 1 and 15 of class b, in shards of 8
    generate(
        names_data, out, "webdataset", capsys, "--synthetic-only", "--strategy", '{"1": 60, "b": 20}', "--shard-size", 8
    )
    labels = [
        int(c)
        for (c,) in wds.WebDataset(str(out / "shards" / "train-{000000..000008}.tar"), shardshuffle=False).to_tuple(
            "cls"
        )
    ]
    share = labels.count(1) / len(labels)
    assert share == 50 / 65
    stream = wds.WebDataset(str(out / "shards" / "train-{000000..000008}.tar"), shardshuffle=9, seed=0)
    batches = stream.shuffle(8, seed=0).to_tuple("cls").batched(8, partial=False)
    shares = [np.mean([int(c) == 1 for c in batch[0]]) for batch in batches]
    assert len(shares) >= 7
    assert np.median(np.abs(np.asarray(shares) - share)) <= 0.15


def test_an_overwritten_imagefolder_job_keeps_no_metadata_of_the_old_one(names_data, tmp_path, capsys):
    out = tmp_path / "out"
    generate(names_data, out, "imagefolder", capsys, "--strategy", '{"b": 40}', "--shard-size", 8)
    generate(names_data, out, "imagefolder", capsys, "--strategy", '{"b": 12}', "--overwrite")
    meta = list(csv.DictReader((out / "metadata.csv").open()))
    assert sorted(m["file_name"] for m in meta) == sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert len(meta) == 30 + 10 + 12
    rows = sorted(p.name for p in out.glob(".deepsmote-rows-*"))
    assert rows == sorted(
        f".deepsmote-rows-{p.name.removeprefix('.deepsmote-done-')}.csv" for p in out.glob(".deepsmote-done-*")
    )


def test_webdataset_with_the_originals_loads_in_datasets_with_one_schema(names_data, tmp_path, capsys):
    import datasets

    out = tmp_path / "out"
    generate(names_data, out, "webdataset", capsys)
    loaded = datasets.load_dataset("webdataset", data_dir=str(out / "shards"), split="train")
    assert len(loaded) == 90
    metas = loaded["json"]
    assert Counter(m["synthetic"] for m in metas) == {False: 45, True: 45}
    assert all(value is not None for m in metas for value in m.values())
    assert [m["label"] for m in metas] == loaded["cls"]


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_every_full_shard_holds_the_job_share_of_real_images(names_data, tmp_path, capsys, fmt):
    # 45 originals of 90 (30 of 01, 10 of 1, 5 of b): each shard of 16 about half real, not the first ones all real
    out = tmp_path / "out"
    generate(names_data, out, fmt, capsys)
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    shards: dict[str, list[int]] = {}
    for row in rows:
        shards.setdefault(row["file"], []).append(row["synthetic"] == "0")
    full = [flags for flags in shards.values() if len(flags) == 16]
    assert len(full) == 5
    for flags in full:
        assert abs(np.mean(flags) - 0.5) <= 0.07


def test_ray_reads_the_webdataset_folder_and_the_parquet_rows(names_data, tmp_path, capsys):
    ray = pytest.importorskip("ray")
    generate(names_data, tmp_path / "wds", "webdataset", capsys, "--include-originals")
    generate(names_data, tmp_path / "pq", "parquet", capsys, "--include-originals")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        samples = ray.data.read_webdataset(str(tmp_path / "wds" / "shards")).take_all()
        rows = ray.data.read_parquet(str(tmp_path / "pq" / "data")).take_all()
    finally:
        ray.shutdown()
    assert len(samples) == 90
    assert len(rows) == 90 and Counter(r["class"] for r in rows) == {"01": 30, "1": 30, "b": 30}
    assert all(r["class"] == CLASSES[r["label"]] for r in rows)


def test_parquet_reads_in_datasets_with_an_image_feature_and_in_pyarrow_as_rows(names_data, tmp_path, capsys):
    import datasets
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    generate(names_data, out, "parquet", capsys, "--include-originals")
    loaded = datasets.load_dataset("parquet", data_dir=str(out / "data"), split="train")
    assert isinstance(loaded.features["image"], datasets.Image)
    assert loaded.features["label"].names == list(CLASSES)
    assert Counter(loaded["label"]) == {0: 30, 1: 30, 2: 30}
    assert loaded[0]["image"].size == (28, 28)
    table = pq.read_table(out / "data")
    assert table.num_rows == 90 and set(table.column("class").to_pylist()) == set(CLASSES)
    rows = table.to_pylist()
    assert all(r["class"] == CLASSES[r["label"]] for r in rows)
    assert sum(r["synthetic"] for r in rows) == 45


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_mixed_formats_resume_to_the_same_bytes(names_data, tmp_path, capsys, fmt):
    from helpers import tree_digest

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    generate(names_data, whole, fmt, capsys, "--include-originals")
    generate(names_data, resumed, fmt, capsys, "--include-originals")
    victims = sorted(p for p in resumed.glob(".deepsmote-done-*"))[1:3]
    for mark in victims:
        mark.unlink()
    for file in (resumed / ("shards" if fmt == "webdataset" else "data")).iterdir():
        if any(file.name.endswith(f"-{m.name.removeprefix('.deepsmote-done-')}.{file.suffix[1:]}") for m in victims):
            file.unlink()
    summary = generate(names_data, resumed, fmt, capsys, "--include-originals")
    assert summary["shards"]["skipped_as_done"] == summary["shards"]["total"] - 2
    rows = list(csv.DictReader((resumed / "manifest.csv").open()))
    redone = [
        r
        for r in rows
        if any(
            r["file"].endswith(f"-{m.name.removeprefix('.deepsmote-done-')}.{r['file'].rsplit('.', 1)[1]}")
            for m in victims
        )
    ]
    assert summary["images_generated_this_run"] == len(redone) > 0
    assert tree_digest(resumed) == tree_digest(whole)
    assert not (resumed / ".deepsmote.lock").exists()


def test_npz_keeps_the_class_order_of_the_input(tmp_path, capsys, fmnist_mini):
    # numeric classes run in numeric order (2 before 10), which sorting the names would not keep
    images = read_dataset(fmnist_mini).images[:12]
    data = tmp_path / "data.npz"
    np.savez(data, images=images, labels=np.array([2] * 8 + [10] * 4))
    out = tmp_path / "out"
    generate(data, out, "npz", capsys, "--synthetic-only")
    back = read_dataset(out)
    assert back.classes == ("2", "10") and back.class_counts().tolist() == [0, 4]


@pytest.mark.parametrize("fmt", ["imagefolder", "webdataset", "parquet"])
def test_pngs_encoded_on_several_threads_are_the_bytes_of_one(names_data, tmp_path, capsys, fmt):
    from helpers import tree_digest

    # Units of 64 images: four encoding tasks of 16 each, so three threads share them.
    one, three = tmp_path / "one", tmp_path / "three"
    generate(names_data, one, fmt, capsys, "--include-originals", "--shard-size", 64, "--threads", 1)
    generate(names_data, three, fmt, capsys, "--include-originals", "--shard-size", 64, "--threads", 3)
    assert tree_digest(three) == tree_digest(one)


def test_encode_pngs_keeps_the_order_on_any_number_of_threads():
    from deepsmote.runtime.writers import encode_png, encode_pngs

    images = np.random.default_rng(0).integers(0, 256, (70, 9, 7, 3), dtype=np.uint8)
    expected = [encode_png(image) for image in images]
    assert len(set(expected)) == len(images)  # else a reordering could pass
    for threads in (1, 2, 5):
        assert encode_pngs(images, threads) == expected
