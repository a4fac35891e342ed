"""Untrusted data: property-based and fuzz tests of the IDX, NPZ and ImageFolder readers.

Whatever the bytes, a reader returns images or raises a one-line :class:`DeepSMOTEError` (or
skips an entry with a warning, where documented); it never crashes, hangs or allocates more
than the data really holds. The in-process tests bound memory with ``tracemalloc``; the raw-bytes
fuzz runs in a child process under a time limit per case and an address-space limit, and can be
run longer by hand::

    python tests/test_reliability_readers.py --cases 100000 --seed 1
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import errno
import gzip
import io
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.readers import MAX_IMAGE_FILE_BYTES, MAX_IMAGE_SIDE, read_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

MiB = 1 << 20
FUZZ_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- building files ------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, dims: tuple[int, ...] | None = None) -> bytes:
    dims = array.shape if dims is None else dims
    return struct.pack(f">I{len(dims)}I", 0x800 | len(dims), *dims) + array.astype(np.uint8).tobytes()


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for a ``width`` x ``height`` grey image, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def gzip_stream(parts: Iterator[bytes], claimed_size: int) -> bytes:
    """gzip of the concatenated ``parts`` whose trailer claims ``claimed_size`` (mod 2**32)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = b"".join(compressor.compress(part) for part in parts) + compressor.flush()
    return body[:-4] + struct.pack("<I", claimed_size % 2**32)


def zeros(total: int) -> Iterator[bytes]:
    block = bytes(MiB)
    for _ in range(total // MiB):
        yield block


SAMPLE = np.random.default_rng(0).integers(0, 256, (6, 8, 8), dtype=np.uint8)
SAMPLE_LABELS = np.array([0, 0, 0, 1, 1, 1])


def write_data(root: Path, kind: str, data: bytes) -> Path:
    """Lay out ``data`` as DATA of ``kind`` under ``root``; returns the path to read."""
    if kind in ("idx", "idx.gz"):
        gz = kind == "idx.gz"
        suffix = ".gz" if gz else ""
        labels = idx_bytes(SAMPLE_LABELS)
        (root / f"x-labels-idx1-ubyte{suffix}").write_bytes(gzip.compress(labels) if gz else labels)
        path = root / f"x-images-idx3-ubyte{suffix}"
        path.write_bytes(data)
        return path
    if kind == "npz":
        path = root / "x.npz"
        path.write_bytes(data)
        return path
    for name, content in (("a", data), ("b", png_bytes(SAMPLE[0]))):
        (root / name).mkdir(exist_ok=True)
        (root / name / f"0.{kind}").write_bytes(content)
    return root


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail instead of hanging (main thread only, which is where pytest runs tests)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_bounded(path: Path, limit_bytes: int = 8 * MiB, named: str | None = None) -> str | None:
    """Read ``path``; the one-line error or None. Fails on any other exception or a large allocation.

    The error must name ``named`` (by default ``path``'s name): the file at fault.
    """
    tracemalloc.start()
    try:
        with warnings.catch_warnings(), time_limit(20):
            warnings.simplefilter("ignore")
            read_dataset(path)
        message = None
    except DeepSMOTEError as exc:
        message = str(exc)
        assert "\n" not in message and (named or path.name) in message, message
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < limit_bytes, f"reading {path} allocated {peak / MiB:.1f} MiB"
    return message


# --- property tests ------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(
    dims=st.tuples(st.integers(0, 4), st.integers(1, 5), st.integers(1, 5)),
    channels=st.sampled_from([None, 1, 3]),
    extra=st.integers(-3, 3),
    label_extra=st.integers(-1, 1),
    gz=st.booleans(),
)
def test_idx_reads_exactly_what_its_header_declares(tmp_path_factory, dims, channels, extra, label_extra, gz):
    root = tmp_path_factory.mktemp("idx")
    shape = dims if channels is None else (*dims, channels)
    images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    labels = np.arange(dims[0] + label_extra) % 2 if dims[0] + label_extra >= 0 else np.arange(0)
    raw = idx_bytes(images)
    raw = raw + bytes(extra) if extra >= 0 else raw[:extra]
    suffix = ".gz" if gz else ""
    path = root / f"p-images-idx3-ubyte{suffix}"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    label_raw = idx_bytes(labels)
    (root / f"p-labels-idx1-ubyte{suffix}").write_bytes(gzip.compress(label_raw) if gz else label_raw)
    message = read_bounded(path)
    consistent = extra == 0 and label_extra == 0 and dims[0] > 0
    assert (message is None) == consistent, message
    if consistent:
        data = read_dataset(path)
        expected = images[..., 0] if channels == 1 else images
        np.testing.assert_array_equal(data.images.reshape(expected.shape), expected)


