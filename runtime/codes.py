"""The codes of DATA: encoded in a stream, and the latent cache that ``deepsmote encode`` writes.

:func:`encode_stream` reads DATA a batch at a time and keeps only codes (N x Z floats), never the
images. Each class's images are still encoded in calls of exactly
:attr:`Models.encode_batch <deepsmote.runtime.bundle.Models.encode_batch>` of its images in DATA
order, as when the whole class is in memory, so the codes, and every byte drawn from them, are the
same.

A latent cache is one uncompressed ``.npz`` (written through :mod:`deepsmote.runtime.atomic`):

==============  ==============================================================================
``header.npy``  uint8, the UTF-8 JSON header: format, version, bundle fingerprint, latent_dim,
                image_shape (C, H, W), class names, DATA's fingerprint and path, N, the sha256
                of the three arrays below
``codes.npy``   float32 (N, Z), row i the code of DATA image ``index[i]``
``labels.npy``  int64 (N,), class indices into the header's class names
``index.npy``   int64 (N,), the DATA index of each row (provenance in ``manifest.csv``)
==============  ==============================================================================

:func:`read_latent_cache` maps the codes from the file (``np.memmap``) after checking every header
and the arrays' digest, and refuses a cache from another bundle (:meth:`LatentCache.check_bundle`).

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .bundle import Bundle, Models, load_bundle, open_models
from .errors import DeepSMOTEError
from .memory import release_free_memory
from .pixels import to_model
from .readers import LATENT_CACHE_MEMBERS, DataDigest, check_class_names, npz_member, read_npz_member, reading
from .resize import check_image_shape
from .stream import ImageSource, member_data_offset

__all__ = ["LatentCache", "codes_of", "encode_dataset", "encode_stream", "read_latent_cache", "write_latent_cache"]

CACHE_FORMAT = "deepsmote-codes"
# 2 (0.12.1): the header's fields are inside the digest; version 1 caches are refused.
CACHE_VERSION = 2
_ARRAYS = ("codes", "labels", "index")


def encode_stream(models: Models, source: ImageSource, wanted: np.ndarray) -> tuple[tuple[np.ndarray | None, ...], str]:
    """Encode DATA a batch at a time.

    Parameters
    ----------
    models : Models
    source : ImageSource
    wanted : np.ndarray
        bool, shape (K,): the classes to encode (the others are read for the fingerprint only).

    Returns
    -------
    codes : tuple of np.ndarray or None
        Per class, float32 (n_c, Z), its images' codes in DATA order; None where not wanted.
    fingerprint : str
        DATA's fingerprint (:meth:`LabelledImages.fingerprint` of the same images).

    Memory: the codes, one read batch, per class fewer than ``models.encode_batch`` images waiting
    for a full call, and the float32 input of the calls that run at once, one per thread; what was
    freed is handed back to the system at the end (:func:`~deepsmote.runtime.memory.release_free_memory`).

    Raises
    ------
    DeepSMOTEError
        If the encoder yields NaN or inf.
    """
    count, calls = len(source.classes), models.encode_batch
    digest = DataDigest(source.shape, source.classes)
    waiting: list[list[np.ndarray]] = [[] for _ in range(count)]
    done: list[list[np.ndarray]] = [[] for _ in range(count)]

    def flush(final: bool) -> None:
        # Every class has had only whole calls encoded, so what waits starts at a call boundary. Whole
        # calls of several classes go to the encoder together, so that every thread has one; each
        # is still `calls` images of one class. At the end, a class's rest is encoded alone: its
        # calls, the last one shorter, are those of the class in memory.
        chunks: list[tuple[int, np.ndarray]] = []
        for c in range(count):
            if not waiting[c]:
                continue
            images = np.concatenate(waiting[c])
            if final:
                done[c].append(_encode(models, images))
                waiting[c] = []
                continue
            whole = len(images) // calls * calls
            waiting[c] = [images[whole:]] if whole < len(images) else []
            if whole:
                chunks.append((c, images[:whole]))
        if chunks:
            codes = _encode(models, np.concatenate([images for _, images in chunks]))
            at = 0
            for c, images in chunks:
                done[c].append(codes[at : at + len(images)])
                at += len(images)

    workers = max(1, models.workers)
    for start, batch in source.batches():
        digest.update(batch)
        labels = source.labels[start : start + len(batch)]
        for c in np.unique(labels):
            if wanted[c]:
                waiting[c].append(batch[labels == c])
        if sum(sum(map(len, w)) // calls for w in waiting) >= workers:
            flush(final=False)
    flush(final=True)
    codes = tuple(np.concatenate(done[c]) if wanted[c] and done[c] else None for c in range(count))
    # The read batches and float32 inputs are gone; their holes in the heaps need not stay resident.
    release_free_memory()
    for c, found in enumerate(codes):
        if found is not None and not np.isfinite(found).all():
            raise DeepSMOTEError(
                f"the encoder produced NaN or inf codes for class '{source.classes[c]}'; the bundle is broken"
            )
    return codes, digest.hexdigest(source.labels)


def _encode(models: Models, images: np.ndarray) -> np.ndarray:
    """float32 (n, Z): the codes of uint8 images, in calls of ``models.encode_batch`` from the first.

    The images become float32 (four times their bytes) one round of calls at a time, a call per thread.
    """
    codes = np.empty((len(images), models.bundle.latent_dim), dtype=np.float32)
    step = models.encode_batch * max(1, models.workers)
    for start in range(0, len(images), step):
        codes[start : start + step] = models.encode(to_model(images[start : start + step]))
    return codes


@dataclass(frozen=True)
class LatentCache:
    """A latent cache read back: DATA's codes without its images.

    Attributes
    ----------
    path : Path
    codes : np.ndarray
        float32, shape (N, Z), mapped from the file.
    labels : np.ndarray
        int64, shape (N,).
    index : np.ndarray
        int64, shape (N,), DATA index of each row.
    classes : tuple of str
    image_shape : tuple of int
        The (C, H, W) of the images encoded.
    bundle : str
        The fingerprint of the bundle that encoded them.
    data : str
        DATA's fingerprint (what a job records, as if it had read DATA).
    source : str
        The DATA path given to ``deepsmote encode`` (for messages).
    """

    path: Path
    codes: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    bundle: str
    data: str
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def item_shape(self) -> tuple[int, ...]:
        """One image of DATA: (H, W) grey or (H, W, 3) colour."""
        channels, height, width = self.image_shape
        return (height, width) if channels == 1 else (height, width, channels)

    def class_counts(self) -> np.ndarray:
        """Number of codes per class, shape (len(classes),)."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def class_codes(self, c: int) -> np.ndarray:
        """float32 (n_c, Z): class ``c``'s codes in DATA order."""
        return np.ascontiguousarray(self.codes[self.labels == c])

    def members(self, c: int) -> np.ndarray:
        """int64 (n_c,): the DATA index of each of class ``c``'s codes."""
        return self.index[self.labels == c]

    def check_bundle(self, bundle: Bundle) -> None:
        """Refuse a cache that another bundle encoded: its codes mean nothing to this decoder.

        Raises
        ------
        DeepSMOTEError
            Naming both fingerprints and the command that makes a matching cache.
        """
        if self.bundle != bundle.fingerprint:
            raise DeepSMOTEError(
                f"CODES {self.path} was encoded by the bundle with fingerprint {self.bundle[:12]}, not by "
                f"{bundle.path} ({bundle.fingerprint[:12]}); re-run deepsmote encode {bundle.path} DATA --out CODES"
            )


