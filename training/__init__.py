"""deepsmote.training: train the DeepSMOTE encoder/decoder with torch and export a bundle.

Imported only by `deepsmote train` and `deepsmote export` (lazily) and by users with the
``train`` extra; the runtime never imports it.
"""

from .export import export_bundle
from .model import Decoder, Encoder, ModelConfig
from .trainer import TrainConfig, load_checkpoint, train

__all__ = ["Decoder", "Encoder", "ModelConfig", "TrainConfig", "export_bundle", "load_checkpoint", "train"]
