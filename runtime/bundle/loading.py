"""Loading a bundle: every check that makes it safe to run, each graph's before it reaches onnxruntime.

A bundle is a directory with ``encoder.onnx``, ``decoder.onnx`` and ``deepsmote.json``, and
optionally ``decoder_cpu.onnx``, ``decoder_fp16.onnx`` and ``classifier.onnx`` (``docs/design.md``
§2). The runtime treats it as untrusted: the manifest is type-checked, each ONNX file must match
its sha256, graphs with external-data references are refused (onnxruntime would resolve them
against the working directory), each graph's input and output names, element types and shapes
must be those the manifest implies with a dynamic batch axis, and the graphs reach onnxruntime as
bytes. Each graph is checked once, when it is loaded: all at once by default, or each where it is
first used (``load_bundle(path, lazy=True)``, the job's way).

Internal module: use the public names of :mod:`deepsmote.runtime.bundle`.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BundleNotFoundError, DeepSMOTEError
from .graphs import MalformedModel, ValueInfo, external_data_locations, graph_signature
from .manifest import (
    CLASSIFIER_FILE,
    CLASSIFIER_INPUT,
    CLASSIFIER_OUTPUT,
    CPU_DECODER_FILE,
    DECODER_FILE,
    DECODER_INPUT,
    DECODER_OUTPUT,
    ENCODER_FILE,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    FP16_DECODER_FILE,
    MANIFEST_NAME,
    Manifest,
)

__all__ = ["Bundle", "load_bundle", "read_manifest", "sha256_bytes", "sha256_file"]


@dataclass(frozen=True)
class Bundle:
    """A model bundle whose manifest is checked and whose graphs are each checked before use.

    Every graph the manifest lists is a regular file of the bundle. A graph's bytes are read,
    matched against the manifest's sha256 and scanned (no external data; the input and output
    names, types and shapes the manifest implies) by :func:`load_bundle`, or, for a bundle loaded
    with ``lazy=True``, the first time they are asked for: a job on the CPU then never reads the
    graphs it does not run (61-73 of a paper-size bundle's 113 MB, 0.07-0.08 s of a core on a 2-core EPYC).

    Attributes
    ----------
    path : Path
        The bundle directory.
    manifest : Manifest
        The checked ``deepsmote.json``.
    encoder_bytes, decoder_bytes : bytes
        The checked ONNX graphs.
    cpu_decoder_bytes : bytes or None
        ``decoder_cpu.onnx`` when the bundle has one, checked the same way.
    fp16_decoder_bytes : bytes or None
        ``decoder_fp16.onnx`` (written by export since 0.9.0) when the bundle has one, checked the
        same way.
    classifier_bytes : bytes or None
        ``classifier.onnx`` (the quality gate) when the bundle has one, checked the same way.

    Notes
    -----
    A bundle pickles with all its graphs, checked first, so that a copy in another process or on
    another machine (a Ray worker) never reads the directory.
    """

    path: Path
    manifest: Manifest
    _graphs: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the model takes and makes."""
        return self.manifest.image_shape

    @property
    def latent_dim(self) -> int:
        """Size Z of a latent code."""
        return self.manifest.latent_dim

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names the model was trained on, in label order."""
        return self.manifest.classes

    @property
    def fingerprint(self) -> str:
        """sha256 over the manifest's file hashes: identifies the model."""
        return self.manifest.fingerprint

    @property
    def encoder_bytes(self) -> bytes:
        return self.graph(ENCODER_FILE)

    @property
    def decoder_bytes(self) -> bytes:
        return self.graph(DECODER_FILE)

    @property
    def cpu_decoder_bytes(self) -> bytes | None:
        return self._optional(CPU_DECODER_FILE)

    @property
    def fp16_decoder_bytes(self) -> bytes | None:
        return self._optional(FP16_DECODER_FILE)

    @property
    def classifier_bytes(self) -> bytes | None:
        return self._optional(CLASSIFIER_FILE)

    def has_graph(self, name: str) -> bool:
        """Whether the manifest lists the graph file ``name``; nothing is read."""
        return name in self.manifest.graph_files

    def graph(self, name: str) -> bytes:
        """The checked bytes of the graph file ``name``, read and checked on first use.

        Raises
        ------
        DeepSMOTEError
            If the manifest lists no such file, or the file no longer matches its sha256 or is
            not the graph the manifest implies.
        """
        data = self._graphs.get(name)
        if data is None:
            if not self.has_graph(name):
                raise DeepSMOTEError(f"{self.path} has no {name}")
            # Two threads asking at once both read and check it, and store the same bytes.
            data = self._graphs.setdefault(name, _checked(self, name, *_read_and_hash(self.path / name)))
        return data

    def verify(self) -> Bundle:
        """Read and check every graph not read yet, all files at once, and return this bundle.

        Raises
        ------
        DeepSMOTEError
            For the first bad graph in the manifest's order.
        """
        names = [name for name in self.manifest.graph_files if name not in self._graphs]
        if names:
            # Read and hashed at once (both release the GIL: 0.12 s of a paper-size bundle's 113 MB
            # in turn on a 2-core EPYC), then checked in the manifest's order.
            with ThreadPoolExecutor(len(names), thread_name_prefix="deepsmote-bundle") as pool:
                read = list(pool.map(_read_and_hash, [self.path / name for name in names]))
            for name, (data, digest) in zip(names, read, strict=True):
                self._graphs.setdefault(name, _checked(self, name, data, digest))
        return self

    def _optional(self, name: str) -> bytes | None:
        return self.graph(name) if self.has_graph(name) else None

    def __getstate__(self) -> dict[str, object]:
        return self.verify().__dict__


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's contents, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# deepsmote.json is a few hundred bytes; the bounds leave room for long class lists.
MAX_MANIFEST_BYTES = 1 << 20
MAX_JSON_DIGITS = 30


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Parse and type-check ``deepsmote.json`` in the bundle directory ``path``.

    The manifest is read as carefully as the graphs: a regular file of the bundle itself (no link,
    FIFO, device or directory), at most :data:`MAX_MANIFEST_BYTES`, JSON without numbers of more than
    :data:`MAX_JSON_DIGITS` digits, NaN or nesting deeper than the parser's stack.
    """
    bundle = Path(path)
    if not bundle.exists():
        raise BundleNotFoundError(
            f"{bundle}: not a bundle directory (nothing is there); train one with `deepsmote train`"
        )
    if not bundle.is_dir():
        raise DeepSMOTEError(f"{bundle}: not a bundle directory; train one with `deepsmote train`")
    where = bundle / MANIFEST_NAME
    data = _read_regular_file(
        where, MAX_MANIFEST_BYTES, missing=f"{bundle}: no {MANIFEST_NAME}; this is not a deepsmote bundle"
    )
    try:
        manifest = json.loads(data.decode("utf-8"), parse_int=_bounded_int, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeepSMOTEError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise DeepSMOTEError(f"{where}: JSON nested too deeply to be a manifest; re-export the bundle") from None
    except _BadNumber as exc:
        raise DeepSMOTEError(f"{where}: {exc}; re-export the bundle") from None
    return Manifest.from_json(manifest, where)


class _BadNumber(ValueError):
    """A JSON number no manifest has."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise _BadNumber(f"an integer of {len(text)} digits, more than a manifest has")
    return int(text)


def _no_constant(name: str) -> float:
    raise _BadNumber(f"{name} is not a JSON number")


def _read_regular_file(path: Path, limit: int, missing: str) -> bytes:
    """The bytes of ``path``, which must be a regular file (not a link) of at most ``limit`` bytes."""
    try:
        # O_NOFOLLOW refuses a link, O_NONBLOCK keeps a FIFO from blocking the open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DeepSMOTEError(missing) from None
    except OSError as exc:
        kind = "a link" if path.is_symlink() else exc.strerror
        raise DeepSMOTEError(f"{path}: cannot be read ({kind}); a bundle holds its manifest itself as a file") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DeepSMOTEError(f"{path}: not a regular file; a bundle's manifest is a JSON file")
        raise DeepSMOTEError(f"{path}: {info.st_size} bytes, more than the {limit} a manifest may have")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise DeepSMOTEError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) > limit:
        raise DeepSMOTEError(f"{path}: more than the {limit} bytes a manifest may have")
    return data