def encode_dataset(
    bundle: str | os.PathLike | Bundle,
    data: ImageSource,
    out: str | os.PathLike,
    *,
    provider: str = "auto",
    threads: int | None = None,
) -> LatentCache:
    """Encode DATA into the latent cache ``out`` (what ``deepsmote encode`` does).

    Parameters
    ----------
    bundle : path-like or Bundle
    data : ImageSource
        DATA opened with :func:`~deepsmote.runtime.stream.open_dataset`; read once, in batches.
    out : path-like
        The cache file, written atomically (replaced if it exists).

    Returns
    -------
    LatentCache
        The cache, read back.
    """
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, lazy=True)
    check_image_shape(data.image_shape, loaded.image_shape)
    models = open_models(loaded, provider, threads)
    codes, fingerprint = encode_stream(models, data, np.ones(len(data.classes), dtype=bool))
    return read_latent_cache(write_latent_cache(out, loaded, data, codes, fingerprint))


def _digest(arrays: dict[str, np.ndarray], header: dict[str, Any]) -> str:
    """sha256 over the header's fields (all but ``sha256``, canonical JSON) and the arrays."""
    digest = hashlib.sha256()
    fields = {key: value for key, value in header.items() if key != "sha256"}
    digest.update(json.dumps(fields, sort_keys=True, ensure_ascii=True).encode())
    for name in _ARRAYS:
        array = arrays[name]
        digest.update(repr((name, array.shape, array.dtype.str)).encode())
        for start in range(0, len(array), 1 << 16):  # a mapped array in slices, not copied whole
            digest.update(memoryview(np.ascontiguousarray(array[start : start + (1 << 16)])).cast("B"))
    return digest.hexdigest()


