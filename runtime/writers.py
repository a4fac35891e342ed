"""Writers for synthetic shards: ImageFolder PNGs, NPZ and WebDataset tar shards.

Every file is written under a temporary name and renamed when complete, so a reader never
sees half a file, and the bytes depend only on the images (fixed PNG settings, tar headers
with zero times and owners).
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import DeepSMOTEError
from .plan import Shard

FORMATS = ("imagefolder", "npz", "webdataset")
TMP_SUFFIX = ".partial"


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one uint8 image, shape (H, W) or (H, W, C)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def safe_class_dir(name: str) -> str:
    """``name`` if it is usable as one directory name, else a one-line error."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
        raise DeepSMOTEError(f"class name {name!r} cannot be a directory name; use --format npz or webdataset")
    return name


def label_array(names: Sequence[str]) -> np.ndarray:
    """Labels for class names: integers when every name is one, else strings (no pickles)."""
    if all(n.lstrip("-").isdigit() for n in names):
        return np.asarray([int(n) for n in names], dtype=np.int64)
    return np.asarray(names, dtype=str)


class ShardWriter(Protocol):
    """Writes one shard's images; the file names depend only on the shard."""

    def write(self, shard: Shard, images: np.ndarray) -> None:
        """Write ``images`` (uint8, (m, H, W) or (m, H, W, C)) for ``shard``."""


class ImageFolderWriter:
    """``OUT/<class>/<shard>-<i>.png``: readable back as an ImageFolder."""

    def __init__(self, out: Path, classes: Sequence[str]) -> None:
        self.out = out
        self.dirs = [safe_class_dir(c) for c in classes]

    def write(self, shard: Shard, images: np.ndarray) -> None:
        folder = self.out / self.dirs[shard.class_index]
        folder.mkdir(exist_ok=True)
        for i, image in enumerate(images):
            _write_atomic(folder / f"{shard.name}-{i:05d}.png", encode_png(image))


class NpzWriter:
    """``OUT/<shard>.npz`` with ``images`` and ``labels``: the directory reads back as DATA."""

    def __init__(self, out: Path, classes: Sequence[str]) -> None:
        self.out = out
        self.labels = label_array(classes)

    def write(self, shard: Shard, images: np.ndarray) -> None:
        buffer = io.BytesIO()
        labels = np.full(len(images), self.labels[shard.class_index], dtype=self.labels.dtype)
        np.savez(buffer, images=images, labels=labels)
        _write_atomic(self.out / f"{shard.name}.npz", buffer.getvalue())


class WebDatasetWriter:
    """``OUT/<shard>.tar`` holding ``<key>.png`` and ``<key>.cls`` (the class index) per sample."""

    def __init__(self, out: Path, classes: Sequence[str]) -> None:
        self.out = out

    def write(self, shard: Shard, images: np.ndarray) -> None:
        buffer = io.BytesIO()
        label = str(shard.class_index).encode()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for i, image in enumerate(images):
                key = f"{shard.name.replace('-', '_')}_{i:05d}"
                for suffix, data in (("png", encode_png(image)), ("cls", label)):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size, info.mode, info.mtime = len(data), 0o644, 0
                    tar.addfile(info, io.BytesIO(data))
        _write_atomic(self.out / f"{shard.name}.tar", buffer.getvalue())


def make_writer(fmt: str, out: Path, classes: Sequence[str]) -> ShardWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`)."""
    writers = {"imagefolder": ImageFolderWriter, "npz": NpzWriter, "webdataset": WebDatasetWriter}
    if fmt not in writers:
        raise DeepSMOTEError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    return writers[fmt](out, classes)
