"""deepsmote.runtime: torch-free DeepSMOTE generation with onnxruntime and numba.

The names below are the runtime's public API (``docs/design.md`` §7); the modules behind them are
internal.
"""

from .bundle import Bundle, Manifest, load_bundle
from .codes import LatentCache, encode_dataset, read_latent_cache
from .errors import DeepSMOTEError, InvalidInputError
from .job import JobSettings, generate_dataset
from .readers import LabelledImages, read_dataset
from .sampler import DeepSMOTE
from .stream import ImageSource, open_dataset

__all__ = [
    "Bundle",
    "DeepSMOTE",
    "DeepSMOTEError",
    "ImageSource",
    "InvalidInputError",
    "JobSettings",
    "LabelledImages",
    "LatentCache",
    "Manifest",
    "encode_dataset",
    "generate_dataset",
    "load_bundle",
    "open_dataset",
    "read_dataset",
    "read_latent_cache",
]
