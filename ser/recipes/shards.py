"""Joining the shards of an extraction under ``torchrun``: after every rank has run
[`ser.extract.runner.run_extraction`][ser.extract.runner.run_extraction] on its own shard, rank 0 merges the shard
stores into the requested store and reports what the merged store holds.

Why here and not in ``ser.extract`` or ``ser.cache``: the step needs both (the rendezvous and shard
naming of [`ser.extract.torchrun`][ser.extract.torchrun], the reader of [`ser.cache`][ser.cache]), so ``ser.cache``, a
leaf that imports no other ``ser`` package, cannot hold it; and [`ser.extract.torchrun`][ser.extract.torchrun] already
holds the mechanics (barrier, merge, removal of the shards) that this step calls. What it adds is the
caller-facing outcome, the one step a script or a cluster job runs after the extraction on every rank,
which is what a recipe is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ser.cache.reader import CacheReader
from ser.extract.run_options import rejects_path
from ser.extract.torchrun import TorchrunContext


@dataclass(frozen=True)
class MergedShards:
    """The store rank 0 merged from every rank's shard."""

    store: Path
    """The merged store."""
    shards: int
    """How many shard stores were merged (the world size)."""
    items: int
    """Rows stored in the merged store."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Row id -> why it was rejected, over every shard."""
    rejects_file: Path | None = None
    """``STORE.rejects.tsv``, listing ``rejected`` with the reasons."""


def merge_rank_shards(context: TorchrunContext, output: Path, compression: str | None = None) -> MergedShards | None:
    """Wait for every rank of ``context`` (up to [`BARRIER_TIMEOUT`][ser.extract.torchrun.BARRIER_TIMEOUT], days:
    ranks finish their shards hours apart); on rank 0 merge the shard stores ``OUTPUT.shard{r}of{N}`` into
    ``output`` (compressed with ``compression``, as the extraction asked), write its rejects file and
    remove the shards (see [`merge_shards`][ser.extract.torchrun.TorchrunContext.merge_shards]). Returns the merged
    store's summary on rank 0; None on the other ranks, outside torchrun (``context`` inactive, nothing
    waited for) and when some rank's shard is not finished (nothing merged)."""
    if not context.active:
        return None
    merged = context.merge_shards(output, context.shard, compression)
    if merged is None:
        return None
    with CacheReader(merged) as reader:
        return MergedShards(
            store=merged,
            shards=context.world_size,
            items=len(reader),
            rejected=dict(reader.rejected),
            rejects_file=rejects_path(merged),
        )
