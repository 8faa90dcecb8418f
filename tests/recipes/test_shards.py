"""``merge_rank_shards`` in one process: a one-rank gloo group stands in for torchrun's rendezvous while the
context names two ranks, so rank 0 merges two shard stores written by ``run_extraction``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ser.cache.reader import CacheReader
from ser.extract.registry import build_extractor
from ser.extract.run_options import shard_output
from ser.extract.runner import RunOptions, run_extraction
from ser.extract.torchrun import TorchrunContext
from ser.manifests.schema import ManifestHeader, Utterance, write_manifest
from ser.recipes.shards import merge_rank_shards
from tests.fakes import write_tone


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """5 tones and one missing file extracted as shards 0/2 and 1/2 of ``out.h5``; returns ``out.h5``.
    The environment describes a one-process gloo group on a free local port."""
    rows = []
    for i in range(5):
        write_tone(tmp_path / f"t{i}.wav", seconds=0.1 + 0.05 * i, frequency=250.0 + 40 * i)
        rows.append(Utterance(id=f"t{i}", audio=f"t{i}.wav"))
    rows.append(Utterance(id="lost", audio="lost.wav"))
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="tones", root=str(tmp_path)), rows)
    out = tmp_path / "out.h5"
    for shard in ((0, 2), (1, 2)):
        options = RunOptions(shard=shard, num_workers=0, progress=False)
        run_extraction(manifest, build_extractor("logmel", "64"), out, options)
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "RANK": "0",
        "WORLD_SIZE": "1",
    }.items():
        monkeypatch.setenv(key, value)
    return out


def test_rank0_merges_every_shard_and_reports_the_merged_store(two_shards: Path) -> None:
    import torch.distributed as dist

    merged = merge_rank_shards(TorchrunContext(rank=0, world_size=2), two_shards, "gzip")
    assert merged is not None
    assert (merged.store, merged.shards, merged.items) == (two_shards, 2, 5)
    assert list(merged.rejected) == ["lost"] and "missing audio file" in merged.rejected["lost"]
    assert merged.rejects_file == two_shards.with_name("out.h5.rejects.tsv")
    assert "lost" in merged.rejects_file.read_text()
    with CacheReader(two_shards) as reader:
        assert sorted(reader.ids) == [f"t{i}" for i in range(5)]
        assert [entry["shard"] for entry in reader.attrs["merged_from"]] == [[0, 2], [1, 2]]
    assert not [path for path in two_shards.parent.iterdir() if ".shard" in path.name]
    assert not dist.is_initialized()  # the group it created for the barrier is gone


def test_other_ranks_wait_and_merge_nothing(two_shards: Path) -> None:
    assert merge_rank_shards(TorchrunContext(rank=1, world_size=2), two_shards) is None
    assert not two_shards.exists()
    assert all(shard_output(two_shards, (r, 2)).exists() for r in range(2))


def test_outside_torchrun_there_is_nothing_to_merge(tmp_path: Path) -> None:
    import torch.distributed as dist

    assert merge_rank_shards(TorchrunContext(), tmp_path / "out.h5") is None
    assert not dist.is_initialized()