SEEDS: dict[str, Callable[[], bytes]] = {
    "idx": lambda: idx_bytes(SAMPLE),
    "idx.gz": lambda: gzip.compress(idx_bytes(SAMPLE)),
    "npz": lambda: npz_bytes(images=SAMPLE, labels=SAMPLE_LABELS),
    "npz-compressed": lambda: npz_bytes(True, images=SAMPLE, labels=SAMPLE_LABELS),
    "png": lambda: png_bytes(SAMPLE[0]),
    "png-rgb": lambda: png_bytes(np.stack([SAMPLE[0]] * 3, axis=2)),
}


def kind_of(seed: str) -> str:
    return {"npz-compressed": "npz", "png-rgb": "png"}.get(seed, seed)


@FUZZ_SETTINGS
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    cut=st.floats(0, 1),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6),
    tail=st.binary(max_size=32),
)
def test_mutated_files_give_data_or_one_line_errors(tmp_path_factory, seed, cut, edits, tail):
    data = bytearray(SEEDS[seed]())
    for where, value in edits:
        data[int(where * len(data))] = value
    data = data[: int(cut * len(data))] + tail if cut < 1 else data + tail
    read_bounded(write_data(tmp_path_factory.mktemp("m"), kind_of(seed), bytes(data)))


@FUZZ_SETTINGS
@given(kind=st.sampled_from(["idx", "idx.gz", "npz", "png", "jpg"]), data=st.binary(max_size=2048))
def test_random_bytes_give_one_line_errors(tmp_path_factory, kind, data):
    assert read_bounded(write_data(tmp_path_factory.mktemp("r"), kind, data)) is not None


@FUZZ_SETTINGS
@given(
    magic=st.sampled_from([b"\x00\x00\x08\x03", b"\x00\x00\x08\x04", b"PK\x03\x04", b"\x89PNG\r\n\x1a\n", b"\xff\xd8"]),
    kind=st.sampled_from(["idx", "idx.gz", "npz", "png"]),
    data=st.binary(max_size=512),
)
def test_random_bytes_behind_a_valid_magic(tmp_path_factory, magic, kind, data):
    payload = gzip.compress(magic + data) if kind == "idx.gz" else magic + data
    read_bounded(write_data(tmp_path_factory.mktemp("g"), kind, payload))


# --- headers that lie about sizes ----------------------------------------------------------


