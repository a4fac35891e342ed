"""The default engine: shards one after another in this process."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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

    Parameters
    ----------
    sampler : DeepSMOTE
        A fitted sampler.
    shards : sequence of Shard
        The shards still to do.
    writer : ShardWriter
    out : OutputDir
    on_shard_done : callable
        Called after each shard is written and marked (progress).
    """
    for shard in shards:
        images = sampler.layout_.from_model(sampler.synthesize_shard(shard))
        writer.write(shard, images)
        out.mark_done(shard)
        on_shard_done(shard)
