"""Every output format holds, sample for sample, the images of the documented method.

Each format is read back by hand (PNGs, the npz arrays, the tar members, the Parquet rows) and
split into its units by file name; each unit's samples of a class, in written order, must be the
bytes of that unit's shard of the class as an independent reference makes them: the units by
`tests/naive.py`'s eager plans (one class per unit for ImageFolder and NPZ, every class in
proportion for WebDataset and Parquet), the codes by the reference's own onnxruntime sessions, the
neighbours by `naive.kneighbors`, the draws from ``SeedSequence([seed, class, shard])``, decoded
and rounded. A unit fed other codes (the bases, another shard's draws) fails here in its format.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import naive
import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import read_dataset
from golden import GOLDEN_BUNDLE
from helpers import cpu_session, run_cli
from PIL import Image

K, SEED, SHARD_SIZE = 5, 6, 16
# Classes 5 (35 images), 7 (10) and 8 (6) grow by 25, 30 and 14.
TARGETS = {5: 60, 7: 40, 8: 20}
FORMATS = ("imagefolder", "npz", "webdataset", "parquet")


@pytest.fixture(scope="module")
def data():
    return read_dataset(fmnist_mini())


@pytest.fixture(scope="module")
def reference(data):
    """A function (class, shard index, count) -> the shard's uint8 images (count, 28, 28) by the method."""
    encoder = cpu_session(GOLDEN_BUNDLE / "encoder.onnx")
    decoder = cpu_session(GOLDEN_BUNDLE / "decoder_cpu.onnx")
    fitted = {}
    for c in TARGETS:
        x = (data.images[data.labels == c].astype(np.float32) / np.float32(127.5) - np.float32(1.0))[:, None]
        codes = np.concatenate([encoder.run(None, {"image": x[i : i + 256]})[0] for i in range(0, len(x), 256)])
        fitted[c] = codes, naive.kneighbors(naive.sq_distances_diff(codes), K)[0]

    def shard(c: int, index: int, m: int) -> np.ndarray:
        codes, neighbors = fitted[c]
        rng = np.random.default_rng(np.random.SeedSequence([SEED, c, index]))
        base = rng.integers(0, len(codes), size=m, dtype=np.int64)
        slot = rng.integers(0, neighbors.shape[1], size=m, dtype=np.int64)
        gap = rng.random(m, dtype=np.float32)
        decoded = decoder.run(None, {"latent": naive.interpolate(codes, neighbors, base, slot, gap)})[0]
        return np.rint((np.clip(decoded, -1, 1) + np.float32(1.0)) * np.float32(127.5)).astype(np.uint8)[:, 0]

    return shard


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _key(stem: str) -> tuple[str, int]:
    """(unit name, position) of a sample's file stem ``<unit>-<position>``."""
    unit, position = re.fullmatch(r"(.+)-(\d{5})", stem).groups()
    return unit, int(position)


def read_units(out: Path, fmt: str, classes: tuple[str, ...]) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Per unit name, its samples (label, uint8 image) in written order, read from the files alone."""
    samples: dict[str, dict[int, tuple[int, np.ndarray]]] = {}
    if fmt == "imagefolder":
        for label, name in enumerate(classes):
            for file in (out / name).glob("*.png") if (out / name).is_dir() else ():
                unit, position = _key(file.stem)
                samples.setdefault(unit, {})[position] = label, _png(file.read_bytes())
    elif fmt == "npz":
        for file in out.glob("*.npz"):
            with np.load(file) as arrays:
                samples[file.stem] = dict(enumerate(zip(arrays["labels"].tolist(), arrays["images"], strict=True)))
    elif fmt == "webdataset":
        for file in (out / "shards").glob("*.tar"):
            with tarfile.open(file) as tar:
                members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
            for name, png in members.items():
                if name.endswith(".png"):
                    stem = name.removesuffix(".png")
                    unit, position = _key(stem)
                    samples.setdefault(unit, {})[position] = int(members[f"{stem}.cls"]), _png(png)
    else:
        import pyarrow.parquet as pq

        for file in (out / "data").glob("*.parquet"):
            for row in pq.read_table(file).to_pylist():
                unit, position = _key(row["image"]["path"].removesuffix(".png"))
                samples.setdefault(unit, {})[position] = row["label"], _png(row["image"]["bytes"])
    return {unit: [by_position[i] for i in sorted(by_position)] for unit, by_position in samples.items()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_holds_the_reference_images_sample_for_sample(fmt, data, reference, tmp_path):
    out = tmp_path / fmt
    strategy = json.dumps({str(c): n for c, n in TARGETS.items()})
    args = ["generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--format", fmt, "--strategy", strategy]
    # The new samples alone, as the reference makes them (the default adds the originals).
    run_cli(*args, "--seed", SEED, "--k", K, "--shard-size", SHARD_SIZE, "--synthetic-only", "--quiet")
    new = np.zeros(len(data.classes), dtype=np.int64)
    for c, n in TARGETS.items():
        new[c] = n - np.sum(data.labels == c)
    plan = naive.plan_mixed_eager if fmt in ("webdataset", "parquet") else naive.plan_per_class_eager
    units = plan(new, None, SHARD_SIZE)
    # The plan's unit names are the samples' own: the reference names what each unit must hold.
    written = read_units(out, fmt, data.classes)
    assert sorted(written) == sorted(unit.name for unit in units)
    for unit in units:
        samples = written[unit.name]
        assert len(samples) == unit.count == sum(shard.count for shard in unit.synthetic)
        for shard in unit.synthetic:
            got = np.stack([image for label, image in samples if label == shard.class_index])
            expected = reference(shard.class_index, shard.shard_index, shard.count)
            assert got.tobytes() == expected.tobytes(), f"{fmt} unit {unit.name}, class {shard.class_index}"
    if fmt in ("webdataset", "parquet"):
        # The mixed units do hold several classes each: their interleaving was read back too.
        assert max(len(unit.synthetic) for unit in units) == len(TARGETS)
