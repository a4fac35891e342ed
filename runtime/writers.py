"""Writers for output units: ImageFolder PNGs, NPZ, WebDataset tar shards and Parquet files.

One label convention for every format: a sample's ``label`` is its class's index in the job's
class list (``summary.json``'s ``classes``, the input's order), and its class name is kept exactly
as a string beside it (an npz's ``classes``, a WebDataset sample's ``.json``, a Parquet column, the
ImageFolder folder name), so names such as ``01`` and ``1`` stay two classes.

Every file is written under a temporary name and renamed when complete, so a reader never
sees half a file, and the bytes depend only on the images (fixed PNG settings, tar headers
with zero times and owners). A write that fails (full disk, read-only OUT) or is interrupted
removes its temporary file; a failure is a one-line :class:`DeepSMOTEError` naming OUT.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import tarfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .atomic import atomic_path, sync_files, write_bytes_atomic
from .errors import DeepSMOTEError
from .plan import Unit
from .synthesis import Samples

FORMATS = ("imagefolder", "npz", "webdataset", "parquet")
# Formats whose units mix the classes (plan_mixed); the others hold one class per unit.
MIXED_FORMATS = frozenset({"webdataset", "parquet"})
SHARD_DIR = "shards"
PARQUET_DIR = "data"
SHARD_PREFIX = "train"
# Images per PNG-encoding task: enough that a task's overhead is small next to its 28x28 images.
_PNG_CHUNK = 16


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one uint8 image, shape (H, W) or (H, W, C)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def encode_pngs(images: np.ndarray, threads: int = 1) -> list[bytes]:
    """PNG bytes of each image, in order, encoded on up to ``threads`` threads.

    Pillow lets go of the GIL while zlib compresses, so threads scale: measured on 2 cores, 1.6x
    at 64x64x3 and 1.9-2.2x at 128x128x3 (1.1-1.3x at 28x28). The bytes are those of
    :func:`encode_png`, whatever ``threads``.

    Parameters
    ----------
    images : np.ndarray
        uint8, shape (m, H, W) or (m, H, W, C).
    threads : int
        At most this many threads; 1 encodes in the calling thread.
    """
    chunks = [images[start : start + _PNG_CHUNK] for start in range(0, len(images), _PNG_CHUNK)]
    if threads <= 1 or len(chunks) < 2:
        return [encode_png(image) for image in images]

    def encode_chunk(chunk: np.ndarray) -> list[bytes]:
        return [encode_png(image) for image in chunk]

    with ThreadPoolExecutor(min(threads, len(chunks)), thread_name_prefix="deepsmote-png") as pool:
        return [png for pngs in pool.map(encode_chunk, chunks) for png in pngs]


def write_error(out: Path, target: Path, exc: OSError) -> DeepSMOTEError:
    """The one-line error for a failed write of ``target`` inside the output directory ``out``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space or choose another `out`"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "choose a writable `out`"
    else:
        hint = "check the disk or choose another `out`"
    where = target.relative_to(out) if target.is_relative_to(out) else target
    return DeepSMOTEError(f"cannot write to `out` {out}: {exc.strerror or exc} (writing {where}); {hint}")


