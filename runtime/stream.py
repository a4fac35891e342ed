"""DATA read in batches: a job's images without holding them (``docs/design.md`` §3).

:func:`open_dataset` reads what DATA says about itself (labels, class names, image shape) and
checks every header, but decodes no pixel. The :class:`ImageSource` it returns reads images in
batches in DATA order (:meth:`ImageSource.batches`) or by index (:meth:`ImageSource.take`),
resizing them as they are read. A job then holds one batch of images at a time, never DATA.

How each form is read:

- an uncompressed ``.npz`` member (``np.savez``) and a raw IDX file: rows are read in place, at
  their offset in the file, with positioned reads. Not ``np.memmap``: a mapped page counts in the
  process's resident memory once touched, so one pass over a mapped file would make it as large
  as DATA;
- a compressed ``.npz`` member (``np.savez_compressed``) and a gzipped IDX file: decompressed in
  order; reading by index decompresses up to the row (going back starts again), so jobs that
  copy originals (``--include-originals``) are fastest from uncompressed DATA;
- an ImageFolder: one file per image, decoded when read;
- a directory of ``.npz`` shards: each shard as above, one after another.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import DeepSMOTEError
from .readers import (
    IDX_LABELS_MAGIC,
    IDX_UINT8_MAGIC,
    DataDigest,
    FolderIndex,
    LabelledImages,
    check_data_file,
    classes_of_indices,
    classes_of_values,
    folder_image,
    has_idx_magic,
    idx_header,
    idx_ndim,
    index_image_folder,
    is_idx_name,
    is_image_folder,
    labels_path_for,
    natural_key,
    npz_member,
    read_idx_array,
    read_npz,
    read_npz_member,
    reading,
    refuse_latent_cache,
)
from .resize import Resize

__all__ = ["ImageSource", "open_dataset"]

# Bytes of pixels read at once by :meth:`ImageSource.batches`; the batch size follows the image size.
READ_BYTES = 16 << 20


class Rows(Protocol):
    """uint8 images of DATA by position: ``read(start, stop)`` in order, ``take(indices)`` in any order."""

    count: int

    def read(self, start: int, stop: int) -> np.ndarray: ...

    def take(self, indices: np.ndarray) -> np.ndarray: ...


@dataclass
class ArrayRows:
    """Rows of an array in memory (a :class:`LabelledImages` the caller read)."""

    array: np.ndarray

    @property
    def count(self) -> int:
        return len(self.array)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]

    def take(self, indices: np.ndarray) -> np.ndarray:
        return self.array[indices]


@dataclass
class FileRows:
    """Rows of a fixed size at ``offset`` in a file (raw or gzipped) or in a compressed zip member.

    The data is checked as the whole-file readers check it: a gzip stream or a compressed member
    by its CRC and length when a read reaches its end (one byte more must find the end), a
    stored ``.npz`` member by the zip directory's CRC (``crc``, over the member from
    ``member_start``), computed over reads in order from the first row. Rows read out of order
    (:meth:`take`, or a :meth:`read` that skips) before such a pass has been checked are served
    after one checking pass over the data, so no unchecked pixel is used. Picklable: the open
    stream of a compressed file is not shipped; a copy opens its own.
    """

    path: Path
    offset: int
    shape: tuple[int, ...]
    count: int
    opener: str  # 'raw' (positioned reads), 'gzip', or 'zip:<member>' (decompressed streams)
    crc: int | None = None  # a stored zip member's CRC-32 ('raw' only; a raw IDX file has none)
    member_start: int = 0  # where the stored member (its .npy header first) starts in the file
    _stream: Any = field(default=None, init=False, repr=False, compare=False)
    _lock: Any = field(default=None, init=False, repr=False, compare=False)
    _checked: bool = field(default=False, init=False, repr=False, compare=False)
    _running: tuple[int, int] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape)

    @property
    def _end(self) -> int:
        return self.offset + self.count * self.row_bytes

    @property
    def _has_check(self) -> bool:
        return self.opener != "raw" or self.crc is not None

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(stop, self.count)
        size = max(0, stop - start) * self.row_bytes
        where = self.offset + start * self.row_bytes
        if self.opener == "raw" and (self._checked or self.crc is None):
            # Positioned reads need no lock: threads read rows at once.
            data = self._pread(where, size)
        else:
            with self._guard():
                if not self._checked and self._has_check and not self._in_order(where):
                    self._check_all()
                data = self._pread(where, size) if self.opener == "raw" else self._read_stream(where, size)
                if not self._checked and self._has_check:
                    self._follow(where, data)
        return np.frombuffer(data, dtype=np.uint8).reshape(stop - start, *self.shape)

    def _pread(self, where: int, size: int) -> bytes:
        with reading(self.path), open(self.path, "rb") as f:
            data = os.pread(f.fileno(), size, where)
        if len(data) != size:
            raise DeepSMOTEError(f"{self.path}: the file ends early; it is truncated or corrupt")
        return data

    def take(self, indices: np.ndarray) -> np.ndarray:
        order = np.unique(indices)
        if len(order) and not self._checked and self._has_check:
            with self._guard():
                self._check_all()
        out = np.empty((len(order), *self.shape), dtype=np.uint8)
        # Runs of consecutive rows in one read each, in increasing order (forward in a stream).
        cuts = np.flatnonzero(np.diff(order) != 1) + 1
        at = 0
        for run in np.split(order, cuts) if len(order) else []:
            out[at : at + len(run)] = self.read(int(run[0]), int(run[-1]) + 1)
            at += len(run)
        return out[np.searchsorted(order, indices)]

    def _guard(self) -> Any:
        if self._lock is None:
            self._lock = threading.RLock()
        return self._lock

    def _in_order(self, where: int) -> bool:
        """Whether a read at ``where`` continues the checked pass (or starts it at the first row)."""
        return where == self.offset if self._running is None else where == self._running[0]

    def _follow(self, where: int, data: bytes) -> None:
        """Carry the pass that checks the data over ``data``, read at ``where``; check it at the end."""
        if self.opener == "raw":
            if self._running is None:
                with reading(self.path), open(self.path, "rb") as f:
                    head = os.pread(f.fileno(), self.offset - self.member_start, self.member_start)
                self._running = (self.offset, zlib.crc32(head))
            position, crc = self._running
            self._running = (position + len(data), zlib.crc32(data, crc))
            if where + len(data) == self._end:
                self._finish(self._running[1])
        elif where + len(data) == self._end:
            with reading(self.path):
                # One byte more: the stream's end, where gzip and zipfile check CRC and length.
                longer = self._stream.read(1)
            if longer:
                self._longer()
            self._checked = True
        else:
            self._running = (where + len(data), 0)

    def _finish(self, crc: int) -> None:
        if crc != self.crc:
            raise DeepSMOTEError(f"{self.path}: CRC-32 check of the images failed; the file is corrupt")
        self._checked = True

    def _longer(self) -> None:
        raise DeepSMOTEError(
            f"{self.path}: the data is longer than its header says ({self.count} images); the file is corrupt"
        )

    def _check_all(self) -> None:
        """One pass over all the data, checked, before rows are read out of order."""
        if self.opener == "raw":
            crc = 0
            with reading(self.path), open(self.path, "rb") as f:
                for at in range(self.member_start, self._end, READ_BYTES):
                    chunk = os.pread(f.fileno(), min(READ_BYTES, self._end - at), at)
                    if not chunk:
                        raise DeepSMOTEError(f"{self.path}: the file ends early; it is truncated or corrupt")
                    crc = zlib.crc32(chunk, crc)
            self._finish(crc)
            return
        with reading(self.path), self._open_stream() as stream:
            left = self._end
            while left:
                chunk = stream.read(min(READ_BYTES, left))
                if not chunk:
                    raise DeepSMOTEError(f"{self.path}: the file ends early; it is truncated or corrupt")
                left -= len(chunk)
            longer = stream.read(1)
        if longer:
            self._longer()
        self._checked = True

    def _open_stream(self) -> Any:
        if self.opener == "gzip":
            return gzip.open(self.path, "rb")
        archive = zipfile.ZipFile(self.path)
        return archive.open(self.opener.removeprefix("zip:"))

    def _read_stream(self, where: int, size: int) -> bytes:
        with reading(self.path):
            if self._stream is None:
                self._stream = self._open_stream()
            if self._stream.tell() != where:
                self._stream.seek(where)
            data = self._stream.read(size)
        if len(data) != size:
            raise DeepSMOTEError(f"{self.path}: the file ends early; it is truncated or corrupt")
        return data

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stream": None, "_lock": None}


@dataclass
class FolderRows:
    """The images of an ImageFolder, decoded (and resized) one file at a time."""

    index: FolderIndex
    resize: Resize | None

    @property
    def count(self) -> int:
        return len(self.index.files)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.take(np.arange(start, min(stop, self.count)))

    def take(self, indices: np.ndarray) -> np.ndarray:
        images = [folder_image(self.index.files[i], self.index.colour, self.resize) for i in indices]
        return np.stack(images) if images else np.empty((0, *self._shape()), dtype=np.uint8)

    def _shape(self) -> tuple[int, ...]:
        height, width = (self.resize.height, self.resize.width) if self.resize else self.index.size or (0, 0)
        return (height, width, 3) if self.index.colour else (height, width)


@dataclass
class ResizedRows:
    """Rows brought to one size as they are read (:class:`Resize`)."""

    rows: Any
    resize: Resize

    @property
    def count(self) -> int:
        return int(self.rows.count)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.resize.images(self.rows.read(start, stop))

    def take(self, indices: np.ndarray) -> np.ndarray:
        return self.resize.images(self.rows.take(indices))


@dataclass
class ConcatRows:
    """The rows of several sources one after another (a directory of ``.npz`` shards)."""

    parts: list[Any]

    @property
    def count(self) -> int:
        return int(sum(part.count for part in self.parts))

    def _starts(self) -> np.ndarray:
        return np.cumsum([0, *(part.count for part in self.parts)])

    def read(self, start: int, stop: int) -> np.ndarray:
        # Each part read in order, so that each checks its data as it goes (FileRows).
        starts = self._starts()
        pieces = [
            part.read(max(start, lo) - lo, min(stop, hi) - lo)
            for part, lo, hi in zip(self.parts, starts[:-1], starts[1:], strict=True)
            if max(start, lo) < min(stop, hi)
        ]
        return np.concatenate(pieces) if pieces else self.take(np.arange(0))

    def take(self, indices: np.ndarray) -> np.ndarray:
        starts = self._starts()
        which = np.searchsorted(starts, indices, side="right") - 1
        first = self.parts[0].read(0, 0)
        out = np.empty((len(indices), *first.shape[1:]), dtype=np.uint8)
        for p in np.unique(which):
            rows = which == p
            out[rows] = self.parts[p].take(indices[rows] - starts[p])
        return out


@dataclass(frozen=True)
class ImageSource:
    """DATA as an index (labels, class names, image shape) and images read when needed.

    Attributes
    ----------
    path : str
        DATA, for messages.
    labels : np.ndarray
        int64, shape (N,), values in ``range(len(classes))``.
    classes : tuple of str
        Class names in label order.
    item_shape : tuple of int
        One image as read: (H, W) grey or (H, W, 3) colour, after ``resize``.
    rows : Rows
        Where the pixels come from.
    """

    path: str
    labels: np.ndarray
    classes: tuple[str, ...]
    item_shape: tuple[int, ...]
    rows: Any

    @classmethod
    def of(cls, data: LabelledImages, path: str = "DATA") -> ImageSource:
        """The source of images already in memory."""
        return cls(path, data.labels, data.classes, tuple(data.images.shape[1:]), ArrayRows(data.images))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape the images would have in one array, (N, H, W) or (N, H, W, 3)."""
        return (len(self), *self.item_shape)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The model's (C, H, W) for these images."""
        channels = 1 if len(self.item_shape) == 2 else self.item_shape[2]
        return (channels, self.item_shape[0], self.item_shape[1])

    def class_counts(self) -> np.ndarray:
        """Number of images per class, shape (len(classes),)."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def batch_size(self) -> int:
        """Images per batch of :meth:`batches`: about :data:`READ_BYTES` of pixels."""
        return max(1, READ_BYTES // max(1, math.prod(self.item_shape)))

    def batches(self) -> Iterator[tuple[int, np.ndarray]]:
        """The images in DATA order, a batch at a time.

        Yields
        ------
        start : int
            The DATA index of the batch's first image.
        images : np.ndarray
            uint8, shape (n, *item_shape).
        """
        size = self.batch_size()
        for start in range(0, len(self), size):
            yield start, self._checked(self.rows.read(start, start + size), min(size, len(self) - start))

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The images at DATA ``indices``, in that order; uint8, shape (len(indices), *item_shape)."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"DATA indices must be in 0..{len(self) - 1}")
        return self._checked(self.rows.take(indices), len(indices))

    def fingerprint(self) -> str:
        """:meth:`LabelledImages.fingerprint` of these images, read in batches."""
        digest = DataDigest(self.shape, self.classes)
        for _, batch in self.batches():
            digest.update(batch)
        return digest.hexdigest(self.labels)

    def load(self) -> LabelledImages:
        """All of DATA in memory."""
        images = np.empty(self.shape, dtype=np.uint8)
        for start, batch in self.batches():
            images[start : start + len(batch)] = batch
        return LabelledImages(images, self.labels, self.classes)

    def _checked(self, images: np.ndarray, count: int) -> np.ndarray:
        if images.shape != (count, *self.item_shape):
            raise DeepSMOTEError(
                f"{self.path}: read images of shape {images.shape[1:]}, expected {self.item_shape}; DATA changed "
                "while it was read, or is corrupt"
            )
        return images


def open_dataset(
    path: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    *,
    image_shape: tuple[int, int, int] | None = None,
    resize: Resize | None = None,
) -> ImageSource:
    """Open DATA in any form :func:`~deepsmote.runtime.readers.read_dataset` reads, to read it in batches.

    Labels and headers are read and checked now; pixels when :meth:`ImageSource.batches` or
    :meth:`ImageSource.take` asks for them. Parameters as for ``read_dataset``.
    """
    root = Path(path)
    source = _open(root, labels, None if resize is not None else image_shape, resize)
    if resize is None or isinstance(source.rows, FolderRows):
        return source
    item = (resize.height, resize.width, *source.item_shape[2:])
    return ImageSource(source.path, source.labels, source.classes, item, ResizedRows(source.rows, resize))


def _open(
    path: Path, labels: str | os.PathLike | None, image_shape: tuple[int, int, int] | None, resize: Resize | None
) -> ImageSource:
    if not path.exists():
        raise DeepSMOTEError(
            f"{path}: no such file or directory; give an ImageFolder directory, an .npz or an IDX file"
        )
    if labels is not None and not is_idx_name(path):
        raise DeepSMOTEError(f"`labels` is only for IDX images files, not {path}")
    if path.is_dir():
        if is_image_folder(path):
            index = index_image_folder(path, resize)
            rows = FolderRows(index, resize)
            return ImageSource(str(path), index.labels, index.classes, rows._shape(), rows)
        shards = sorted(path.glob("*.npz"))
        for shard in shards:
            check_data_file(shard)
        if shards:
            return _concatenate([_open_npz(p) for p in shards], path)
        raise DeepSMOTEError(f"{path}: directory has neither class subdirectories nor .npz files")
    check_data_file(path)
    refuse_latent_cache(path)
    if path.suffix == ".npz":
        return _open_npz(path)
    if is_idx_name(path) or has_idx_magic(path):
        return _open_idx(path, labels, image_shape)
    raise DeepSMOTEError(f"{path}: unknown data format; give an ImageFolder directory, an .npz or an IDX file")


def _open_idx(path: Path, labels: str | os.PathLike | None, image_shape: tuple[int, int, int] | None) -> ImageSource:
    dims, head = idx_header(path, IDX_UINT8_MAGIC | idx_ndim(path), image_shape)
    labels_path = Path(labels) if labels is not None else labels_path_for(path)
    if not labels_path.exists():
        raise DeepSMOTEError(f"{labels_path}: labels file not found")
    check_data_file(labels_path)
    values = read_idx_array(labels_path, IDX_LABELS_MAGIC)
    if values.shape[0] != dims[0]:
        raise DeepSMOTEError(f"{labels_path}: {values.shape[0]} labels for {dims[0]} images in {path}")
    if dims[0] == 0:
        raise DeepSMOTEError(f"{path}: holds no images")
    classes = classes_of_values(values, path)
    with reading(path), open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    rows = FileRows(path, head, tuple(dims[1:]), dims[0], "gzip" if gzipped else "raw")
    return ImageSource(str(path), classes[0], classes[1], tuple(dims[1:]), rows)


def _open_npz(path: Path) -> ImageSource:
    with reading(path):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise DeepSMOTEError(f"{path}: not a valid .npz ({exc})") from None
    with reading(path), archive:
        images = npz_member(archive, "images", path)
        if images.dtype != np.uint8:
            raise DeepSMOTEError(
                f"{path}: 'images' must be uint8, got {images.dtype}; convert with (x * 255).astype(np.uint8)"
            )
        shape = images.shape
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
            raise DeepSMOTEError(
                f"{path}: 'images' must have shape (N, H, W) or (N, H, W, C) with C 1 or 3, got {shape}"
            )
        values = read_npz_member(archive, "labels", path)
        names = read_npz_member(archive, "classes", path) if "classes.npy" in archive.namelist() else None
        if images.fortran_order:
            # Rows of a Fortran-order array are not contiguous in the file: read it whole.
            loaded = read_npz(path)
            return ImageSource.of(loaded, str(path))
        offset = member_data_offset(path, images.info) if images.info.compress_type == zipfile.ZIP_STORED else None
    if values.shape != (shape[0],):
        raise DeepSMOTEError(f"{path}: 'labels' has shape {values.shape}, expected ({shape[0]},) to match 'images'")
    indices, classes = classes_of_indices(values, names, path) if names is not None else classes_of_values(values, path)
    if shape[0] == 0:
        raise DeepSMOTEError(f"{path}: holds no images")
    item = tuple(shape[1:3]) if len(shape) == 3 or shape[3] == 1 else tuple(shape[1:])
    if offset is not None:
        rows = FileRows(path, offset + images.header_len, item, shape[0], "raw", images.info.CRC, offset)
    else:
        rows = FileRows(path, images.header_len, item, shape[0], f"zip:{images.info.filename}")
    return ImageSource(str(path), indices, classes, item, rows)


def member_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start in the file: after its local header, name and extra field."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(zipfile.sizeFileHeader)
    if len(local) != zipfile.sizeFileHeader or local[:4] != zipfile.stringFileHeader:
        raise DeepSMOTEError(f"{path}: corrupt zip entry for {info.filename}; the file is truncated or corrupt")
    fields = struct.unpack(zipfile.structFileHeader, local)
    return info.header_offset + zipfile.sizeFileHeader + fields[10] + fields[11]


def _concatenate(parts: list[ImageSource], path: Path) -> ImageSource:
    # Shards that name one class list (a generate job's) keep its order; others are merged sorted.
    if len({part.classes for part in parts}) == 1:
        names = list(parts[0].classes)
    else:
        names = sorted({name for part in parts for name in part.classes}, key=natural_key)
    index = {name: i for i, name in enumerate(names)}
    shapes = {part.item_shape for part in parts}
    if len(shapes) > 1:
        raise DeepSMOTEError(f"{path}: .npz shards have different image shapes {sorted(shapes)}")
    labels = [np.asarray([index[name] for name in p.classes])[p.labels] for p in parts]
    rows = ConcatRows([part.rows for part in parts])
    return ImageSource(str(path), np.concatenate(labels).astype(np.int64), tuple(names), parts[0].item_shape, rows)
