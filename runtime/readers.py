"""Torch-free readers for the three DATA forms: ImageFolder, NPZ and IDX.

Every reader returns a :class:`LabelledImages` with uint8 images in the input's own layout,
(N, H, W) for grayscale or (N, H, W, C) for colour, and integer labels indexing ``classes``.
Every file is untrusted input. Sizes are checked against headers before anything large is
allocated, and data is read in chunks that stop at the size the header declares, so neither a
header that claims billions of images nor a compressed "bomb" makes a reader allocate more than
the data it really holds (at most what the header declares). A corrupt, truncated, unreadable or
mismatched file raises :class:`DeepSMOTEError` naming the file; nothing is unpickled.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DeepSMOTEError
from .resize import Resize

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
# A file is decoded only in the format its suffix names, never in whatever Pillow detects.
_SUFFIX_FORMATS = {".png": ("PNG",), ".jpg": ("JPEG",), ".jpeg": ("JPEG",)}
IDX_UINT8_MAGIC = 0x00000800
IDX_LABELS_MAGIC = 0x00000801
_READ_CHUNK = 1 << 22
# The arrays that mark an .npz as a latent cache (``runtime/codes.py``) rather than DATA.
LATENT_CACHE_MEMBERS = ("header.npy", "codes.npy")
# An image side larger than this is not a DeepSMOTE input; refusing it early stops
# decompression bombs before Pillow allocates their pixels.
MAX_IMAGE_SIDE = 1024
# An image of that size is 4 MiB as raw RGBA; no PNG or JPEG of it comes near this.
MAX_IMAGE_FILE_BYTES = 64 << 20
# Deflate (gzip, zip) expands at most 1032-fold (a 258-byte match per 2 bits), so a header
# declaring more than this much data per compressed byte cannot be true.
_MAX_DEFLATE_RATIO = 1032
# What the standard library, numpy and Pillow raise for a damaged file; each becomes a one-line
# DeepSMOTEError naming the file.
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    SyntaxError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
    NotImplementedError,
)
# Pillow modes read as one grey channel (alpha dropped); 16-bit grey PNGs open as I;16 (or I).
_GREY_MODES = frozenset({"1", "L", "LA", "F"})
_GREY16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I"})


@dataclass(frozen=True)
class LabelledImages:
    """Images with their labels.

    Attributes
    ----------
    images : np.ndarray
        uint8, shape (N, H, W) or (N, H, W, C).
    labels : np.ndarray
        int64, shape (N,), values in ``range(len(classes))``.
    classes : tuple of str
        Class names in label order.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The model's (C, H, W) for these images."""
        channels = 1 if self.images.ndim == 3 else self.images.shape[3]
        return (channels, self.images.shape[1], self.images.shape[2])

    def class_counts(self) -> np.ndarray:
        """Number of images per class, shape (len(classes),)."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def fingerprint(self) -> str:
        """sha256 of the images, labels and class names: whether a resume sees the same data."""
        digest = DataDigest(self.images.shape, self.classes)
        digest.update(self.images)
        return digest.hexdigest(self.labels)

    def label_values(self) -> np.ndarray:
        """The stored label of each image (:func:`label_values` of its class), shape (N,)."""
        return label_values(self.classes)[self.labels]


class DataDigest:
    """:meth:`LabelledImages.fingerprint`, computed from images that arrive in batches, in DATA order.

    Parameters
    ----------
    shape : tuple of int
        The whole images array's shape, (N, H, W) or (N, H, W, C).
    classes : sequence of str
    """

    def __init__(self, shape: Sequence[int], classes: Sequence[str]) -> None:
        self._digest = hashlib.sha256(json.dumps([list(shape), list(classes)]).encode())

    def update(self, images: np.ndarray) -> None:
        """Add the next images (uint8, DATA order)."""
        self._digest.update(memoryview(np.ascontiguousarray(images)).cast("B"))

    def hexdigest(self, labels: np.ndarray) -> str:
        """The fingerprint, once every image was added; ``labels`` int, shape (N,)."""
        self._digest.update(memoryview(np.ascontiguousarray(labels, dtype=np.int64)).cast("B"))
        return self._digest.hexdigest()


def label_values(classes: Sequence[str]) -> np.ndarray:
    """The label value of each class: integers when every name is one (NPZ, IDX), else the names.

    Written as an npz's ``labels``, these read back as the same class names; strings, never
    pickled objects.

    Parameters
    ----------
    classes : sequence of str, shape (K,)

    Returns
    -------
    np.ndarray
        int64 or str, shape (K,).
    """
    if all(name.lstrip("-").isdigit() for name in classes):
        return np.asarray([int(name) for name in classes], dtype=np.int64)
    return np.asarray(classes, dtype=str)


def read_dataset(
    path: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    *,
    image_shape: tuple[int, int, int] | None = None,
    resize: Resize | None = None,
) -> LabelledImages:
    """Read DATA in any supported form, optionally resizing every image.

    Parameters
    ----------
    path : path-like
        An ImageFolder directory (``path/<class>/*.png|jpg``), a directory of ``.npz`` shards,
        an ``.npz`` file with ``images`` and ``labels``, or an IDX images file (``.gz`` or raw).
    labels : path-like, optional
        The IDX labels file; by default found by name next to the images file.
    image_shape : tuple of int, optional
        The (C, H, W) the caller needs (a bundle's): an IDX file whose header says otherwise is
        refused before its data is read. Not used with ``resize``, which brings images to a size.
    resize : Resize, optional
        Bring every image to this size (:mod:`deepsmote.runtime.resize`); an ImageFolder's
        images may then differ in size.

    Returns
    -------
    LabelledImages
    """
    data = _read(Path(path), labels, None if resize is not None else image_shape, resize)
    if resize is None or is_image_folder(Path(path)):
        return data
    return LabelledImages(resize.images(data.images), data.labels, data.classes)


def is_image_folder(path: Path) -> bool:
    """Whether the directory ``path`` has class subdirectories (ImageFolder) rather than .npz shards."""
    if not path.is_dir():
        return False
    with reading(path):
        return any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


def _read(
    path: Path, labels: str | os.PathLike | None, image_shape: tuple[int, int, int] | None, resize: Resize | None
) -> LabelledImages:
    if not path.exists():
        raise DeepSMOTEError(
            f"{path}: no such file or directory; give an ImageFolder directory, an .npz or an IDX file"
        )
    if labels is not None and not is_idx_name(path):
        raise DeepSMOTEError(f"`labels` is only for IDX images files, not {path}")
    if path.is_dir():
        if is_image_folder(path):
            return read_image_folder(path, resize)
        shards = sorted(path.glob("*.npz"))
        for shard in shards:
            check_data_file(shard)
        if shards:
            return _concatenate([read_npz(p) for p in shards], path)
        raise DeepSMOTEError(f"{path}: directory has neither class subdirectories nor .npz files")
    check_data_file(path)
    refuse_latent_cache(path)
    if path.suffix == ".npz":
        return read_npz(path)
    if is_idx_name(path) or has_idx_magic(path):
        return read_idx(path, labels, image_shape)
    raise DeepSMOTEError(f"{path}: unknown data format; give an ImageFolder directory, an .npz or an IDX file")


def check_data_file(path: Path) -> None:
    """Refuse what is not a readable regular file, before the format is guessed from its bytes."""
    # Opening a FIFO blocks forever and a device never ends: only regular files are data.
    if not path.is_file():
        raise DeepSMOTEError(f"{path}: not a regular file; give an ImageFolder directory, an .npz or an IDX file")
    with reading(path), open(path, "rb"):
        pass


def is_latent_cache(path: Path) -> bool:
    """Whether the file ``path`` is (or was, before it was cut off) a latent cache (``runtime/codes.py``).

    Told by its first zip entry, the header, so that a cut-off cache is still told apart from DATA.
    """
    first = LATENT_CACHE_MEMBERS[0].encode()
    try:
        with open(path, "rb") as f:
            head = f.read(30 + len(first))
    except OSError:
        return False
    # A zip's first local header: signature, ..., name length (bytes 26-27), then the name at 30.
    return head[:4] == b"PK\x03\x04" and head[26:28] == len(first).to_bytes(2, "little") and head[30:] == first


def refuse_latent_cache(path: Path) -> None:
    """Refuse a latent cache where images are needed, naming the fix."""
    if is_latent_cache(path):
        raise DeepSMOTEError(
            f"{path} is a latent cache from deepsmote encode (codes, no images) but this needs the images; "
            "give the DATA it was encoded from"
        )


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn the low-level errors of reading a damaged or unreadable ``path`` into one line."""
    try:
        yield
    except MemoryError:
        raise DeepSMOTEError(f"{path}: not enough memory to read this file") from None
    except _READ_ERRORS as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip()
        detail = reason.splitlines()[0] if reason else type(exc).__name__
        raise DeepSMOTEError(f"{path}: unreadable, truncated or corrupt file ({detail})") from None


def _read_exactly(stream, size: int, path: Path, what: str) -> bytearray:
    """``size`` bytes from ``stream``, which must then end; grows only as data really arrives.

    A header can claim any size: reading chunk by chunk allocates what the stream holds, never
    more than ``size``, and stops at the first byte past it, so a decompression bomb is cut short.
    """
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(_READ_CHUNK, size - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    if len(buffer) != size or stream.read(1):
        longer = len(buffer) == size
        raise DeepSMOTEError(f"{path}: header says {what} but the data is {'longer' if longer else 'shorter'}")
    return buffer


# --- IDX -------------------------------------------------------------------------------------


def is_idx_name(path: Path) -> bool:
    return "idx3" in path.name or path.name.endswith((".idx", ".idx.gz"))


def has_idx_magic(path: Path) -> bool:
    try:
        with _open_maybe_gzip(path) as f:
            head = f.read(4)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) == 4 and head[:2] == b"\x00\x00" and head[2] == 0x08


def _open_maybe_gzip(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _gzip_size_mod32(path: Path) -> int | None:
    """The uncompressed size modulo 2**32 from a gzip trailer, or None for a raw file."""
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return None
        f.seek(0, os.SEEK_END)
        if f.tell() < 18:
            raise DeepSMOTEError(f"{path}: truncated gzip file")
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def idx_header(path: Path, magic: int, image_shape: tuple[int, int, int] | None = None) -> tuple[tuple[int, ...], int]:
    """An IDX file's dimensions and header length, checked against the file's real size (and ``image_shape``)."""
    ndim = magic & 0xFF
    with reading(path), _open_maybe_gzip(path) as f:
        head = f.read(4 + 4 * ndim)
    if len(head) < 4 or struct.unpack(">I", head[:4])[0] != magic:
        found = head[:4].hex() if len(head) >= 4 else "too short"
        raise DeepSMOTEError(f"{path}: not an IDX file of the expected kind (magic {found}, expected {magic:08x})")
    if len(head) < 4 + 4 * ndim:
        raise DeepSMOTEError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", head[4:])
    if image_shape is not None:
        found = (dims[3] if ndim == 4 else 1, dims[1], dims[2])
        if found != tuple(image_shape):
            raise DeepSMOTEError(
                f"{path}: images are {'x'.join(map(str, found))} (CxHxW) by its header but the bundle was "
                f"trained on {'x'.join(map(str, image_shape))}; use a bundle trained on this kind of image"
            )
    total = len(head) + math.prod(dims)  # Python ints: a huge header cannot wrap around
    with reading(path):
        gz_size = _gzip_size_mod32(path)
        real = gz_size if gz_size is not None else path.stat().st_size
        # The gzip trailer holds the size modulo 2**32 only, and can be forged: a header that
        # claims more than deflate can expand the file to is refused before reading.
        impossible = gz_size is not None and total > _MAX_DEFLATE_RATIO * path.stat().st_size
    if impossible or real != (total % 2**32 if gz_size is not None else total):
        raise DeepSMOTEError(
            f"{path}: header says {dims} ({total} bytes) but the file holds "
            f"{'far less' if impossible else f'{real} bytes'}; the file is truncated or corrupt"
        )
    return dims, len(head)


def read_idx_array(path: Path, magic: int, image_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Read one IDX file after checking its header against the file's real size (and ``image_shape``)."""
    dims, head = idx_header(path, magic, image_shape)
    with reading(path), _open_maybe_gzip(path) as f:
        f.read(head)
        buffer = _read_exactly(f, math.prod(dims), path, str(dims))
    # The bytearray is wrapped, not copied: peak memory stays at one copy of the data.
    return np.frombuffer(buffer, dtype=np.uint8).reshape(dims)


def labels_path_for(images: Path) -> Path:
    name = images.name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1")
    if name == images.name:
        raise DeepSMOTEError(f"{images}: cannot derive the labels file name; give it with `labels`")
    for candidate in (name, name.removesuffix(".gz"), name + ".gz"):
        if (images.parent / candidate).exists():
            return images.parent / candidate
    raise DeepSMOTEError(f"{images}: labels file {images.parent / name} not found; give it with `labels`")


def read_idx(
    path: str | os.PathLike, labels: str | os.PathLike | None = None, image_shape: tuple[int, int, int] | None = None
) -> LabelledImages:
    """Read an IDX images file (magic 0x803, uint8, (N, H, W) or (N, H, W, C)) and its labels.

    Returns
    -------
    LabelledImages
        Class names are the label values as strings, sorted numerically.
    """
    path = Path(path)
    # 0x0803 is (N, H, W); 0x0804 is (N, H, W, C).
    images = read_idx_array(path, IDX_UINT8_MAGIC | idx_ndim(path), image_shape)
    labels_path = Path(labels) if labels is not None else labels_path_for(path)
    if not labels_path.exists():
        raise DeepSMOTEError(f"{labels_path}: labels file not found")
    check_data_file(labels_path)
    values = read_idx_array(labels_path, IDX_LABELS_MAGIC)
    if values.shape[0] != images.shape[0]:
        raise DeepSMOTEError(f"{labels_path}: {values.shape[0]} labels for {images.shape[0]} images in {path}")
    return _from_label_values(images, values, path)


def idx_ndim(path: Path) -> int:
    with reading(path), _open_maybe_gzip(path) as f:
        head = f.read(4)
    if len(head) < 4 or head[:3] != b"\x00\x00\x08" or head[3] not in (3, 4):
        raise DeepSMOTEError(f"{path}: not an IDX uint8 images file (magic {head.hex() or 'empty'})")
    return head[3]


# --- NPZ -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NpyMember:
    """One checked array of an ``.npz``: where its data lies and what it holds.

    Attributes
    ----------
    info : zipfile.ZipInfo
    shape : tuple of int
    fortran_order : bool
    dtype : np.dtype
    header_len : int
        Bytes of the ``.npy`` header before the data, inside the member.
    """

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    header_len: int

    @property
    def nbytes(self) -> int:
        """Bytes of the array's data."""
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: a huge shape cannot wrap around


def npz_member(
    archive: zipfile.ZipFile, key: str, path: Path, purpose: str = "an .npz DATA needs 'images' and 'labels'"
) -> NpyMember:
    """Check the header of array ``key`` of ``archive`` without reading its data.

    The header is parsed with numpy's safe parser, object dtypes are refused (nothing is
    unpickled), and the size the header declares must be the member's size in the zip directory.
    """
    name = f"{key}.npy"
    if name not in archive.namelist():
        raise DeepSMOTEError(f"{path}: missing array '{key}'; {purpose}")
    info = archive.getinfo(name)
    if info.flag_bits & 0x1:
        raise DeepSMOTEError(f"{path}: '{key}' is encrypted; give an unencrypted .npz")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise DeepSMOTEError(f"{path}: '{key}' has unsupported .npy version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        try:
            shape, fortran_order, dtype = read_header(member)
        except Exception as exc:  # numpy's parser of untrusted text raises ValueError, TokenError, ...
            raise DeepSMOTEError(f"{path}: '{key}' has an invalid .npy header ({type(exc).__name__})") from None
        header_len = member.tell()
    if dtype.hasobject:
        raise DeepSMOTEError(f"{path}: '{key}' holds Python objects; only plain arrays are read (no pickles)")
    if dtype.itemsize == 0 or dtype.fields is not None or dtype.subdtype is not None:
        raise DeepSMOTEError(f"{path}: '{key}' has dtype {dtype}; expected plain numbers or strings")
    found = NpyMember(info, tuple(shape), bool(fortran_order), dtype, header_len)
    if info.file_size != header_len + found.nbytes:
        raise DeepSMOTEError(f"{path}: '{key}' claims shape {shape} but holds {info.file_size - header_len} bytes")
    if info.compress_type != zipfile.ZIP_STORED and found.nbytes > _MAX_DEFLATE_RATIO * max(info.compress_size, 1):
        raise DeepSMOTEError(f"{path}: '{key}' claims shape {shape}, more than its compressed data can hold")
    return found


def read_npz_member(archive: zipfile.ZipFile, key: str, path: Path, purpose: str | None = None) -> np.ndarray:
    """One array of the archive, read once from the member whose header was checked.

    The data is read in chunks up to the size the header declares (:func:`npz_member`).
    """
    found = npz_member(archive, key, path) if purpose is None else npz_member(archive, key, path, purpose)
    with archive.open(found.info) as member:
        member.read(found.header_len)
        data = _read_exactly(member, found.nbytes, path, f"'{key}' is {found.shape}")
    array = np.frombuffer(data, dtype=found.dtype)
    return array.reshape(found.shape[::-1]).T if found.fortran_order else array.reshape(found.shape)


def read_npz(path: str | os.PathLike) -> LabelledImages:
    """Read an ``.npz`` with ``images`` uint8 (N, H, W[, C]) and ``labels`` (N,).

    With a ``classes`` array of names (what ``deepsmote generate`` writes), ``labels`` are indices
    into it and the classes keep its order and exact names. Without it, labels may be integers or
    strings and class names are their sorted distinct values.
    """
    path = Path(path)
    with reading(path):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise DeepSMOTEError(f"{path}: not a valid .npz ({exc})") from None
    with reading(path), archive:
        images = read_npz_member(archive, "images", path)
        if images.dtype != np.uint8:
            raise DeepSMOTEError(
                f"{path}: 'images' must be uint8, got {images.dtype}; convert with (x * 255).astype(np.uint8)"
            )
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
            raise DeepSMOTEError(
                f"{path}: 'images' must have shape (N, H, W) or (N, H, W, C) with C 1 or 3, got {images.shape}"
            )
        values = read_npz_member(archive, "labels", path)
        names = read_npz_member(archive, "classes", path) if "classes.npy" in archive.namelist() else None
    if values.shape != (images.shape[0],):
        raise DeepSMOTEError(
            f"{path}: 'labels' has shape {values.shape}, expected ({images.shape[0]},) to match 'images'"
        )
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    if names is not None:
        return _from_class_indices(images, values, names, path)
    return _from_label_values(images, values, path)


def _from_class_indices(images: np.ndarray, labels: np.ndarray, names: np.ndarray, path: Path) -> LabelledImages:
    labels, classes = classes_of_indices(labels, names, path)
    if images.shape[0] == 0:
        raise DeepSMOTEError(f"{path}: holds no images")
    return LabelledImages(np.ascontiguousarray(images), labels, classes)


def classes_of_indices(labels: np.ndarray, names: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices (int64, shape (N,)) and class names of labels that index a ``classes`` array."""
    if names.dtype.kind != "U" or names.ndim != 1 or len(set(names.tolist())) != len(names):
        raise DeepSMOTEError(f"{path}: 'classes' must be distinct strings, shape (K,)")
    if labels.dtype.kind not in "iu" or (len(labels) and (labels.min() < 0 or labels.max() >= len(names))):
        raise DeepSMOTEError(f"{path}: with 'classes', 'labels' must be integers in 0..{len(names) - 1}")
    return labels.astype(np.int64), check_class_names(names.tolist(), path)


# --- ImageFolder -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderIndex:
    """An ImageFolder's files and labels, found without decoding any image.

    Attributes
    ----------
    files : tuple of Path
        In DATA order: class folders sorted by name, files sorted by name within each.
    labels : np.ndarray
        int64, shape (N,).
    classes : tuple of str
    colour : bool
        Whether any image has colour, so that every image is read as RGB.
    size : tuple of int or None
        (height, width) every image shares; None when they differ (allowed with ``resize`` only).
    """

    files: tuple[Path, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    colour: bool
    size: tuple[int, int] | None


def index_image_folder(path: str | os.PathLike, resize: Resize | None = None) -> FolderIndex:
    """List ``path/<class>/*.png|jpg|jpeg`` and check each image's header (size, mode), decoding none.

    Entries that are not regular files with one of these suffixes, and class directories
    without images, are skipped with a warning. All images must share one size, unless
    ``resize`` brings each to its size as it is read.
    """

    root = Path(path)
    with reading(root):
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    class_dirs = [p for p in folders if not p.name.startswith(".")]
    hidden = [p for p in folders if p.name.startswith(".") and _holds_images(p)]
    if hidden:
        # torchvision's ImageFolder takes hidden folders as classes; deepsmote leaves them out
        # (its own bookkeeping is hidden), so say so rather than drop images silently.
        warnings.warn(
            f"{hidden[0]}: a hidden folder with images is not read as a class"
            f"{f' ({len(hidden)} such folders)' if len(hidden) > 1 else ''}; "
            "rename it without the leading '.' to use it",
            stacklevel=2,
        )
    found: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    skipped: list[Path] = []
    sizes: set[tuple[int, int]] = set()
    colour = False
    for class_dir in class_dirs:
        with reading(class_dir):
            files = sorted(p for p in class_dir.iterdir() if not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        skipped += [p for p in files if p not in images]
        if not images:
            warnings.warn(f"{class_dir}: no images; class '{class_dir.name}' skipped", stacklevel=2)
            continue
        check_class_names([class_dir.name], root, "class folder name")
        label = len(classes)
        classes.append(class_dir.name)
        for file in images:
            with _opening_image(file) as image:
                # Pillow's sizes are (width, height); ours are HxW.
                size = (image.size[1], image.size[0])
                if resize is None and sizes and size not in sizes:
                    (first,) = sizes
                    raise DeepSMOTEError(
                        f"{file}: size {size[0]}x{size[1]} (HxW) differs from {first[0]}x{first[1]}; "
                        "pass `resize` HxW to bring every image to one size"
                    )
                sizes.add(size)
                colour = colour or image.mode not in _GREY_MODES | _GREY16_MODES
            found.append(file)
            labels.append(label)
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} non-image files, e.g. {skipped[0]}", stacklevel=2)
    if not found:
        raise DeepSMOTEError(f"{root}: no images found; expected {root}/<class>/*.png|jpg")
    return FolderIndex(
        tuple(found),
        np.asarray(labels, dtype=np.int64),
        tuple(classes),
        colour,
        next(iter(sizes)) if len(sizes) == 1 else None,
    )


def _holds_images(folder: Path) -> bool:
    """Whether ``folder`` holds a file with an image suffix (an unreadable folder holds none)."""
    try:
        return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())
    except OSError:
        return False


@contextlib.contextmanager
def _opening_image(file: Path):
    """The Pillow image of ``file``, decoded only in its suffix's format; damage becomes one line."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(_image_file_bytes(file)), formats=_SUFFIX_FORMATS[file.suffix.lower()]) as image:
            if max(image.size) > MAX_IMAGE_SIDE:
                raise DeepSMOTEError(
                    f"{file}: {image.size[0]}x{image.size[1]} is too large (max side {MAX_IMAGE_SIDE})"
                )
            yield image
    except (*_READ_ERRORS, Image.DecompressionBombError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # Pillow names the buffer it was given (<_io.BytesIO object at 0x...>): name the file.
        detail = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", file.name, detail)
        raise DeepSMOTEError(f"{file}: unreadable image ({detail}); remove or replace it") from None


def folder_image(file: Path, colour: bool, resize: Resize | None = None) -> np.ndarray:
    """One ImageFolder image as uint8 (H, W), or (H, W, 3) when ``colour``; resized by ``resize``."""
    with _opening_image(file) as image:
        pixels = _pixels(image)
    if resize is not None:
        pixels = resize.images(pixels[None])[0]
    return np.repeat(pixels[..., None], 3, axis=2) if colour and pixels.ndim == 2 else pixels


def read_image_folder(path: str | os.PathLike, resize: Resize | None = None) -> LabelledImages:
    """Read ``path/<class>/*.png|jpg|jpeg``; class names are the sorted directory names.

    Entries that are not regular files with one of these suffixes, and class directories
    without images, are skipped with a warning. All images must share one size, unless
    ``resize`` brings each to its size as it is read. Grey images
    (1-bit, 8-bit, 16-bit, with or without alpha) are kept as (H, W), 16-bit ones by their high
    byte; if any image has colour, every image is converted to RGB (N, H, W, 3). Alpha is dropped.
    """
    index = index_image_folder(path, resize)
    pixels = [folder_image(file, index.colour, resize) for file in index.files]
    return LabelledImages(np.stack(pixels), index.labels, index.classes)


def _image_file_bytes(file: Path) -> bytes:
    # Pillow asks its file for a chunk's declared length in one read, so a damaged PNG read from
    # disk reserves gigabytes; from memory a read returns only the bytes there are.
    size = file.stat().st_size
    if size > MAX_IMAGE_FILE_BYTES:
        raise DeepSMOTEError(f"{file}: {size} bytes is too large for an image (max {MAX_IMAGE_FILE_BYTES} bytes)")
    return file.read_bytes()


def _pixels(image) -> np.ndarray:
    """uint8 (H, W) of a grey Pillow image or (H, W, 3) of a colour one, alpha dropped."""
    if image.mode in _GREY16_MODES:
        # convert("L") would clip 16-bit values at 255; the high byte is what Pillow keeps of
        # 16-bit colour PNGs, so grey and colour 16-bit images scale alike.
        return (np.asarray(image).astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
    return np.asarray(image.convert("L" if image.mode in _GREY_MODES else "RGB"), dtype=np.uint8)


# --- helpers ---------------------------------------------------------------------------------


def _from_label_values(images: np.ndarray, values: np.ndarray, path: Path) -> LabelledImages:
    if images.shape[0] == 0:
        raise DeepSMOTEError(f"{path}: holds no images")
    labels, classes = classes_of_values(values, path)
    return LabelledImages(np.ascontiguousarray(images), labels, classes)


def classes_of_values(values: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices (int64, shape (N,)) and class names of label values (integers or strings)."""
    if values.dtype.kind not in "iuU":
        raise DeepSMOTEError(f"{path}: labels must be integers or strings, got {values.dtype}")
    distinct, labels = np.unique(values, return_inverse=True)
    names = [str(v) for v in distinct]
    # One class order for every source: numbers numerically, then names alphabetically.
    order = sorted(range(len(names)), key=lambda i: natural_key(names[i]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[labels.ravel()], check_class_names([names[i] for i in order], path)


def _concatenate(parts: list[LabelledImages], path: Path) -> LabelledImages:
    # Shards that name one class list (a generate job's) keep its order; others are merged sorted.
    if len({part.classes for part in parts}) == 1:
        names = list(parts[0].classes)
    else:
        names = sorted({name for part in parts for name in part.classes}, key=natural_key)
    index = {name: i for i, name in enumerate(names)}
    shapes = {part.images.shape[1:] for part in parts}
    if len(shapes) > 1:
        raise DeepSMOTEError(f"{path}: .npz shards have different image shapes {sorted(shapes)}")
    labels = [np.asarray([index[p.classes[i]] for i in range(len(p.classes))])[p.labels] for p in parts]
    return LabelledImages(
        np.concatenate([p.images for p in parts]), np.concatenate(labels).astype(np.int64), tuple(names)
    )


def check_class_names(names: Sequence[str], where: object, what: str = "class name") -> tuple[str, ...]:
    """``names`` as a tuple, each checked to be UTF-8 text, or a one-line error naming the first that is not.

    Class names are written as UTF-8 (``manifest.csv``, ``summary.json``, the bundle's manifest,
    tar and Parquet members); a folder name of other bytes (read as lone surrogates) or a label
    with a lone surrogate cannot be, so it is refused before anything is written.
    """
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(name) if what == "class folder name" else name
            raise DeepSMOTEError(
                f"{where}: {what} {shown!r} is not valid UTF-8; rename it (class names are written as UTF-8 text)"
            ) from None
    return tuple(names)


def natural_key(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.lstrip("-").isdigit() else (1, name)