def write_latent_cache(
    path: str | os.PathLike,
    bundle: Bundle,
    source: ImageSource,
    codes: tuple[np.ndarray | None, ...],
    fingerprint: str,
) -> Path:
    """Write the latent cache of ``source`` (every class encoded) to ``path``, atomically.

    Parameters
    ----------
    codes : tuple of np.ndarray
        Per class, float32 (n_c, Z) in DATA order (:func:`encode_stream`).
    fingerprint : str
        DATA's fingerprint.
    """
    target = Path(path)
    arrays = {
        "codes": np.empty((len(source), bundle.latent_dim), dtype=np.float32),
        "labels": np.ascontiguousarray(source.labels, dtype=np.int64),
        "index": np.arange(len(source), dtype=np.int64),
    }
    for c, found in enumerate(codes):
        if found is not None:
            arrays["codes"][source.labels == c] = found
    header = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "bundle": bundle.fingerprint,
        "latent_dim": bundle.latent_dim,
        "image_shape": list(source.image_shape),
        "classes": list(source.classes),
        "data": fingerprint,
        "source": source.path,
        "count": len(source),
    }
    header["sha256"] = _digest(arrays, header)
    text = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            # A file object, so numpy adds no '.npz' to the temporary name; np.savez stores, never
            # compresses, which is what lets the codes be mapped from the file.
            np.savez(f, header=text, **arrays)
    except OSError as exc:
        raise DeepSMOTEError(f"cannot write `out` {target}: {exc.strerror or exc}; choose another `out`") from None
    return target


def read_latent_cache(path: str | os.PathLike) -> LatentCache:
    """Read and check a latent cache; the codes are mapped from the file.

    Raises
    ------
    DeepSMOTEError
        For a file that is not a latent cache, or one that is truncated or corrupt.
    """
    path = Path(path)
    fix = "re-run deepsmote encode BUNDLE DATA --out CODES"

    def corrupt(detail: str) -> DeepSMOTEError:
        return DeepSMOTEError(f"CODES {path} is truncated or corrupt ({detail}); {fix}")

    if not path.is_file():
        raise DeepSMOTEError(f"CODES {path} is not a file; {fix}")
    with reading(path):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise corrupt(str(exc)) from None
    purpose = "not a latent cache of deepsmote encode"
    with reading(path), archive:
        if not set(LATENT_CACHE_MEMBERS) <= set(archive.namelist()):
            raise corrupt(purpose)
        header = _header(read_npz_member(archive, "header", path, purpose), corrupt)
        found = {name: npz_member(archive, name, path, purpose) for name in _ARRAYS}
        n, z = int(header["count"]), int(header["latent_dim"])
        expected = {"codes": ((n, z), np.float32), "labels": ((n,), np.int64), "index": ((n,), np.int64)}
        for name, (shape, dtype) in expected.items():
            member = found[name]
            if member.shape != shape or member.dtype != np.dtype(dtype) or member.fortran_order:
                raise corrupt(f"'{name}' is {member.dtype} {member.shape}, expected {np.dtype(dtype)} {shape}")
            if member.info.compress_type != zipfile.ZIP_STORED:
                raise corrupt(f"'{name}' is compressed")
        labels = read_npz_member(archive, "labels", path, purpose)
        index = read_npz_member(archive, "index", path, purpose)
        offset = member_data_offset(path, found["codes"].info) + found["codes"].header_len
    with reading(path):
        codes = np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=(n, z)) if n else np.empty((0, z))
    arrays = {"codes": codes, "labels": labels, "index": index}
    if _digest(arrays, header) != header["sha256"]:
        raise corrupt("its header or arrays do not match the digest in its header")
    classes = tuple(header["classes"])
    if n == 0 or labels.min() < 0 or labels.max() >= len(classes) or index.min() < 0 or np.any(np.diff(index) <= 0):
        raise corrupt("labels or DATA indices out of range")
    return LatentCache(
        path,
        codes,
        labels,
        index,
        classes,
        tuple(header["image_shape"]),  # type: ignore[arg-type]
        header["bundle"],
        header["data"],
        header["source"],
    )


