"""deepsmote.training: train the DeepSMOTE encoder/decoder with torch and export a bundle.

Imported only by `deepsmote train` and `deepsmote export` (lazily, through the CLI's table of
commands), by :mod:`deepsmote.evaluation`'s torch parts and by users with the ``train`` extra; the
runtime never imports it (docs/design.md §5). Importing it imports torch. The names below are its
public API (docs/design.md §7).
"""

from __future__ import annotations

from .export import export_bundle
from .gate import GateConfig, add_classifier
from .model import Decoder, Encoder, ModelConfig
from .trainer import TrainConfig, load_checkpoint, train

__all__ = [
    "Decoder",
    "Encoder",
    "GateConfig",
    "ModelConfig",
    "TrainConfig",
    "add_classifier",
    "export_bundle",
    "load_checkpoint",
    "train",
]