def test_gzip_idx_claiming_billions_with_a_forged_trailer_is_refused_before_reading(tmp_path):
    dims = (3_000_000_000, 28, 28)
    header = struct.pack(">I3I", 0x803, *dims)
    path = tmp_path / "b-images-idx3-ubyte.gz"
    # 64 MiB of zeros behind the header, and a trailer that matches the header's size mod 2**32.
    path.write_bytes(gzip_stream(iter([header, *zeros(64 * MiB)]), len(header) + int(np.prod(dims))))
    (tmp_path / "b-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(3))))
    assert path.stat().st_size < MiB
    started = time.perf_counter()
    message = read_bounded(path, limit_bytes=4 * MiB)
    assert "header says (3000000000, 28, 28)" in message and "far less" in message
    assert time.perf_counter() - started < 5


def test_gzip_bomb_behind_an_honest_header_stops_at_the_declared_size(tmp_path):
    header_and_images = idx_bytes(SAMPLE)
    path = tmp_path / "z-images-idx3-ubyte.gz"
    path.write_bytes(gzip_stream(iter([header_and_images, *zeros(256 * MiB)]), len(header_and_images)))
    (tmp_path / "z-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(SAMPLE_LABELS)))
    started = time.perf_counter()
    message = read_bounded(path, limit_bytes=16 * MiB)
    assert "the data is longer" in message
    assert time.perf_counter() - started < 5


def test_raw_idx_claiming_billions_is_refused_before_allocating(tmp_path):
    path = tmp_path / "r-images-idx3-ubyte"
    path.write_bytes(idx_bytes(SAMPLE, dims=(4_000_000_000, 28, 28)))
    (tmp_path / "r-labels-idx1-ubyte").write_bytes(idx_bytes(SAMPLE_LABELS))
    assert "header says (4000000000, 28, 28)" in read_bounded(path, limit_bytes=MiB)


def npy_member(shape: tuple[int, ...], descr: str = "|u1", body: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + body


def test_npz_claiming_billions_is_refused_before_allocating(tmp_path):
    path = tmp_path / "b.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", npy_member((3_000_000_000, 28, 28), body=bytes(100)))
        archive.writestr("labels.npy", npy_member((6,), "<i8", bytes(48)))
    assert "'images' claims shape (3000000000, 28, 28) but holds 100 bytes" in read_bounded(path, limit_bytes=MiB)


def test_npy_shape_whose_product_wraps_around_64_bits(tmp_path):
    # 2**63 * 2 bytes is 0 modulo 2**64: an empty member would "match" a wrapped size.
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", npy_member((2**63, 2, 1)))
        archive.writestr("labels.npy", npy_member((6,), "<i8", bytes(48)))
    assert "claims shape (9223372036854775808, 2, 1) but holds 0 bytes" in read_bounded(path, limit_bytes=MiB)


def test_idx_dims_whose_product_wraps_around_64_bits(tmp_path):
    path = tmp_path / "w-images-idx3-ubyte"
    path.write_bytes(struct.pack(">I3I", 0x803, 2**31, 2**31, 4))  # 2**64 images' bytes: 0 when wrapped
    (tmp_path / "w-labels-idx1-ubyte").write_bytes(idx_bytes(SAMPLE_LABELS))
    assert "header says (2147483648, 2147483648, 4)" in read_bounded(path, limit_bytes=MiB)


@pytest.mark.parametrize(
    "header",
    ["{'descr': '|u1', 'fortran_order': False, 'shape': (6, 8, 8", "{'descr': 1, 'shape': ()}", "not a dict", ""],
)
def test_npy_header_that_numpy_cannot_parse(tmp_path, header):
    # The first was found by the raw-bytes fuzz: numpy's fallback parser raised tokenize.TokenError.
    text = header.encode().ljust(118) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    path = tmp_path / "h.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", member)
        archive.writestr("labels.npy", npy_member((6,), "<i8", bytes(48)))
    assert "'images' has an invalid .npy header" in read_bounded(path)


def test_compressed_npz_member_whose_directory_lies_about_its_size(tmp_path):
    # The zip directory says the member holds the 3 GB the .npy header claims; deflate cannot
    # expand the few compressed bytes that far, so the member is refused before it is read.
    shape = (4_000_000, 28, 28)
    member = npy_member(shape, body=bytes(100))
    path = tmp_path / "lie.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", member)
        archive.writestr("labels.npy", npy_member((6,), "<i8", bytes(48)))
    raw = bytearray(path.read_bytes())
    claimed = len(member) - 100 + int(np.prod(shape))
    local = raw.index(b"PK\x03\x04")
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, local + 22, claimed)
    struct.pack_into("<I", raw, central + 24, claimed)
    path.write_bytes(bytes(raw))
    message = read_bounded(path, limit_bytes=MiB)
    assert "more than its compressed data can hold" in message


