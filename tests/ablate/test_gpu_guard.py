"""The GPU memory guard holds memory for jobs just started: one reading of a GPU's free memory no longer
starts every idle slot of it at once (mocked memory queries, no workers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import ser.ablate.runner as runner
from ser.ablate.devices import Gpu
from ser.ablate.grid import Job, expand, load_grid
from ser.ablate.runner import RunnerOptions
from tests.fakes.caches import write_grid


def _fake_start(self: runner._Scheduler, index: int, slot: runner._Slot, jobs: list[Job]) -> None:
    slot.jobs, slot.started = list(jobs), 0.0  # a worker that has not allocated anything yet


def test_one_job_starts_on_2100_mib_free_with_a_2048_mib_guard_then_more_as_memory_is_reported(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jobs = expand(load_grid(write_grid(corpus, axes={"train.lr": [0.01, 0.003, 0.001, 0.0003]})))
    readings: Iterator[int] = iter([2100, 2100, 52, 4200, 104])
    monkeypatch.setattr(runner, "discover_gpus", lambda: [Gpu("0", 2100, 40000)])
    monkeypatch.setattr(runner, "free_memory", lambda gpus: {"0": next(readings)})
    monkeypatch.setattr(runner._Scheduler, "_start", _fake_start)
    lines: list[str] = []
    options = RunnerOptions(jobs_per_gpu=4, gpu_min_free_mib=2048, stack=False)
    scheduler = runner._Scheduler(jobs, options, lines.append, tmp_path)
    assert len(scheduler.slots) == 4

    def passes() -> int:
        scheduler.launch_ready()
        return sum(bool(slot.jobs) for slot in scheduler.slots)

    assert passes() == 1  # 2100 MiB free: one job, not four
    assert lines == [
        "waiting: GPU 0 has 2100 MiB free (2048 MiB of it held for jobs just started), below the "
        "2048 MiB guard (--gpu-min-free)"
    ]
    assert passes() == 1  # the same reading: the job has not allocated yet, its memory stays held
    assert passes() == 1  # 52 MiB: the job's memory shows, the hold is dropped, and there is no room
    assert passes() == 3  # 4200 MiB free (another user left): two more, each holding 2048 MiB
    assert passes() == 3  # 104 MiB: both jobs' memory shows; no room for the fourth
    assert scheduler.reserved == {}
    assert len(scheduler.queue) == 1


def test_a_finished_job_releases_its_hold(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jobs = expand(load_grid(write_grid(corpus, axes={"train.lr": [0.01, 0.003]})))
    monkeypatch.setattr(runner, "discover_gpus", lambda: [Gpu("0", 3000, 40000)])
    monkeypatch.setattr(runner, "free_memory", lambda gpus: {"0": 3000})  # the job never showed any memory
    monkeypatch.setattr(runner._Scheduler, "_start", _fake_start)
    options = RunnerOptions(jobs_per_gpu=2, gpu_min_free_mib=2048, stack=False)
    scheduler = runner._Scheduler(jobs, options, lambda _: None, tmp_path)
    scheduler.launch_ready()
    assert [bool(slot.jobs) for slot in scheduler.slots] == [True, False]
    scheduler.slots[0].jobs = []  # it ended
    scheduler.launch_ready()
    assert sum(bool(slot.jobs) for slot in scheduler.slots) == 1 and not scheduler.queue
    assert len(scheduler.reserved) == 1  # only the new job holds memory
