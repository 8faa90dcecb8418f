"""The local runner keeps workers x threads within the cores, tells each worker its share, and prints
how long the rest of the grid should take."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ser.ablate import runner
from ser.ablate.grid import expand, load_grid
from ser.ablate.runner import RunnerOptions, run_grid
from tests.fakes.caches import write_grid


def _jobs(corpus: dict[str, Path], threads: int = 1):
    jobs = expand(load_grid(write_grid(corpus, axes={"train.lr": [0.01, 0.001]}, seeds=[0])))
    return [replace(job, config=replace(job.config, train=replace(job.config.train, threads=threads))) for job in jobs]


@pytest.mark.parametrize(
    ("cores", "workers", "threads", "kept"), [(2, 4, 1, 2), (2, 2, 1, 2), (8, 8, 2, 4), (4, 3, 0, 1), (2, 1, 4, 1)]
)
def test_cpu_workers_times_torch_threads_never_exceed_the_cores(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, threads: int, kept: int
) -> None:
    monkeypatch.setattr(runner, "usable_cores", lambda: cores)
    scheduler = runner._Scheduler(
        _jobs(corpus, threads), RunnerOptions(workers=workers, device="cpu"), print, Path("unused")
    )
    assert len(scheduler.slots) == kept
    described = scheduler.describe()
    if kept < workers:
        shown = threads or cores
        assert f"--workers {workers} x train.threads {shown} would run {workers * shown} threads on {cores} cores" in (
            described
        )
    else:
        assert "would run" not in described


def test_each_worker_is_told_its_share_of_the_cores_and_the_last_done_line_has_no_eta(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shares: list[str] = []
    start = runner._Worker.__init__

    def spying_init(self, gpu, options, log_path, max_threads):
        shares.append(str(max_threads))
        start(self, gpu, options, log_path, max_threads)

    monkeypatch.setattr(runner._Worker, "__init__", spying_init)
    monkeypatch.setattr(runner, "usable_cores", lambda: 2)
    lines: list[str] = []
    jobs = _jobs(corpus)
    outcome = run_grid(jobs, RunnerOptions(workers=2, device="cpu", poll_seconds=0.1), echo=lines.append)
    assert outcome.complete and len(outcome.ran) == 2
    assert shares and set(shares) == {"1"}  # 2 cores over 2 workers
    done = [line for line in lines if " done " in line]
    assert len(done) == 2
    assert done[0].startswith("[1/2]") or done[1].startswith("[1/2]")
    assert "left" not in done[-1]  # nothing is left after the last job
    for job in jobs:
        assert json.loads((job.run_dir / "metrics.json").read_text())["runs"]


def test_the_estimate_is_the_mean_pace_times_the_jobs_left(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler = runner._Scheduler(_jobs(corpus), RunnerOptions(workers=1, device="cpu"), print, Path("unused"))
    assert scheduler.eta() == ""  # nothing finished yet
    job = scheduler.queue.popleft()
    scheduler.outcome.ran.append(job)  # one done, one still queued
    monkeypatch.setattr(runner.time, "monotonic", lambda: scheduler.started + 40.0)
    assert scheduler.eta() == ", about 40 s left"
    monkeypatch.setattr(runner.time, "monotonic", lambda: scheduler.started + 600.0)
    assert scheduler.eta() == ", about 10 min left"
