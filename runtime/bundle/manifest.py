"""``deepsmote.json``: the manifest that export writes and every reader of a bundle reads.

One typed :class:`Manifest`, checked field by field when it is read, so nothing downstream looks
a field up by name or guesses a default. The schema is the bundle contract of
``docs/design.md`` §2.

Internal module: use the public names of :mod:`deepsmote.runtime.bundle`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeepSMOTEError

__all__ = [
    "CLASSIFIER_FILE",
    "CLASSIFIER_INPUT",
    "CLASSIFIER_OUTPUT",
    "CPU_DECODER_FILE",
    "DECODER_FILE",
    "DECODER_INPUT",
    "DECODER_OUTPUT",
    "ENCODER_FILE",
    "ENCODER_INPUT",
    "ENCODER_OUTPUT",
    "FORMAT_VERSION",
    "FP16_DECODER_FILE",
    "MANIFEST_NAME",
    "ClassifierRecord",
    "ExportRecord",
    "Manifest",
    "TrainingRecord",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "deepsmote.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
# The same decoder arranged to run faster on onnxruntime's CPU provider; optional.
CPU_DECODER_FILE = "decoder_cpu.onnx"
# The decoder with float16 weights and arithmetic (float32 input and output), which fp16 runs on a
# GPU; optional: made at run time from decoder.onnx where a bundle has none.
FP16_DECODER_FILE = "decoder_fp16.onnx"
# The quality gate's classifier (``generate --filter``); optional.
CLASSIFIER_FILE = "classifier.onnx"
ONNX_FILES = (ENCODER_FILE, DECODER_FILE)
OPTIONAL_FILES = (CPU_DECODER_FILE, FP16_DECODER_FILE, CLASSIFIER_FILE)
ENCODER_INPUT, ENCODER_OUTPUT = "image", "latent"
DECODER_INPUT, DECODER_OUTPUT = "latent", "image"
CLASSIFIER_INPUT, CLASSIFIER_OUTPUT = "image", "probabilities"

_REQUIRED_FIELDS: dict[str, type] = {
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
class TrainingRecord:
    """How the model was trained; every field is None (or empty) for a bundle made elsewhere.

    Attributes
    ----------
    config : dict
        The training configuration (``TrainConfig`` as a dict).
    epochs_run : int or None
        Epochs behind the exported weights.
    final_losses : dict or None
        ``loss``, ``reconstruction``, ``penalty`` of that epoch.
    best_loss : float or None
    data_sha256 : str or None
        :meth:`LabelledImages.fingerprint` of the training data.
    logs : tuple of str
        Log files copied into the bundle.
    """

    config: dict[str, Any] = field(default_factory=dict)
    epochs_run: int | None = None
    final_losses: dict[str, float] | None = None
    best_loss: float | None = None
    data_sha256: str | None = None
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportRecord:
    """How the graphs were exported and checked; None (or empty) for a bundle made elsewhere.

    Attributes
    ----------
    opset : int or None
    exporter : str or None
    torch_version, onnxruntime_version : str or None
    tolerance : float or None
        The largest ONNX-vs-torch difference export accepts.
    max_abs_diff : float or None
        The largest difference it found in the float32 graphs (``tolerance`` bounds those).
    checks : tuple of dict
        Every comparison: graph, inputs, batch, max_abs_diff and (since 0.9.0) its own tolerance,
        which for ``decoder_fp16.onnx`` is float16's.
    """

    opset: int | None = None
    exporter: str | None = None
    torch_version: str | None = None
    onnxruntime_version: str | None = None
    tolerance: float | None = None
    max_abs_diff: float | None = None
    checks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ClassifierRecord:
    """How the bundle's classifier (``classifier.onnx``) was trained and checked.

    Attributes
    ----------
    config : dict
        The classifier's training configuration (``ClassifierConfig`` as a dict).
    train_accuracy : float or None
        Accuracy on the data it was trained on, in eval mode.
    train_balanced_accuracy : float or None
        The same, averaged over classes.
    data_sha256 : str or None
        :meth:`LabelledImages.fingerprint` of that data.
    max_abs_diff : float or None
        The largest ONNX-vs-torch difference of its probabilities.
    checks : tuple of dict
        Every comparison: graph, inputs, batch, max_abs_diff.
    """

    config: dict[str, Any] = field(default_factory=dict)
    train_accuracy: float | None = None
    train_balanced_accuracy: float | None = None
    data_sha256: str | None = None
    max_abs_diff: float | None = None
    checks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Manifest:
    """The parsed, checked ``deepsmote.json``.

    Attributes
    ----------
    image_shape : tuple of int
        (C, H, W) of the images the model takes and makes; C is 1 or 3.
    latent_dim : int
        Size Z of a latent code.
    classes : tuple of str
        Class names the model was trained on, in label order.
    training : TrainingRecord
    export : ExportRecord
    files : dict
        sha256 of each ONNX file, by file name.
    classifier : ClassifierRecord or None
        Present when the bundle holds ``classifier.onnx``.
    format_version : int
    pixel_range : tuple of int
        Always (-1, 1).
    """

    image_shape: tuple[int, int, int]
    latent_dim: int
    classes: tuple[str, ...]
    training: TrainingRecord
    export: ExportRecord
    files: dict[str, str]
    format_version: int = FORMAT_VERSION
    pixel_range: tuple[int, int] = (-1, 1)
    classifier: ClassifierRecord | None = None

    @property
    def graph_files(self) -> tuple[str, ...]:
        """The ONNX files of the bundle: encoder, decoder, and the CPU decoder and classifier when listed."""
        return _graph_files(self.files)

    @property
    def fingerprint(self) -> str:
        """sha256 over the graphs' sha256s: identifies the model."""
        return hashlib.sha256("".join(self.files[name] for name in self.graph_files).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The manifest as the JSON object written to ``deepsmote.json``."""
        return {
            "format_version": self.format_version,
            "image_shape": list(self.image_shape),
            "latent_dim": self.latent_dim,
            "classes": list(self.classes),
            "pixel_range": list(self.pixel_range),
            "training": {**asdict(self.training), "logs": list(self.training.logs)},
            "export": {**asdict(self.export), "checks": list(self.export.checks)},
            "files": dict(self.files),
            # Written only when there is one, so a bundle without a classifier reads as before.
            **(
                {"classifier": {**asdict(self.classifier), "checks": list(self.classifier.checks)}}
                if self.classifier
                else {}
            ),
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> Manifest:
        """Check a parsed ``deepsmote.json`` field by field.

        Raises
        ------
        DeepSMOTEError
            Naming ``where`` and the first field that is missing or of the wrong type or value.
        """
        _check(data, where)
        return cls(
            image_shape=tuple(data["image_shape"]),
            latent_dim=data["latent_dim"],
            classes=tuple(data["classes"]),
            training=_record(TrainingRecord, data["training"], where, "training"),
            export=_record(ExportRecord, data["export"], where, "export"),
            files=dict(data["files"]),
            format_version=data["format_version"],
            pixel_range=(-1, 1),
            classifier=_classifier_record(data, where),
        )


def _graph_files(files: dict[str, Any]) -> tuple[str, ...]:
    return (*ONNX_FILES, *(name for name in OPTIONAL_FILES if name in files))


def _classifier_record(data: dict[str, Any], where: Path) -> ClassifierRecord | None:
    record = data.get("classifier")
    if record is None:
        if CLASSIFIER_FILE in data["files"]:
            raise DeepSMOTEError(f"{where}: manifest lists {CLASSIFIER_FILE} but has no 'classifier' record")
        return None
    if not isinstance(record, dict):
        raise DeepSMOTEError(f"{where}: manifest field 'classifier' must be dict, got {type(record).__name__}")
    if CLASSIFIER_FILE not in data["files"]:
        raise DeepSMOTEError(f"{where}: manifest has a 'classifier' record but 'files' lacks {CLASSIFIER_FILE}")
    return _record(ClassifierRecord, record, where, "classifier")


def _record(kind: type, values: dict[str, Any], where: Path, name: str) -> Any:
    # Known fields only: a bundle made elsewhere may record more, which the runtime does not read.
    known = {f: values[f] for f in kind.__dataclass_fields__ if f in values}
    for key in ("logs", "checks"):
        if key in known:
            if not isinstance(known[key], list):
                raise DeepSMOTEError(f"{where}: manifest field '{name}.{key}' must be a list")
            known[key] = tuple(known[key])
    return kind(**known)


def _check(manifest: Any, where: Path) -> None:
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
    for name in manifest["classes"]:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise DeepSMOTEError(
                f"{where}: manifest class name {name!r} is not valid UTF-8; re-export the bundle"
            ) from None
    if manifest["pixel_range"] != [-1, 1]:
        raise DeepSMOTEError(f"{where}: manifest 'pixel_range' must be [-1, 1], got {manifest['pixel_range']}")
    files = manifest["files"]
    for name in _graph_files(files):
        digest = files.get(name)
        if not isinstance(digest, str) or len(digest) != 64:
            raise DeepSMOTEError(f"{where}: manifest 'files' lacks the sha256 of {name}")
