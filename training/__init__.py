"""deepsmote.training: train the DeepSMOTE encoder/decoder with torch and export a bundle.

Imported only by `deepsmote train` and `deepsmote export` (lazily) and by users with the
``train`` extra; the runtime never imports it. The names below load their modules (and torch)
on first use, so that the numpy-only modules of :mod:`deepsmote.training.evaluation`
(`deepsmote dataset`) import without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .export import export_bundle
    from .model import Decoder, Encoder, ModelConfig
    from .trainer import TrainConfig, load_checkpoint, train

_EXPORTS = {
    "Decoder": ".model",
    "Encoder": ".model",
    "ModelConfig": ".model",
    "TrainConfig": ".trainer",
    "export_bundle": ".export",
    "load_checkpoint": ".trainer",
    "train": ".trainer",
}
__all__ = ["Decoder", "Encoder", "ModelConfig", "TrainConfig", "export_bundle", "load_checkpoint", "train"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
