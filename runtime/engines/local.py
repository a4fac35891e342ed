"""The default engine: shards one after another in this process, writing overlapped with decoding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..outdir import OutputDir
from ..plan import Shard
from ..sampler import DeepSMOTE
from ..writers import ShardWriter


def run_local(
    sampler: DeepSMOTE,
    shards: Sequence[Shard],
    writer: ShardWriter,
    out: OutputDir,
    on_shard_done: Callable[[Shard], None],
) -> None:
    """Synthesize, write and mark done each shard in turn.

    PNG encoding and file writes of one shard run in a second thread while the next shard
    decodes (onnxruntime releases the GIL). At most one shard waits to be written, so memory
    stays at two shards; a shard is marked done only after all its files are in place.

    Parameters
    ----------
    sampler : DeepSMOTE
        A fitted sampler.
    shards : sequence of Shard
        The shards still to do.
    writer : ShardWriter
    out : OutputDir
    on_shard_done : callable
        Called in this thread after each shard is written and marked (progress).
    """

    def write(shard: Shard, images: np.ndarray) -> None:
        writer.write(shard, images)
        out.mark_done(shard)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepsmote-writer") as pool:
        pending: tuple[Shard, Future[None]] | None = None
        for shard in shards:
            images = sampler.layout_.from_model(sampler.synthesize_shard(shard))
            if pending is not None:
                pending[1].result()
                on_shard_done(pending[0])
            pending = (shard, pool.submit(write, shard, images))
        if pending is not None:
            pending[1].result()
            on_shard_done(pending[0])
