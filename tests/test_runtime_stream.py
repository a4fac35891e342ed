"""DATA read in batches (`runtime/stream.py`): the same images, labels and bytes as reading DATA whole,
while a job holds one batch of images at a time."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, generate_dataset, load_bundle, read_dataset
from deepsmote.runtime import stream as stream_module
from deepsmote.runtime.bundle import models as models_module
from deepsmote.runtime.bundle import open_models
from deepsmote.runtime.codes import encode_stream
from deepsmote.runtime.pixels import to_model
from deepsmote.runtime.resize import parse_resize
from deepsmote.runtime.stream import ImageSource, open_dataset
from golden import GOLDEN_BUNDLE
from helpers import tree_digest
from PIL import Image

RNG = np.random.default_rng(0)
COLOUR = RNG.integers(0, 256, (40, 20, 18, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (40, 20, 18), dtype=np.uint8)
LABELS = np.arange(40) % 3


def make(form: str, root: Path) -> Path:
    """DATA of each form the readers take."""
    if form == "idx.gz":
        return fmnist_mini()
    if form == "idx":
        target = root / "train-images-idx3-ubyte"
        with gzip.open(fmnist_mini()) as f, open(target, "wb") as out:
            shutil.copyfileobj(f, out)
        with (
            gzip.open(fmnist_mini().parent / "train-labels-idx1-ubyte.gz") as f,
            open(root / "train-labels-idx1-ubyte", "wb") as out,
        ):
            shutil.copyfileobj(f, out)
        return target
    if form == "npz":
        np.savez(root / "d.npz", images=COLOUR, labels=LABELS)
    elif form == "npz-compressed":
        np.savez_compressed(root / "d.npz", images=COLOUR, labels=LABELS)
    elif form == "npz-nhw1":
        np.savez(root / "d.npz", images=GREY[..., None], labels=np.asarray(["b", "a", "c"])[LABELS])
    elif form == "npz-fortran":
        np.savez(root / "d.npz", images=np.asfortranarray(GREY), labels=LABELS)
    elif form == "shards":
        (root / "d").mkdir()
        np.savez(root / "d" / "1.npz", images=GREY[:15], labels=LABELS[:15])
        np.savez_compressed(root / "d" / "2.npz", images=GREY[15:], labels=LABELS[15:])
        return root / "d"
    elif form == "folder":  # grey and colour PNGs: every image is read as RGB
        for i in range(12):
            folder = root / "d" / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(COLOUR[i] if i % 3 else GREY[i]).save(folder / f"{i:02d}.png")
        return root / "d"
    return root / "d.npz"


FORMS = ["idx.gz", "idx", "npz", "npz-compressed", "npz-nhw1", "npz-fortran", "shards", "folder"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("resize", [None, "16x12"])
def test_a_stream_reads_what_the_whole_reader_reads(form, resize, tmp_path, monkeypatch):
    monkeypatch.setattr(stream_module, "READ_BYTES", 5000)  # several batches per file
    data = make(form, tmp_path)
    size = parse_resize(resize, "center" if resize else "none")
    whole = read_dataset(data, resize=size)
    source = open_dataset(data, resize=size)
    assert source.batch_size() < len(whole.labels)
    assert source.classes == whole.classes and np.array_equal(source.labels, whole.labels)
    assert source.shape == whole.images.shape and source.image_shape == whole.image_shape
    loaded = source.load()
    assert np.array_equal(loaded.images, whole.images)
    assert source.fingerprint() == whole.fingerprint()
    picks = np.asarray([len(whole.labels) - 1, 3, 3, 0, 7, 8, 9])
    assert np.array_equal(source.take(picks), whole.images[picks])


def test_labelled_images_in_memory_are_a_source_too():
    data = read_dataset(fmnist_mini())
    source = ImageSource.of(data)
    assert source.fingerprint() == data.fingerprint()
    assert np.array_equal(source.take([5, 1]), data.images[[5, 1]])


class CountingRows:
    """Rows that record how many images each read asked for."""

    def __init__(self, rows) -> None:
        self.rows, self.reads, self.taken = rows, [], []

    @property
    def count(self) -> int:
        return self.rows.count

    def read(self, start: int, stop: int) -> np.ndarray:
        self.reads.append(stop - start)
        return self.rows.read(start, stop)

    def take(self, indices: np.ndarray) -> np.ndarray:
        self.taken.append(len(indices))
        return self.rows.take(indices)


@pytest.mark.parametrize("include_originals", [False, True])
def test_a_job_holds_one_batch_of_images_not_data(include_originals, tmp_path, monkeypatch):
    monkeypatch.setattr(stream_module, "READ_BYTES", 784 * 100)
    source = open_dataset(fmnist_mini())
    counting = CountingRows(source.rows)
    spied = ImageSource(source.path, source.labels, source.classes, source.item_shape, counting)
    out = tmp_path / "out"
    generate_dataset(
        GOLDEN_BUNDLE, spied, out, fmt="npz", sampling_strategy={"9": 30, "8": 20}, include_originals=include_originals
    )
    # One pass over DATA, 100 images at a time, for the codes and the fingerprint.
    assert sum(counting.reads) == len(source) and max(counting.reads) == 100
    if include_originals:  # the originals read again by index, a unit at a time
        assert sum(counting.taken) == len(source) and max(counting.taken) <= int(source.class_counts().max())
    else:
        assert counting.taken == []
    whole = read_dataset(fmnist_mini())
    # The fingerprint computed in the pass is that of DATA read whole.
    assert json.loads((out / ".deepsmote-job.json").read_text())["data"] == whole.fingerprint()
    if include_originals:  # the originals written are DATA's, class by class in DATA order
        for c in range(len(whole.classes)):
            shards = sorted(out.glob(f"real-class-{c:04d}-shard-*.npz"))
            written = np.concatenate([np.load(shard)["images"] for shard in shards])
            assert np.array_equal(written, whole.images[whole.labels == c])
    # The same bytes as from DATA read whole.
    again = tmp_path / "again"
    generate_dataset(
        GOLDEN_BUNDLE,
        whole,
        again,
        fmt="npz",
        sampling_strategy={"9": 30, "8": 20},
        include_originals=include_originals,
    )
    assert tree_digest(out) == tree_digest(again)


def test_streamed_codes_are_those_of_each_class_encoded_whole(monkeypatch):
    # Batches of 100 images cut the 400 images of class 0 across calls; the codes must still be those
    # of the class encoded in calls of `encode_batch` (256 here) of its own images.
    monkeypatch.setattr(stream_module, "READ_BYTES", 784 * 100)
    models = open_models(load_bundle(GOLDEN_BUNDLE), "cpu", threads=2)
    source = open_dataset(fmnist_mini())
    codes, _ = encode_stream(models, source, np.ones(len(source.classes), dtype=bool))
    whole = read_dataset(fmnist_mini())
    assert models.encode_batch == 256 and max(whole.class_counts()) > models.encode_batch
    for c in range(len(whole.classes)):
        expected = models.encode(to_model(whole.images[whole.labels == c]), batch_size=models.encode_batch)
        assert codes[c].tobytes() == expected.tobytes(), whole.classes[c]


def test_the_sampler_fits_a_stream_as_it_fits_arrays(monkeypatch):
    monkeypatch.setattr(stream_module, "READ_BYTES", 784 * 64)
    whole = read_dataset(fmnist_mini())
    strategy = {9: 40, 3: 80}
    arrays = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy=strategy, random_state=4).fit(whole.images, whole.labels)
    streamed = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy=strategy, random_state=4).fit(open_dataset(fmnist_mini()))
    for (x1, y1), (x2, y2) in zip(arrays.iter_synthetic(), streamed.iter_synthetic(), strict=True):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    X_res, y_res = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy=strategy, random_state=4).fit_resample(
        open_dataset(fmnist_mini())
    )
    X_ref, y_ref = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy=strategy, random_state=4).fit_resample(
        whole.images, whole.labels
    )
    assert np.array_equal(X_res, X_ref) and np.array_equal(y_res, y_ref)


def test_a_shard_is_decoded_a_slice_at_a_time_with_the_same_bytes(monkeypatch):
    import deepsmote.runtime.synthesis as synthesis

    whole = read_dataset(fmnist_mini())
    sampler = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy={9: 300}, random_state=2).fit(whole.images, whole.labels)
    (shard,) = list(sampler.synthesizer_.shards)
    at_once = sampler.synthesizer_.images(shard)
    decoded = []
    original = sampler.synthesizer_.models().decode
    monkeypatch.setattr(synthesis, "DECODE_SLICE_BYTES", 4 * 784 * 50)  # slices of 50 codes
    monkeypatch.setattr(
        sampler.synthesizer_.models(), "decode", lambda z, **k: decoded.append(len(z)) or original(z, **k)
    )
    assert np.array_equal(sampler.synthesizer_.images(shard), at_once)
    assert decoded == [50] * 5 + [46]  # 296 new images: 300 after, 4 before


def test_a_units_shard_is_decoded_into_the_units_own_rows(monkeypatch, tmp_path):
    # One growing class: each unit is one shard, whose images must not be held a second time.
    from deepsmote.runtime.synthesis import Synthesizer

    images = Synthesizer.images
    into = []

    def recording(self, shard, out=None):
        into.append(out is not None)
        return images(self, shard, out=out)

    monkeypatch.setattr(Synthesizer, "images", recording)
    data = open_dataset(fmnist_mini())
    generate_dataset(
        GOLDEN_BUNDLE, data, tmp_path / "out", fmt="webdataset", sampling_strategy={"9": 30}, include_originals=False
    )
    assert into == [True]


@pytest.mark.parametrize(("threads", "per_call"), [(1, 256), (2, 50)])
def test_every_encoder_call_is_encode_batch_images_of_one_class_in_data_order(monkeypatch, threads, per_call):
    # The codes are the same only if the calls are: check the calls themselves, since an encoder may
    # well give the same codes for other calls on this machine. 50 per call: a cap on the values per
    # call (large images) with two threads, whose calls are converted and run two at a time.
    monkeypatch.setattr(stream_module, "READ_BYTES", 784 * 100)
    monkeypatch.setattr(models_module, "CPU_ENCODE_VALUES", 784 * per_call)
    # One thread: whole calls are flushed as soon as one class has a call's images waiting, mid-stream.
    models = open_models(load_bundle(GOLDEN_BUNDLE), "cpu", threads=threads)
    assert models.encode_batch == per_call
    calls: list[bytes] = []
    encode = models.encode
    batches = ImageSource.batches
    read, encoded = [0], [0]

    def counted(self):
        for start, batch in batches(self):
            read[0] = start + len(batch)
            yield start, batch

    def recording(x, batch_size=None):
        # What waits is one read batch and fewer than a call's images per class (10 classes here), and
        # what is float32 at once is one call per thread.
        assert read[0] - encoded[0] <= 100 + 10 * (per_call - 1) and len(x) <= per_call * threads
        encoded[0] += len(x)
        size = batch_size or models.encode_batch
        calls.extend(x[i : i + size].tobytes() for i in range(0, len(x), size))
        return encode(x, batch_size=batch_size)

    monkeypatch.setattr(ImageSource, "batches", counted)
    monkeypatch.setattr(models, "encode", recording)
    encode_stream(models, open_dataset(fmnist_mini()), np.ones(10, dtype=bool))
    whole = read_dataset(fmnist_mini())
    expected = []
    for c in range(10):
        images = to_model(whole.images[whole.labels == c])
        expected += [images[i : i + per_call].tobytes() for i in range(0, len(images), per_call)]
    assert sorted(calls) == sorted(expected)