@pytest.mark.parametrize(("width", "height", "match"), [(2000, 2000, "is too large"), (100_000, 100_000, "exceeds")])
def test_png_whose_header_claims_a_huge_image(tmp_path, width, height, match):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bomb.png").write_bytes(png_claiming(width, height))
    assert width > MAX_IMAGE_SIDE
    assert match in read_bounded(tmp_path, limit_bytes=MiB, named="bomb.png")


def test_png_chunk_claiming_two_gigabytes_reserves_nothing(tmp_path):
    # Found by the raw-bytes fuzz under an address-space limit: Pillow reads a chunk's declared
    # length in one call, and a file object then allocates that much up front.
    data = bytearray(png_bytes(SAMPLE[0]))
    struct.pack_into(">I", data, data.index(b"IDAT") - 4, 0x7FFFFFFF)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "long.png").write_bytes(bytes(data))
    # Pillow decodes the 64 pixels that are there; the bound is on what reading allocated.
    read_bounded(tmp_path, limit_bytes=MiB, named="long.png")


def test_image_file_too_large_to_be_an_image_is_refused_unread(tmp_path):
    (tmp_path / "a").mkdir()
    with open(tmp_path / "a" / "huge.png", "wb") as f:
        f.truncate(MAX_IMAGE_FILE_BYTES + 1)  # sparse: no disk, no time
    assert "is too large for an image" in read_bounded(tmp_path, limit_bytes=MiB, named="huge.png")


# --- damaged and unusual files -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "offset"),
    [("pattern", 10), ("pattern", 20), ("noise", 15_000)],
    ids=["deflate-block-type", "deflate-code-lengths", "crc-mismatch"],
)
def test_gzip_with_a_damaged_deflate_stream(tmp_path, content, offset):
    # Patterned images compress into Huffman blocks whose damage zlib reports; noise is stored
    # as-is, where only the CRC check notices.
    rng = np.random.default_rng(2)
    pattern = (np.arange(40 * 28 * 28) % 7 * 30).astype(np.uint8).reshape(40, 28, 28)
    images = pattern if content == "pattern" else rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    raw = bytearray(gzip.compress(idx_bytes(images)))
    raw[offset : offset + 4] = b"\xff\xff\xff\xff"
    path = tmp_path / "d-images-idx3-ubyte.gz"
    path.write_bytes(bytes(raw))
    (tmp_path / "d-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(40) % 2)))
    assert "truncated or corrupt" in read_bounded(path)


def test_npz_with_an_unsupported_compression_method(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(npz_bytes(images=SAMPLE, labels=SAMPLE_LABELS))
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = raw.index(signature)
        struct.pack_into("<H", raw, at + offset, 99)
    path.write_bytes(bytes(raw))
    assert "unreadable, truncated or corrupt file" in read_bounded(path)


def test_npz_with_an_encrypted_member(tmp_path):
    # Found by the raw-bytes fuzz: zipfile raises RuntimeError for an encrypted member.
    path = tmp_path / "e.npz"
    path.write_bytes(npz_bytes(images=SAMPLE, labels=SAMPLE_LABELS))
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.index(signature)
        struct.pack_into("<H", raw, at + offset, struct.unpack_from("<H", raw, at + offset)[0] | 1)
    path.write_bytes(bytes(raw))
    assert "'images' is encrypted" in read_bounded(path)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((6, 2), np.int64), "'labels' has shape \\(6, 2\\)"),
        (np.linspace(0, 1, 6), "labels must be integers or strings"),
        (np.zeros(6, dtype=[("a", "<i4")]), "has dtype"),
        (np.zeros(6, dtype="V0"), "has dtype"),
    ],
)
def test_npz_labels_that_do_not_fit(tmp_path, labels, match):
    np.savez(tmp_path / "l.npz", images=SAMPLE, labels=labels)
    with pytest.raises(DeepSMOTEError, match=match):
        read_dataset(tmp_path / "l.npz")


