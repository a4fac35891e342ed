"""Engines: where a job's shards run. One :class:`Engine` protocol, implementations by name.

An engine takes the fitted :class:`~deepsmote.runtime.synthesis.Synthesizer` and the shards still
to do, and for each shard makes its images (``Synthesizer.samples``), writes them with the
format's writer into OUT and marks the shard done. A new engine is one module with a class that
meets the protocol, and one line in :data:`_REGISTRY`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..outdir import OutputDir
    from ..plan import Unit
    from ..synthesis import Synthesizer

__all__ = ["ENGINES", "Engine", "make_engine"]

# name -> "module:class", imported when chosen (Ray is an optional extra).
_REGISTRY = {
    "local": "deepsmote.runtime.engines.local:LocalEngine",
    "ray": "deepsmote.runtime.engines.ray:RayEngine",
}
ENGINES = tuple(_REGISTRY)


class Engine(Protocol):
    """Runs shards; built from the engine's options by :func:`make_engine`."""

    def run(
        self,
        synthesizer: Synthesizer,
        shards: Iterable[Unit],
        out: OutputDir,
        fmt: str,
        classes: Sequence[str],
        on_shard_done: Callable[[Unit], None],
    ) -> dict[str, Any]:
        """Synthesize, write and mark done every shard; return what the summary reports of the engine.

        Parameters
        ----------
        synthesizer : Synthesizer
            The fitted job.
        shards : iterable of Unit
            The shards still to do, taken one at a time (a lazy plan is never listed).
        out : OutputDir
            The entered output directory.
        fmt : str
            Output format name.
        classes : sequence of str
            Class names in label order, for the writer.
        on_shard_done : callable
            Called in the calling thread after each shard is written and marked (progress).
        """
        ...


def make_engine(name: str, options: Mapping[str, Any]) -> Engine:
    """The engine called ``name``, built with ``options``.

    Raises
    ------
    InvalidInputError
        For an unknown name, an option the engine does not take, or an engine whose extra is
        missing.
    """
    if name not in _REGISTRY:
        raise InvalidInputError(f"`engine` must be one of {', '.join(ENGINES)}, got '{name}'")
    module_name, class_name = _REGISTRY[name].split(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    try:
        inspect.signature(engine_class).bind(**options)
    except TypeError as exc:
        raise InvalidInputError(f"engine '{name}' does not take these options ({exc})") from None
    return engine_class(**options)
