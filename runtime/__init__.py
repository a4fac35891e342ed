"""deepsmote.runtime: torch-free DeepSMOTE generation with onnxruntime and numba.

The names below are the runtime's public API (``docs/design.md`` §7); the modules behind them are
internal.
"""

from .bundle import Bundle, Manifest, load_bundle
from .errors import DeepSMOTEError, InvalidInputError
from .job import JobSettings, generate_dataset
from .readers import LabelledImages, read_dataset
from .sampler import DeepSMOTE

__all__ = [
    "Bundle",
    "DeepSMOTE",
    "DeepSMOTEError",
    "InvalidInputError",
    "JobSettings",
    "LabelledImages",
    "Manifest",
    "generate_dataset",
    "load_bundle",
    "read_dataset",
]
