"""Multi-GPU extraction under ``torchrun``: each rank extracts its own shard, rank 0 merges them.

``torchrun --nproc_per_node 4 -m ser.cli extract --model hubert -m M -o feats.h5`` starts four
processes; rank r writes ``feats.shard{r}of4.h5`` on ``cuda:{LOCAL_RANK}``. After a barrier
(gloo process group, so it also works on CPU), rank 0 joins the shards into ``feats.h5`` and
removes them. A crashed rank leaves its partial shard, which the same command resumes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ser.cache.merge import merge_stores
from ser.cache.reader import CacheReader
from ser.extract.run_options import shard_output, write_rejects


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
        """Wait for every rank; on rank 0 merge the shard stores into ``output`` (with its rejects file) and
        remove them. Returns ``output`` on rank 0 when it merged, else None."""
        import torch.distributed as dist

        created = not dist.is_initialized()
        if created:
            dist.init_process_group(backend="gloo")
        try:
            dist.barrier()
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
            dist.barrier()
            return merged
        finally:
            if created:
                dist.destroy_process_group()


def _remove_store(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