def load_bundle(path: str | os.PathLike, *, lazy: bool = False) -> Bundle:
    """Read a bundle and run every check on it.

    Parameters
    ----------
    path : path-like
        The bundle directory.
    lazy : bool
        Check the manifest and that each graph file is there now, and read and check each graph
        when it is first used (`Bundle.graph`), so that graphs a job does not run are never read.
        Default: every graph now.

    Raises
    ------
    DeepSMOTEError
        On a missing or mistyped manifest field, an unsupported version, a missing graph file, a
        hash mismatch, external data, or a graph whose inputs and outputs are not those the
        manifest implies (with ``lazy``, the last three where the graph is first used).
    """
    bundle = Path(path)
    manifest = read_manifest(bundle)
    for name in manifest.graph_files:
        file = bundle / name
        if file.is_symlink() or not file.is_file():
            raise DeepSMOTEError(f"{file}: missing (or a link); a bundle holds its ONNX files itself")
    loaded = Bundle(bundle, manifest)
    return loaded if lazy else loaded.verify()


def _signature(manifest: Manifest, name: str) -> tuple[tuple[str, tuple], tuple[str, tuple]]:
    """The (name, shape) of the one input and the one output that graph file ``name`` must have."""
    image = ("N", *manifest.image_shape)
    latent = ("N", manifest.latent_dim)
    if name == ENCODER_FILE:
        return (ENCODER_INPUT, image), (ENCODER_OUTPUT, latent)
    if name == CLASSIFIER_FILE:
        return (CLASSIFIER_INPUT, image), (CLASSIFIER_OUTPUT, ("N", len(manifest.classes)))
    assert name in (DECODER_FILE, CPU_DECODER_FILE, FP16_DECODER_FILE), name
    return (DECODER_INPUT, latent), (DECODER_OUTPUT, image)


