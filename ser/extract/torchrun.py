"""Multi-GPU extraction under ``torchrun``: each rank extracts its own shard, rank 0 merges them.

``torchrun --nproc_per_node 4 -m ser.cli extract --model hubert -m M -o feats.h5`` starts four
processes; rank r writes ``feats.shard{r}of4.h5`` on ``cuda:{LOCAL_RANK}``. After a barrier
(gloo process group, so it also works on CPU), rank 0 joins the shards into ``feats.h5`` and
removes them. A crashed rank leaves its partial shard, which the same command resumes.

Ranks finish their shards hours apart (uneven audio lengths, a slower GPU), so the barrier waits up
to [`BARRIER_TIMEOUT`][ser.extract.torchrun.BARRIER_TIMEOUT], not torch's default 30 minutes after
which a rank that finished early would fail. A rank that crashes does not leave the others waiting
that long: torchrun stops every worker when one fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ser.cache.merge import merge_stores
from ser.cache.reader import CacheReader
from ser.extract.run_options import shard_output, write_rejects

BARRIER_TIMEOUT = timedelta(days=7)
"""How long a rank that finished its shard waits for the slowest one (torch's default is 30 minutes)."""


@dataclass(frozen=True)
class TorchrunContext:
    """Rank and world size from torchrun's environment variables (inactive outside torchrun)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls) -> TorchrunContext:
        return cls(rank=int(os.environ.get("RANK", "0")), world_size=int(os.environ.get("WORLD_SIZE", "1")))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> tuple[int, int] | None:
        return (self.rank, self.world_size) if self.active else None

    def merge_shards(self, output: Path, shard: tuple[int, int] | None, compression: str | None) -> Path | None:
        """Wait (up to [`BARRIER_TIMEOUT`][ser.extract.torchrun.BARRIER_TIMEOUT]) for every rank; on rank 0
        merge the shard stores into ``output`` (with its rejects file) and remove them. Returns ``output`` on
        rank 0 when it merged, else None."""
        import torch.distributed as dist

        created = not dist.is_initialized()
        group = None
        if created:
            dist.init_process_group(backend="gloo", timeout=BARRIER_TIMEOUT)
        else:  # a group made by the caller keeps its own timeout: wait on a gloo group with ours
            group = dist.new_group(backend="gloo", timeout=BARRIER_TIMEOUT)
        try:
            dist.barrier(group=group)
            merged = None
            if self.rank == 0:
                shards = [shard_output(output, (r, self.world_size)) for r in range(self.world_size)]
                if all(path.exists() for path in shards):
                    merge_stores(shards, output, compression=compression)
                    with CacheReader(output) as reader:
                        write_rejects(output.with_name(output.name + ".rejects.tsv"), reader.rejected, reader.notes)
                    merged = output
                for path in shards:
                    _remove_store(path)
                    path.with_name(path.name + ".rejects.tsv").unlink(missing_ok=True)
            dist.barrier(group=group)
            return merged
        finally:
            if created:
                dist.destroy_process_group()
            elif group is not None:
                dist.destroy_process_group(group)


def _remove_store(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
