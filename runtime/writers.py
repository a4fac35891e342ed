"""Writers for synthetic shards: ImageFolder PNGs, NPZ and WebDataset tar shards.

Every file is written under a temporary name and renamed when complete, so a reader never
sees half a file, and the bytes depend only on the images (fixed PNG settings, tar headers
with zero times and owners). A write that fails (full disk, read-only OUT) or is interrupted
removes its temporary file; a failure is a one-line :class:`DeepSMOTEError` naming OUT.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from .atomic import write_bytes_atomic
from .errors import DeepSMOTEError
from .plan import Shard
from .readers import label_values

FORMATS = ("imagefolder", "npz", "webdataset")


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one uint8 image, shape (H, W) or (H, W, C)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


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


def write_atomic(out: Path, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (inside ``out``) atomically (:mod:`deepsmote.runtime.atomic`).

    Raises
    ------
    DeepSMOTEError
        If the write fails; the temporary file is removed first, also when interrupted.
    """
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise write_error(out, path, exc) from None


# The longest file name, in bytes, that Linux and macOS file systems take.
NAME_MAX = 255
# The fewest bytes one sample can take in each format: a minimal PNG file; two 512-byte tar
# headers and two 512-byte blocks; the raw pixels of an uncompressed npz.
_PNG_MIN_BYTES = 67


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


def min_sample_bytes(fmt: str, image_shape: tuple[int, int, int]) -> int:
    """The fewest bytes one sample of (C, H, W) ``image_shape`` can take on disk in ``fmt``."""
    return {"imagefolder": _PNG_MIN_BYTES, "webdataset": 4 * 512, "npz": int(np.prod(image_shape))}[fmt]


def check_capacity(out: Path, fmt: str, image_shape: tuple[int, int, int], samples: int) -> None:
    """Refuse a job of ``samples`` new samples that OUT's file system could never hold, even empty.

    Raises
    ------
    DeepSMOTEError
        When ``samples`` times the format's smallest sample exceeds the file system's size.
    """
    anchor = out
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    try:
        capacity = shutil.disk_usage(anchor).total
    except OSError:
        return
    need = samples * min_sample_bytes(fmt, image_shape)
    if need > capacity:
        raise DeepSMOTEError(
            f"the job asks for {samples} new samples, at least {need / 1e12:.3g} TB in {fmt}, more than the "
            f"{capacity / 1e12:.3g} TB file system of `out` {out} holds; ask for fewer with `sampling_strategy`"
        )


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
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise write_error(self.out, folder, exc) from None
        for i, image in enumerate(images):
            write_atomic(self.out, folder / f"{shard.name}-{i:05d}.png", encode_png(image))


class NpzWriter:
    """``OUT/<shard>.npz`` with ``images`` and ``labels``: the directory reads back as DATA."""

    def __init__(self, out: Path, classes: Sequence[str]) -> None:
        self.out = out
        self.labels = label_values(classes)

    def write(self, shard: Shard, images: np.ndarray) -> None:
        buffer = io.BytesIO()
        labels = np.full(len(images), self.labels[shard.class_index], dtype=self.labels.dtype)
        np.savez(buffer, images=images, labels=labels)
        write_atomic(self.out, self.out / f"{shard.name}.npz", buffer.getvalue())


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
        write_atomic(self.out, self.out / f"{shard.name}.tar", buffer.getvalue())


def make_writer(fmt: str, out: Path, classes: Sequence[str]) -> ShardWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`)."""
    writers = {"imagefolder": ImageFolderWriter, "npz": NpzWriter, "webdataset": WebDatasetWriter}
    if fmt not in writers:
        raise DeepSMOTEError(f"`fmt` must be one of {', '.join(FORMATS)}, got '{fmt}'")
    return writers[fmt](out, classes)
