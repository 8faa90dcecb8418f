"""The shard barrier under torchrun waits for the slowest rank for days, not torch's default 30 minutes
(issue 28, item 6): ranks finish their shards hours apart. One process stands in for a rank of a two-rank
run (a one-rank gloo group on a free local port); the real ``init_process_group`` / ``new_group`` are
wrapped to record the timeout they were given."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist

from ser.extract.torchrun import BARRIER_TIMEOUT, TorchrunContext


@pytest.fixture
def one_rank_group_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)


def _recording(monkeypatch: pytest.MonkeyPatch, name: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    real = getattr(dist, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(dist, name, wrapper)
    return calls


def test_the_group_it_creates_waits_days_for_the_slowest_rank(
    one_rank_group_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _recording(monkeypatch, "init_process_group")
    assert TorchrunContext(rank=1, world_size=2).merge_shards(tmp_path / "out.h5", (1, 2), None) is None
    assert [call.get("timeout") for call in calls] == [BARRIER_TIMEOUT]
    assert timedelta(days=1) <= BARRIER_TIMEOUT
    assert not dist.is_initialized()


def test_a_callers_group_is_not_trusted_with_the_wait(
    one_rank_group_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dist.init_process_group(backend="gloo")  # the caller's group, torch's default 30-minute timeout
    try:
        calls = _recording(monkeypatch, "new_group")
        barriers = _recording(monkeypatch, "barrier")
        assert TorchrunContext(rank=1, world_size=2).merge_shards(tmp_path / "out.h5", (1, 2), None) is None
        assert [(call.get("backend"), call.get("timeout")) for call in calls] == [("gloo", BARRIER_TIMEOUT)]
        assert len(barriers) == 2 and all(call["group"] is not None for call in barriers)
        assert dist.is_initialized()  # the caller's group is left alone
    finally:
        dist.destroy_process_group()