def write_atomic(out: Path, path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` (inside ``out``) atomically (:mod:`deepsmote.runtime.atomic`),
    flushed to the disk before it is renamed unless ``sync`` is False.

    Raises
    ------
    DeepSMOTEError
        If the write fails; the temporary file is removed first, also when interrupted.
    """
    try:
        write_bytes_atomic(path, data, sync=sync)
    except OSError as exc:
        raise write_error(out, path, exc) from None


# The longest file name, in bytes, that Linux and macOS file systems take.
NAME_MAX = 255
# A PNG's fixed bytes (signature, IHDR, IDAT and IEND framing) and the fewest bytes per pixel
# value that a decoded image compresses to: deflate of decoded DeepSMOTE images gives 0.9-1.2
# bytes per value at 28x28, so a quarter is an estimate no real job stays under.
_PNG_MIN_BYTES = 67
_PNG_MIN_BYTES_PER_VALUE = 0.25
_TAR_BLOCK = 512


def safe_class_dir(name: str) -> str:
    """``name`` if it is usable as one directory name, else a one-line error."""
    fix = "rename the class or use `fmt` npz or webdataset"
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
        raise DeepSMOTEError(f"class name {name[:80]!r} cannot be a directory name; {fix}")
    try:
        size = len(os.fsencode(name))
    except UnicodeEncodeError:
        raise DeepSMOTEError(f"class name {name[:80]!r} cannot be encoded as a file name; {fix}") from None
    if size > NAME_MAX:
        raise DeepSMOTEError(
            f"class name {name[:40]!r}... is {size} bytes, longer than the {NAME_MAX} a folder name may have; {fix}"
        )
    return name


def min_sample_bytes(fmt: str, image_shape: tuple[int, int, int], block: int = 1) -> int:
    """The fewest bytes one sample of (C, H, W) ``image_shape`` can take on disk in ``fmt``.

    ``block`` is the file system's allocation unit: an ImageFolder PNG is a file of its own, which
    takes at least one block however small it is.
    """
    png = _PNG_MIN_BYTES + math.ceil(_PNG_MIN_BYTES_PER_VALUE * math.prod(image_shape))
    if fmt == "imagefolder":
        return -(-png // block) * block
    if fmt == "parquet":
        return png
    if fmt == "webdataset":
        # Per sample three members (.png, .cls, .json): a header block each, and their data in blocks.
        return 3 * _TAR_BLOCK + -(-png // _TAR_BLOCK) * _TAR_BLOCK + 2 * _TAR_BLOCK
    return math.prod(image_shape)


def check_capacity(out: Path, fmt: str, image_shape: tuple[int, int, int], samples: int, done_samples: int = 0) -> None:
    """Refuse a job of ``samples`` new samples whose files would not fit in the space OUT has free.

    The space free to this user (``statvfs``) is compared with the samples not done yet (at most
    ``done_samples`` are already on disk, for a resumed job) at the fewest bytes a sample takes in
    the format (:func:`min_sample_bytes`); for an ImageFolder also the free inodes, one per file.

    Raises
    ------
    DeepSMOTEError
        When the job cannot fit, before any work.
    """
    anchor = out
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    try:
        info = os.statvfs(anchor)
    except (OSError, AttributeError):
        return
    left = max(0, samples - done_samples)
    free = info.f_bavail * info.f_frsize
    per_sample = min_sample_bytes(fmt, image_shape, info.f_frsize or 1)
    need = left * per_sample
    fix = "free some space, choose another `out`, or ask for fewer with `sampling_strategy`"
    if need > free:
        raise DeepSMOTEError(
            f"the job's {left} new samples take at least {_size(need)} in {fmt} (~{per_sample} bytes each), "
            f"more than the {_size(free)} free in `out` {out}; {fix}"
        )
    if fmt == "imagefolder" and info.f_files and left > info.f_favail:
        raise DeepSMOTEError(
            f"the job's {left} new samples are {left} files in {fmt}, more than the {info.f_favail} "
            f"the file system of `out` {out} has left; {fix}"
        )


def _size(n: int) -> str:
    for unit, scale in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


class UnitWriter(Protocol):
    """Writes one unit's samples; the file names depend only on the unit."""

    def write(self, unit: Unit, samples: Samples) -> None:
        """Write ``samples`` (the unit's, in its order) for ``unit``."""

    def entries(self, unit: Unit) -> list[tuple[str, str]]:
        """(file relative to OUT, sample key within the file or '') of each sample, in order."""

    def finish(self, units: Iterable[Unit]) -> None:
        """Write what covers the whole job (ImageFolder's ``metadata.csv``) once every unit is written."""


def sample_record(samples: Samples, i: int, classes: Sequence[str]) -> dict[str, Any]:
    """The label, class name, synthetic flag and provenance of sample ``i``, as JSON values; with
    soft labels also ``targets``, its K-vector in ``classes`` order.

    Every sample has every field with a value of one type, originals too, so that loaders that infer
    one schema for a whole dataset (Hugging Face's ``webdataset`` and ``imagefolder`` builders) take
    any mix: ``base`` and ``neighbor`` are the DATA indices interpolated between and ``gap`` the
    factor; an original or a repeat of a real image is its DATA image itself, ``neighbor`` = ``base``
    and ``gap`` 0.0.
    """
    synthetic = bool(samples.synthetic[i])
    label = int(samples.class_index[i])
    base = int(samples.base[i])
    record = {
        "label": label,
        "class": classes[label],
        "synthetic": synthetic,
        "base": base,
        "neighbor": int(samples.neighbor[i]) if synthetic else base,
        "gap": float(samples.gap[i]) if synthetic else 0.0,
    }
    if samples.targets is not None:
        record["targets"] = samples.targets[i].tolist()
    return record


# Hugging Face's ``imagefolder`` reads ``metadata.csv`` beside the class folders: its ``file_name``
# column names each image, its other columns become the dataset's columns.
METADATA_FILE = "metadata.csv"
METADATA_COLUMNS = ("file_name", "label", "class", "synthetic", "base", "neighbor", "gap")
# One hidden file of metadata rows per ImageFolder unit, joined into metadata.csv at the job's end,
# so that a resumed job has the rows of the units an earlier run wrote.
ROWS_PREFIX = ".deepsmote-rows-"


def metadata_row(samples: Samples, i: int, classes: Sequence[str], file_name: str) -> list[Any]:
    """Sample ``i``'s row of ``metadata.csv``, in :data:`METADATA_COLUMNS` order."""
    record = {"file_name": file_name, **sample_record(samples, i, classes)}
    return [str(record[column]).lower() if column == "synthetic" else record[column] for column in METADATA_COLUMNS]


def _stem(unit: Unit, i: int) -> str:
    return f"{unit.name}-{i:05d}"


class ImageFolderWriter:
    """``OUT/<class>/<unit>-<i>.png`` and ``OUT/metadata.csv``: what torchvision's and Hugging Face's
    ImageFolder read.

    A class folder is named exactly as the class; loaders number classes by the sorted folder
    names, which is the job's class order whenever the input was itself an ImageFolder.
    ``metadata.csv`` (:func:`metadata_row`) gives each file its label, class name, synthetic flag and
    provenance, which Hugging Face's ``imagefolder`` loads as columns.
    """

    def __init__(self, out: Path, classes: Sequence[str], threads: int = 1) -> None:
        self.out = out
        self.classes = list(classes)
        self.dirs = [safe_class_dir(c) for c in classes]
        self.threads = threads

    def _class_of(self, unit: Unit) -> int:
        return (unit.synthetic or unit.real)[0].class_index

    def write(self, unit: Unit, samples: Samples) -> None:
        folder = self.out / self.dirs[self._class_of(unit)]
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise write_error(self.out, folder, exc) from None
        written = []
        for i, png in enumerate(encode_pngs(samples.images, self.threads)):
            written.append(folder / f"{_stem(unit, i)}.png")
            # Synced together below, before the unit's done mark can be written.
            write_atomic(self.out, written[-1], png, sync=False)
        try:
            sync_files(written)
        except OSError as exc:
            raise write_error(self.out, folder, exc) from None
        text = io.StringIO()
        rows = csv.writer(text, lineterminator="\n")
        for i, (file, _) in enumerate(self.entries(unit)):
            rows.writerow(metadata_row(samples, i, self.classes, file))
        write_atomic(self.out, self.out / f"{ROWS_PREFIX}{unit.name}.csv", text.getvalue().encode())

    def entries(self, unit: Unit) -> list[tuple[str, str]]:
        folder = self.dirs[self._class_of(unit)]
        return [(f"{folder}/{_stem(unit, i)}.png", "") for i in range(unit.count)]

    def finish(self, units: Iterable[Unit]) -> None:
        """Join the units' rows into ``OUT/metadata.csv``, in the units' order, atomically.

        Memory: one unit's rows, whatever the job's size.
        """
        target = self.out / METADATA_FILE
        try:
            with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
                f.write(",".join(METADATA_COLUMNS) + "\n")
                for unit in units:
                    f.write((self.out / f"{ROWS_PREFIX}{unit.name}.csv").read_text(encoding="utf-8"))
        except OSError as exc:
            raise write_error(self.out, target, exc) from None


class NpzWriter:
    """``OUT/<unit>.npz`` with ``images``, ``labels`` (class indices) and ``classes`` (the names), and
    with soft labels ``targets`` (float32 (N, K), rows summing to 1, columns in ``classes`` order).

    The directory reads back as DATA with the same classes in the same order.
    """

    def __init__(self, out: Path, classes: Sequence[str], threads: int = 1) -> None:
        self.out = out
        self.classes = np.asarray(classes, dtype=str)  # ``threads`` unused: nothing to encode

    def write(self, unit: Unit, samples: Samples) -> None:
        buffer = io.BytesIO()
        soft = {} if samples.targets is None else {"targets": samples.targets}
        np.savez(
            buffer, images=samples.images, labels=samples.class_index.astype(np.int64), classes=self.classes, **soft
        )
        write_atomic(self.out, self.out / f"{unit.name}.npz", buffer.getvalue())

    def entries(self, unit: Unit) -> list[tuple[str, str]]:
        return [(f"{unit.name}.npz", str(i)) for i in range(unit.count)]

    def finish(self, units: Iterable[Unit]) -> None:
        """Nothing beyond the units' files."""


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


class WebDatasetWriter:
    """``OUT/shards/train-NNNNNN.tar``, classes mixed; per sample ``.png``, ``.cls``, ``.json``.

    ``.cls`` holds the label (class index), ``.json`` the record of :func:`sample_record`. The
    folder holds nothing but shards, so ``OUT/shards/train-{000000..000009}.tar`` is the dataset.
    """

    def __init__(self, out: Path, classes: Sequence[str], threads: int = 1) -> None:
        self.out = out
        self.classes = list(classes)
        self.threads = threads

    def _file(self, unit: Unit) -> str:
        return f"{SHARD_DIR}/{SHARD_PREFIX}-{unit.name}.tar"

    def write(self, unit: Unit, samples: Samples) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for i, png in enumerate(encode_pngs(samples.images, self.threads)):
                record = sample_record(samples, i, self.classes)
                key = _stem(unit, i)
                _tar_member(tar, f"{key}.png", png)
                _tar_member(tar, f"{key}.cls", str(record["label"]).encode())
                _tar_member(tar, f"{key}.json", json.dumps(record, sort_keys=True).encode())
        _write_in_subdir(self.out, self._file(unit), buffer.getvalue())

    def entries(self, unit: Unit) -> list[tuple[str, str]]:
        return [(self._file(unit), _stem(unit, i)) for i in range(unit.count)]

    def finish(self, units: Iterable[Unit]) -> None:
        """Nothing beyond the units' files."""


class ParquetWriter:
    """``OUT/data/train-NNNNNN.parquet``, classes mixed: Hugging Face's layout for a train split.

    Columns ``image`` (``{bytes, path}``: PNG bytes), ``label``, ``class``, ``synthetic``, ``base``,
    ``neighbor``, ``gap``, and with soft labels ``targets`` (a list of K float32); the schema
    carries the ``huggingface`` features (``Image``, ``ClassLabel`` with the class names,
    ``Sequence`` of float32 for ``targets``), so ``datasets`` decodes images and names labels, and any Parquet reader
    (pyarrow, pandas, ``ray.data.read_parquet``) reads plain rows.
    """

    def __init__(self, out: Path, classes: Sequence[str], threads: int = 1) -> None:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise DeepSMOTEError("`fmt` parquet needs pyarrow: pip install 'deepsmote[parquet]'") from None
        self.out = out
        self.classes = list(classes)
        self.threads = threads

    def _file(self, unit: Unit) -> str:
        return f"{PARQUET_DIR}/{SHARD_PREFIX}-{unit.name}.parquet"

    def write(self, unit: Unit, samples: Samples) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pngs = [
            {"bytes": png, "path": f"{_stem(unit, i)}.png"}
            for i, png in enumerate(encode_pngs(samples.images, self.threads))
        ]
        table = pa.table(
            {
                "image": pa.array(pngs, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                "label": pa.array(samples.class_index, type=pa.int64()),
                "class": pa.array([self.classes[c] for c in samples.class_index], type=pa.string()),
                "synthetic": pa.array(samples.synthetic, type=pa.bool_()),
                "base": pa.array(samples.base, type=pa.int64()),
                "neighbor": pa.array(samples.neighbor, type=pa.int64(), mask=~samples.synthetic),
                "gap": pa.array(samples.gap, type=pa.float32(), mask=~samples.synthetic),
            }
        )
        if samples.targets is not None:
            table = table.append_column("targets", pa.array(list(samples.targets), type=pa.list_(pa.float32())))
        features = {
            "image": {"_type": "Image"},
            "label": {"_type": "ClassLabel", "names": self.classes},
            "class": {"_type": "Value", "dtype": "string"},
            "synthetic": {"_type": "Value", "dtype": "bool"},
            "base": {"_type": "Value", "dtype": "int64"},
            "neighbor": {"_type": "Value", "dtype": "int64"},
            "gap": {"_type": "Value", "dtype": "float32"},
        }
        if samples.targets is not None:
            features["targets"] = {"_type": "Sequence", "feature": {"_type": "Value", "dtype": "float32"}}
        metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
        buffer = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(metadata), buffer, compression="zstd")
        _write_in_subdir(self.out, self._file(unit), buffer.getvalue().to_pybytes())

    def entries(self, unit: Unit) -> list[tuple[str, str]]:
        return [(self._file(unit), _stem(unit, i)) for i in range(unit.count)]

    def finish(self, units: Iterable[Unit]) -> None:
        """Nothing beyond the units' files."""


def _write_in_subdir(out: Path, relative: str, data: bytes) -> None:
    target = out / relative
    try:
        target.parent.mkdir(exist_ok=True)
    except OSError as exc:
        raise write_error(out, target.parent, exc) from None
    write_atomic(out, target, data)


def make_writer(fmt: str, out: Path, classes: Sequence[str], threads: int = 1) -> UnitWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`), encoding PNGs on up to ``threads`` threads."""
    writers = {
        "imagefolder": ImageFolderWriter,
        "npz": NpzWriter,
        "webdataset": WebDatasetWriter,
        "parquet": ParquetWriter,
    }
    if fmt not in writers:
        raise DeepSMOTEError(f"`fmt` must be one of {', '.join(FORMATS)}, got '{fmt}'")
    return writers[fmt](out, classes, threads)