def test_npz_fortran_order_and_big_endian_labels_read_correctly(tmp_path):
    labels = SAMPLE_LABELS.astype(">i8")
    np.savez(tmp_path / "f.npz", images=np.asfortranarray(SAMPLE), labels=labels)
    data = read_dataset(tmp_path / "f.npz")
    np.testing.assert_array_equal(data.images, SAMPLE)
    np.testing.assert_array_equal(data.labels, SAMPLE_LABELS)
    np.savez_compressed(tmp_path / "c.npz", images=SAMPLE, labels=SAMPLE_LABELS)
    np.testing.assert_array_equal(read_dataset(tmp_path / "c.npz").images, SAMPLE)


def test_idx_labels_file_that_is_an_images_file(tmp_path):
    path = tmp_path / "s-images-idx3-ubyte"
    path.write_bytes(idx_bytes(SAMPLE))
    (tmp_path / "s-labels-idx1-ubyte").write_bytes(idx_bytes(SAMPLE))
    message = read_bounded(path, named="s-labels-idx1-ubyte")
    assert "s-labels-idx1-ubyte: not an IDX file of the expected kind" in message


def test_fifo_as_data_or_labels_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "x.npz")
    assert "not a regular file" in read_bounded(tmp_path / "x.npz")
    images = tmp_path / "f-images-idx3-ubyte"
    images.write_bytes(idx_bytes(SAMPLE))
    os.mkfifo(tmp_path / "f-labels-idx1-ubyte")
    assert "f-labels-idx1-ubyte: not a regular file" in read_bounded(images, named="f-labels-idx1-ubyte")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "a.npz").write_bytes(npz_bytes(images=SAMPLE, labels=SAMPLE_LABELS))
    os.mkfifo(shards / "b.npz")
    assert "b.npz: not a regular file" in read_bounded(shards, named="b.npz")


@pytest.fixture
def deny(monkeypatch) -> Callable[[Path], None]:
    """Make opening one path fail with EACCES: chmod cannot stop root, who runs the tests in CI."""
    denied: set[str] = set()
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and os.fspath(file) in denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    return lambda path: denied.add(os.fspath(path))


@pytest.mark.parametrize("kind", ["idx", "idx.gz", "npz", "png"])
def test_unreadable_file_is_a_one_line_error(tmp_path, deny, kind):
    seed = {"idx": "idx", "idx.gz": "idx.gz", "npz": "npz", "png": "png"}[kind]
    path = write_data(tmp_path, kind, SEEDS[seed]())
    target = tmp_path / "a" / "0.png" if kind == "png" else path
    deny(target)
    assert "Permission denied" in read_bounded(path, named=target.name)


def test_unreadable_labels_file(tmp_path, deny):
    path = write_data(tmp_path, "idx", SEEDS["idx"]())
    deny(tmp_path / "x-labels-idx1-ubyte")
    assert "x-labels-idx1-ubyte: unreadable" in read_bounded(path, named="x-labels-idx1-ubyte")


# --- ImageFolder layouts -------------------------------------------------------------------