def _checked(bundle: Bundle, name: str, data: bytes, digest: str) -> bytes:
    """``data``, read from graph file ``name`` of ``bundle`` with sha256 ``digest``, once it passed every check."""
    file = bundle.path / name
    if digest != bundle.manifest.files[name]:
        raise DeepSMOTEError(
            f"{file}: sha256 does not match the manifest; the file was modified or corrupted, re-export the bundle"
        )
    try:
        external = external_data_locations(data)
        inputs, outputs = graph_signature(data)
    except MalformedModel as exc:
        raise DeepSMOTEError(f"{file}: not a valid ONNX file ({exc})") from None
    if external:
        raise DeepSMOTEError(
            f"{file}: weights stored as external data ({external[0]!r}); the runtime loads only "
            "self-contained graphs, re-export with the weights inline"
        )
    expect_in, expect_out = _signature(bundle.manifest, name)
    _check_signature(str(file), "input", inputs, expect_in)
    _check_signature(str(file), "output", outputs, expect_out)
    return data


# protobuf serializes no message of 2 GiB or more, so a self-contained ONNX file is smaller.
MAX_GRAPH_BYTES = 2**31 - 1


def _read_and_hash(file: Path) -> tuple[bytes, str]:
    """The bytes of graph file ``file`` and their sha256; a file too large to be a graph is refused unread."""
    size = file.stat().st_size
    if size > MAX_GRAPH_BYTES:
        raise DeepSMOTEError(
            f"{file}: {size} bytes, more than a self-contained ONNX file can hold (2 GiB); the file was "
            "modified or corrupted, re-export the bundle"
        )
    with open(file, "rb") as f:
        # One byte more than its size: a file that grows while it is read is not read on and on.
        data = f.read(size + 1)
    if len(data) != size:
        raise DeepSMOTEError(f"{file}: changed while it was read; re-export the bundle or stop what writes it")
    digest = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, len(view), 1 << 24):  # in slices: the GIL is let go between them
        digest.update(view[start : start + (1 << 24)])
    return data, digest.hexdigest()


def _check_signature(which: str, kind: str, found: list[ValueInfo], expected: tuple[str, tuple]) -> None:
    name, shape = expected
    if len(found) != 1 or found[0].name != name:
        raise DeepSMOTEError(
            f"{which}: expected one {kind} named '{name}', found {[v.name for v in found]}; "
            "the bundle does not meet the contract"
        )
    declared = found[0].shape
    if len(declared) != len(shape) or any(
        isinstance(d, int) and d != s for d, s in zip(declared[1:], shape[1:], strict=True)
    ):
        raise DeepSMOTEError(f"{which}: {kind} '{name}' has shape {declared}, the manifest implies {list(shape)}")
    if isinstance(declared[0], int):
        raise DeepSMOTEError(
            f"{which}: {kind} '{name}' has a fixed batch size {declared[0]}; the batch axis must be dynamic"
        )
    if found[0].type != "tensor(float)":
        raise DeepSMOTEError(f"{which}: {kind} '{name}' is {found[0].type}, expected tensor(float)")
