"""The default engine: shards one after another in this process, writing overlapped with decoding.

Internal module: use the public names of :mod:`deepsmote.runtime.engines`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..outdir import OutputDir
from ..plan import Shard
from ..synthesis import Synthesizer
from ..writers import make_writer

__all__ = ["LocalEngine"]


class LocalEngine:
    """Runs the shards in this process (:class:`~deepsmote.runtime.engines.Engine`); takes no options."""

    def run(
        self,
        synthesizer: Synthesizer,
        shards: Sequence[Shard],
        out: OutputDir,
        fmt: str,
        classes: Sequence[str],
        on_shard_done: Callable[[Shard], None],
    ) -> dict[str, Any]:
        """Synthesize, write and mark done each shard in turn; returns no engine details.

        PNG encoding and file writes of one shard run in a second thread while the next shard
        decodes (onnxruntime releases the GIL). At most one shard waits to be written, so memory
        stays at two shards; a shard is marked done only after all its files are in place.
        """
        writer = make_writer(fmt, out.path, classes)

        def write(shard: Shard, images: np.ndarray) -> None:
            writer.write(shard, images)
            out.mark_done(shard)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepsmote-writer") as pool:
            pending: tuple[Shard, Future[None]] | None = None
            for shard in shards:
                images = synthesizer.images(shard)
                if pending is not None:
                    pending[1].result()
                    on_shard_done(pending[0])
                pending = (shard, pool.submit(write, shard, images))
            if pending is not None:
                pending[1].result()
                on_shard_done(pending[0])
        return {}
