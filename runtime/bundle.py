"""The model bundle: manifest schema, hashes, and the checks that make a bundle safe to load.

A bundle is a directory with ``encoder.onnx``, ``decoder.onnx`` and ``deepsmote.json``
(GUIDE §2), and optionally ``decoder_cpu.onnx``: the same decoder arranged to run faster on
onnxruntime's CPU provider (``deepsmote export`` writes it; a bundle without it runs
``decoder.onnx`` everywhere). The runtime treats it as untrusted: the manifest is type-checked, each ONNX file
must match its sha256, graphs with external-data references are refused (onnxruntime would
resolve them against the working directory), and the graphs reach onnxruntime as bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeepSMOTEError
from .onnx_scan import MalformedModel, external_data_locations

FORMAT_VERSION = 1
MANIFEST_NAME = "deepsmote.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
CPU_DECODER_FILE = "decoder_cpu.onnx"
ONNX_FILES = (ENCODER_FILE, DECODER_FILE)
ENCODER_INPUT, ENCODER_OUTPUT = "image", "latent"
DECODER_INPUT, DECODER_OUTPUT = "latent", "image"

_REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "image_shape": list,
    "latent_dim": int,
    "classes": list,
    "pixel_range": list,
    "training": dict,
    "export": dict,
    "files": dict,
}


@dataclass(frozen=True)
class Bundle:
    """A verified model bundle.

    Attributes
    ----------
    path : Path
        The bundle directory.
    manifest : dict
        The parsed ``deepsmote.json``.
    encoder_bytes, decoder_bytes : bytes
        The ONNX graphs whose sha256 matched the manifest.
    cpu_decoder_bytes : bytes or None
        ``decoder_cpu.onnx`` when the bundle has one, checked the same way.
    """

    path: Path
    manifest: dict[str, Any]
    encoder_bytes: bytes = field(repr=False)
    decoder_bytes: bytes = field(repr=False)
    cpu_decoder_bytes: bytes | None = field(default=None, repr=False)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the model takes and makes."""
        channels, height, width = self.manifest["image_shape"]
        return (channels, height, width)

    @property
    def latent_dim(self) -> int:
        """Size Z of a latent code."""
        return int(self.manifest["latent_dim"])

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names the model was trained on, in label order."""
        return tuple(self.manifest["classes"])

    @property
    def fingerprint(self) -> str:
        """sha256 over the manifest's file hashes: identifies the model."""
        files = self.manifest["files"]
        return hashlib.sha256("".join(files[name] for name in _graph_files(files)).encode()).hexdigest()


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


def _check_manifest(manifest: Any, where: Path) -> None:
    if not isinstance(manifest, dict):
        raise DeepSMOTEError(f"{where}: the manifest must be a JSON object")
    for name, kind in _REQUIRED_FIELDS.items():
        if name not in manifest:
            raise DeepSMOTEError(f"{where}: manifest field '{name}' is missing; re-export the bundle")
        value = manifest[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DeepSMOTEError(
                f"{where}: manifest field '{name}' must be {kind.__name__}, got {type(value).__name__}"
            )
    version = manifest["format_version"]
    if version > FORMAT_VERSION or version < 1:
        raise DeepSMOTEError(
            f"{where}: bundle format_version {version} is not supported by this deepsmote "
            f"(reads 1..{FORMAT_VERSION}); upgrade deepsmote or re-export the bundle"
        )
    shape = manifest["image_shape"]
    if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
        raise DeepSMOTEError(f"{where}: manifest 'image_shape' must be [C, H, W] positive integers, got {shape}")
    if shape[0] not in (1, 3):
        raise DeepSMOTEError(f"{where}: manifest 'image_shape' must have 1 or 3 channels, got {shape[0]}")
    if manifest["latent_dim"] <= 0:
        raise DeepSMOTEError(f"{where}: manifest 'latent_dim' must be positive, got {manifest['latent_dim']}")
    if not all(isinstance(c, str) for c in manifest["classes"]):
        raise DeepSMOTEError(f"{where}: manifest 'classes' must be a list of strings")
    if manifest["pixel_range"] != [-1, 1]:
        raise DeepSMOTEError(f"{where}: manifest 'pixel_range' must be [-1, 1], got {manifest['pixel_range']}")
    for name in _graph_files(manifest["files"]):
        digest = manifest["files"].get(name)
        if not isinstance(digest, str) or len(digest) != 64:
            raise DeepSMOTEError(f"{where}: manifest 'files' lacks the sha256 of {name}")


def _graph_files(files: dict[str, Any]) -> tuple[str, ...]:
    """The ONNX files of a bundle whose manifest lists ``files``."""
    return (*ONNX_FILES, CPU_DECODER_FILE) if CPU_DECODER_FILE in files else ONNX_FILES


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and type-check ``deepsmote.json`` in the bundle directory ``path``."""
    bundle = Path(path)
    if not bundle.is_dir():
        raise DeepSMOTEError(f"{bundle}: not a bundle directory; train one with `deepsmote train`")
    where = bundle / MANIFEST_NAME
    try:
        manifest = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeepSMOTEError(f"{bundle}: no {MANIFEST_NAME}; this is not a deepsmote bundle") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeepSMOTEError(f"{where}: not valid JSON ({exc})") from None
    _check_manifest(manifest, where)
    return manifest


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read a bundle and verify its manifest and file hashes.

    The graphs' input and output names and shapes are checked when a session is built
    (:func:`deepsmote.runtime.models.open_models`).

    Raises
    ------
    DeepSMOTEError
        On a missing or mistyped field, an unsupported version, or a hash mismatch.
    """
    bundle = Path(path)
    manifest = read_manifest(bundle)
    graphs = []
    for name in _graph_files(manifest["files"]):
        file = bundle / name
        if file.is_symlink() or not file.is_file():
            raise DeepSMOTEError(f"{file}: missing (or a link); a bundle holds its ONNX files itself")
        data = file.read_bytes()
        if sha256_bytes(data) != manifest["files"][name]:
            raise DeepSMOTEError(
                f"{file}: sha256 does not match the manifest; the file was modified or corrupted, re-export the bundle"
            )
        try:
            external = external_data_locations(data)
        except MalformedModel as exc:
            raise DeepSMOTEError(f"{file}: not a valid ONNX file ({exc})") from None
        if external:
            raise DeepSMOTEError(
                f"{file}: weights stored as external data ({external[0]!r}); the runtime loads only "
                "self-contained graphs, re-export with the weights inline"
            )
        graphs.append(data)
    return Bundle(bundle, manifest, *graphs)
