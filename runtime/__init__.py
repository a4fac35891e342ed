"""deepsmote.runtime: torch-free DeepSMOTE generation with onnxruntime and numba."""

from .errors import DeepSMOTEError
from .job import generate_dataset
from .readers import LabelledImages, read_dataset
from .sampler import DeepSMOTE

__all__ = ["DeepSMOTE", "DeepSMOTEError", "LabelledImages", "generate_dataset", "read_dataset"]