def _header(raw: np.ndarray, corrupt: Any) -> dict[str, Any]:
    """The header's fields, each of the type and range ``write_latent_cache`` writes, or ``corrupt``."""
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise corrupt("its header is not JSON") from None
    keys = ("format", "version", "bundle", "latent_dim", "image_shape", "classes", "data", "source", "count", "sha256")
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT or any(k not in header for k in keys):
        raise corrupt("not a latent cache of deepsmote encode")
    if header["version"] != CACHE_VERSION:
        raise corrupt(f"format version {header['version']!r}, this deepsmote reads {CACHE_VERSION}")
    for key in ("bundle", "data", "sha256"):
        if not _is_sha256(header[key]):
            raise corrupt(f"its header's {key!r} is not a sha256")
    if not _is_int(header["latent_dim"], 1) or not _is_int(header["count"], 1):
        raise corrupt("its header's 'latent_dim' and 'count' must be positive integers")
    shape = header["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v, 1) for v in shape) and shape[0] in (1, 3)):
        raise corrupt(f"its header's 'image_shape' must be [C, H, W] with C 1 or 3, got {str(shape)[:80]}")
    classes = header["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise corrupt("its header's 'classes' must be a non-empty list of names")
    if len(set(classes)) != len(classes):
        raise corrupt("its header names a class twice")
    if not isinstance(header["source"], str):
        raise corrupt("its header's 'source' must be a string")
    check_class_names(classes, f"CODES {header['source'][:200]}")
    return header


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _is_int(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value < 2**53


def codes_of(
    models: Models, data: ImageSource | LatentCache, new_counts: np.ndarray
) -> tuple[tuple[np.ndarray | None, ...], tuple[np.ndarray, ...], str]:
    """What :meth:`Synthesizer.from_codes` needs of DATA read in batches, or of a latent cache.

    Parameters
    ----------
    data : ImageSource or LatentCache
    new_counts : np.ndarray
        int, shape (K,), synthetic samples per class; only the classes that grow are encoded.

    Returns
    -------
    codes : tuple of np.ndarray or None
        Per class, float32 (n_c, Z) in DATA order; None for a class that does not grow.
    members : tuple of np.ndarray
        Per class, int64 (n_c,), the DATA index of each code.
    fingerprint : str
        DATA's fingerprint (the one recorded in the cache for a LatentCache).
    """
    grows = np.asarray(new_counts) > 0
    if isinstance(data, LatentCache):
        codes = tuple(data.class_codes(c) if grow else None for c, grow in enumerate(grows))
        return codes, tuple(data.members(c) for c in range(len(grows))), data.data
    codes, fingerprint = encode_stream(models, data, grows)
    return codes, tuple(np.flatnonzero(data.labels == c) for c in range(len(grows))), fingerprint