def test_mixed_modes_read_as_rgb_with_their_true_values(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=2)
    wide = grey.astype(np.uint16) * 257 + 3  # 16-bit: the high byte is ``grey``
    palette = Image.fromarray(rgb).quantize(colors=8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files = {
        "a/1-L.png": Image.fromarray(grey),
        "a/2-1.png": Image.fromarray(grey > 128),
        "a/3-I16.png": Image.fromarray(wide),
        "a/4-LA.png": Image.fromarray(grey).convert("LA"),
        "b/1-RGB.png": Image.fromarray(rgb),
        "b/2-RGBA.png": Image.fromarray(np.dstack([rgb, np.full((8, 8), 7, np.uint8)])),
        "b/3-P.png": palette,
    }
    for name, image in files.items():
        image.save(tmp_path / name)
    data = read_dataset(tmp_path)
    assert data.images.shape == (7, 8, 8, 3) and data.classes == ("a", "b")
    as_rgb = lambda g: np.repeat(g[..., None], 3, axis=2)  # noqa: E731
    expected = [
        as_rgb(grey),
        as_rgb(np.where(grey > 128, 255, 0).astype(np.uint8)),
        as_rgb(grey),
        as_rgb(grey),
        rgb,
        rgb,
        np.asarray(palette.convert("RGB")),
    ]
    for got, want, name in zip(data.images, expected, files, strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_sixteen_bit_grey_keeps_its_range(tmp_path):
    wide = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    (tmp_path / "a").mkdir()
    Image.fromarray(wide).save(tmp_path / "a" / "0.png")
    Image.fromarray(wide[::-1]).save(tmp_path / "a" / "1.png")
    data = read_dataset(tmp_path)
    assert data.images.shape == (2, 8, 8)
    np.testing.assert_array_equal(data.images[0], (wide >> 8).astype(np.uint8))


def test_entries_that_are_not_image_files_are_skipped_with_a_warning(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(SAMPLE[0]).save(tmp_path / "a" / "0.png")
    (tmp_path / "a" / "dir.png").mkdir()
    (tmp_path / "a" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(tmp_path / "a" / "pipe.png")
    (tmp_path / "a" / "readme.md").write_text("x")
    (tmp_path / "only-text").mkdir()
    (tmp_path / "only-text" / "notes.txt").write_text("x")
    with warnings.catch_warnings(record=True) as caught, time_limit(20):
        warnings.simplefilter("always")
        data = read_dataset(tmp_path)
    assert data.images.shape == (1, 8, 8) and data.classes == ("a",)
    text = " ".join(str(w.message) for w in caught)
    assert "skipped 5 non-image files" in text and "class 'only-text' skipped" in text


def test_folder_whose_classes_are_all_empty(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with pytest.warns(UserWarning, match="no images; class"), pytest.raises(DeepSMOTEError, match="no images found"):
        read_dataset(tmp_path)


# --- a raw-bytes fuzz in a bounded child process -------------------------------------------


def fuzz(cases: int, seed: int, seconds_per_case: float = 5.0) -> dict:
    """Read ``cases`` mutated or random files; count outcomes and collect any crash or hang."""
    rng = random.Random(seed)
    seeds = {name: make() for name, make in SEEDS.items()} | {"jpg": _jpeg(SAMPLE[0])}
    outcome = {"cases": cases, "ok": 0, "refused": 0, "crashes": [], "hangs": [], "blowups": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for case in range(cases):
            name = rng.choice(sorted(seeds))
            data = _mutate(rng, seeds[name]) if rng.random() < 0.9 else rng.randbytes(rng.randint(0, 256))
            root = Path(scratch) / str(case)
            root.mkdir()
            path = write_data(root, kind_of(name), data)
            try:
                with warnings.catch_warnings(), time_limit(seconds_per_case):
                    warnings.simplefilter("ignore")
                    read_dataset(path)
                outcome["ok"] += 1
            except DeepSMOTEError as exc:
                outcome["refused"] += 1
                if "not enough memory" in str(exc):
                    outcome["blowups"].append([name, str(exc)])
            except TimeoutError:
                outcome["hangs"].append([name, data.hex()[:200]])
            except Exception as exc:
                outcome["crashes"].append([name, f"{type(exc).__name__}: {exc}"[:200], data.hex()[:200]])
            for file in sorted(root.rglob("*"), reverse=True):
                file.rmdir() if file.is_dir() else file.unlink()
            root.rmdir()
    outcome["seconds"] = round(time.perf_counter() - started, 1)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent (pytest).
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    outcome["max_rss_mib"] = round(peak_kib / 1024, 1)
    return outcome


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif op == 1:
            del out[rng.randrange(len(out) + 1) :]
        elif op == 2:
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        else:
            start = rng.randrange(len(out) + 1)
            out[start : start + 4] = struct.pack(">I", rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
    return bytes(out)


ADDRESS_SPACE_LIMIT = 1536 * MiB
RSS_BOUND_MIB = 400


def test_raw_bytes_fuzz_in_a_bounded_process():
    # The child's address space is capped, each case has a time limit, and the child's peak
    # resident memory must stay near what the interpreter, numpy and Pillow need by themselves.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, __file__, "--cases", "1500", "--seed", "7", "--limit-as", str(ADDRESS_SPACE_LIMIT)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["crashes"] == [] and outcome["hangs"] == [] and outcome["blowups"] == [], outcome
    assert outcome["ok"] + outcome["refused"] == outcome["cases"] == 1500
    assert outcome["refused"] > 100 and outcome["ok"] > 10, outcome  # the mutations reach both outcomes
    assert outcome["max_rss_mib"] < RSS_BOUND_MIB, outcome


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fuzz the DATA readers with mutated and random files.")
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-as", type=int, default=0, help="RLIMIT_AS in bytes (0: none)")
    args = parser.parse_args()
    if args.limit_as:
        resource.setrlimit(resource.RLIMIT_AS, (args.limit_as, args.limit_as))
    print(json.dumps(fuzz(args.cases, args.seed)))


# --- class names that cannot be written (issue #40) -----------------------------------------


def _folder_of(root: Path, classes: list[bytes], per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        folder = os.path.join(os.fsencode(root), name)
        os.makedirs(folder)
        for i in range(per_class):
            Path(os.fsdecode(os.path.join(folder, b"%d.png" % i))).write_bytes(
                png_bytes(rng.integers(0, 256, (28, 28), np.uint8))
            )
    return root


@pytest.mark.parametrize("kind", ["imagefolder", "npz labels", "npz classes"])
def test_a_class_name_that_is_not_utf8_is_refused_before_anything_is_written(tiny_bundle, tmp_path, capsys, kind):
    from helpers import run_main

    images = np.random.default_rng(1).integers(0, 256, (12, 28, 28), np.uint8)
    if kind == "imagefolder":
        data = _folder_of(tmp_path / "data", [b"good", b"bad\xff\xfe"])
        shown = "b'bad\\xff\\xfe'"
    elif kind == "npz labels":
        data = tmp_path / "data.npz"
        data.write_bytes(npz_bytes(images=images, labels=np.array(["good"] * 6 + ["bad\ud800"] * 6)))
        shown = "'bad\\ud800'"
    else:
        data = tmp_path / "data.npz"
        labels = np.repeat([0, 1], 6)
        data.write_bytes(npz_bytes(images=images, labels=labels, classes=np.array(["good", "bad\udcff"])))
        shown = "'bad\\udcff'"
    with pytest.raises(DeepSMOTEError, match="is not valid UTF-8") as info:
        read_dataset(data)
    assert shown in str(info.value)
    out = tmp_path / "out"
    for fmt in ("imagefolder", "npz"):
        code, _, err = run_main(["generate", tiny_bundle, data, "--out", out, "--format", fmt, "--quiet"], capsys)
        assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1, err
        assert "is not valid UTF-8" in err and shown in err
        assert not out.exists()


def test_a_hidden_class_folder_with_images_is_named_in_a_warning(tmp_path):
    data = _folder_of(tmp_path / "data", [b"a", b"b", b".hidden"])
    (tmp_path / "data" / ".git").mkdir()  # no images: no warning about it
    with pytest.warns(UserWarning, match=r"\.hidden: a hidden folder with images is not read as a class") as caught:
        loaded = read_dataset(data)
    assert loaded.classes == ("a", "b") and len(loaded.labels) == 12
    assert not any(".git" in str(w.message) for w in caught)


# --- the streaming readers check what the whole-file readers check (issue #40) ---------------


def _mini_images() -> tuple[np.ndarray, np.ndarray]:
    from deepsmote.data import fmnist_mini

    data = read_dataset(fmnist_mini())
    keep = np.flatnonzero(data.labels < 3)[::4]
    return data.images[keep], data.labels[keep]


def _patch_central_crc(raw: bytes, member: str) -> bytes:
    """``raw`` (a zip) with the central directory's CRC-32 of ``member`` inverted."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        at = archive.start_dir
    data = bytearray(raw)
    while data[at : at + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack("<3H", data[at + 28 : at + 34])
        if data[at + 46 : at + 46 + name_len] == member.encode():
            data[at + 16 : at + 20] = bytes(b ^ 0xFF for b in data[at + 16 : at + 20])
            return bytes(data)
        at += 46 + name_len + extra_len + comment_len
    raise AssertionError(f"no member {member}")


def _corrupt_data(tmp_path: Path, kind: str) -> Path:
    images, labels = _mini_images()
    if kind == "stored npz, pixel flipped":
        raw = bytearray(npz_bytes(images=images, labels=labels))
        at = raw.index(images.tobytes()[:64]) + len(images.tobytes()) // 2
        raw[at] ^= 0x5A
        path = tmp_path / "data.npz"
        path.write_bytes(bytes(raw))
        return path
    if kind == "compressed npz, CRC wrong":
        path = tmp_path / "data.npz"
        path.write_bytes(_patch_central_crc(npz_bytes(compressed=True, images=images, labels=labels), "images.npy"))
        return path
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if kind == "gzipped IDX, CRC wrong":
        raw = bytearray(gzip.compress(idx_bytes(images)))
        raw[-8] ^= 0xFF  # the trailer's CRC-32
    else:  # 16 MB of garbage past the data, the trailer's size forged to the header's
        body = idx_bytes(images)
        raw = bytearray(gzip.compress(body + os.urandom(16 * MiB)))
        raw[-4:] = struct.pack("<I", len(body) % 2**32)
    path.write_bytes(bytes(raw))
    return path


CORRUPT_KINDS = [
    "stored npz, pixel flipped",
    "compressed npz, CRC wrong",
    "gzipped IDX, CRC wrong",
    "gzip, forged size",
]


@pytest.mark.parametrize("kind", CORRUPT_KINDS)
def test_generate_and_encode_refuse_corrupt_pixels_that_read_dataset_refuses(tiny_bundle, tmp_path, capsys, kind):
    from helpers import run_main

    data = _corrupt_data(tmp_path, kind)
    with pytest.raises(DeepSMOTEError, match=r"corrupt|longer"):
        read_dataset(data)
    out, codes = tmp_path / "out", tmp_path / "codes.npz"
    for args in (
        ["generate", tiny_bundle, data, "--out", out, "--quiet"],
        ["encode", tiny_bundle, data, "--out", codes],
    ):
        code, _, err = run_main(args, capsys)
        assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1, (args[0], err)
        assert str(data) in err and ("corrupt" in err or "longer" in err), err
    assert not out.exists() and not codes.exists()


@pytest.mark.parametrize("kind", CORRUPT_KINDS)
def test_rows_read_out_of_order_are_checked_first(tmp_path, kind):
    from deepsmote.runtime.stream import open_dataset

    source = open_dataset(_corrupt_data(tmp_path, kind))
    with pytest.raises(DeepSMOTEError, match=r"corrupt|longer"):
        source.take([1, 0])
    with pytest.raises(DeepSMOTEError, match=r"corrupt|longer"):
        open_dataset(_corrupt_data(tmp_path, kind)).load()


def test_intact_data_reads_the_same_in_and_out_of_order(tmp_path):
    from deepsmote.runtime.stream import open_dataset

    images, labels = _mini_images()
    for name, raw in (
        ("a.npz", npz_bytes(images=images, labels=labels)),
        ("b.npz", npz_bytes(True, images=images, labels=labels)),
    ):
        (tmp_path / name).write_bytes(raw)
        source = open_dataset(tmp_path / name)
        picks = np.array([5, 3, 0, len(images) - 1])
        assert np.array_equal(source.take(picks), images[picks])
        assert np.array_equal(source.load().images, images)
