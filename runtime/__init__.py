"""deepsmote.runtime: torch-free DeepSMOTE generation with onnxruntime and numba.

The names below are the runtime's public API (``docs/design.md`` §7); the modules behind them are
internal.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bundle import Bundle, Manifest, load_bundle
    from .codes import LatentCache, encode_dataset, read_latent_cache
    from .errors import DeepSMOTEError, InvalidInputError
    from .job import JobSettings, generate_dataset
    from .readers import LabelledImages, read_dataset
    from .sampler import DeepSMOTE
    from .stream import ImageSource, open_dataset

# Each public name and the module it is imported from on first use (PEP 562): importing the
# package costs nothing, so the `deepsmote` command (which imports `deepsmote.runtime.cli`) can
# take over Ctrl-C before numpy and onnxruntime load.
_HOMES = {
    "Bundle": ".bundle",
    "Manifest": ".bundle",
    "load_bundle": ".bundle",
    "LatentCache": ".codes",
    "encode_dataset": ".codes",
    "read_latent_cache": ".codes",
    "DeepSMOTEError": ".errors",
    "InvalidInputError": ".errors",
    "JobSettings": ".job",
    "generate_dataset": ".job",
    "LabelledImages": ".readers",
    "read_dataset": ".readers",
    "DeepSMOTE": ".sampler",
    "ImageSource": ".stream",
    "open_dataset": ".stream",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
