"""The local grid runner: idempotence, crashed and foreign runs, kill/Ctrl-C and resume, failures,
GPU slots and the memory guard (with a fake nvidia-smi)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ser.ablate.devices import Gpu, discover_gpus
from ser.ablate.grid import Job, expand, load_grid
from ser.ablate.runner import RunnerOptions, plan_slots, run_grid
from ser.ablate.state import RunLock, RunState, attempts, is_locked, run_state
from tests.fakes.caches import write_grid

CPU = RunnerOptions(workers=2, device="cpu", poll_seconds=0.1)


def jobs_of(grid: Path) -> list[Job]:
    return expand(load_grid(grid))


def wait_for(condition, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_every_job_runs_once_and_a_rerun_skips_them(corpus: dict[str, Path]) -> None:
    jobs = jobs_of(write_grid(corpus, axes={"train.lr": [0.01, 0.001]}, seeds=[0, 1]))
    outcome = run_grid(jobs, CPU, echo=lambda _: None)
    assert outcome.complete and len(outcome.ran) == 4 and not outcome.failed
    for job in jobs:
        assert run_state(job.run_dir) is RunState.DONE
        assert len(attempts(job.run_dir)) == 1
        metrics = json.loads((job.run_dir / "metrics.json").read_text())
        assert [r["fold"] for r in metrics["runs"]] == ["spk0", "spk1"]
        assert [r["seed"] for r in metrics["runs"]] == [job.seed, job.seed]
    again = run_grid(jobs, CPU, echo=lambda _: None)
    assert again.complete and not again.ran and len(again.already_done) == 4
    assert all(len(attempts(job.run_dir)) == 1 for job in jobs)


@pytest.mark.slow
def test_cells_of_one_stack_group_train_as_one_stacked_fit(corpus: dict[str, Path]) -> None:
    """Two learning rates x two seeds (one stack group): one worker trains the four runs as one stack;
    without dropout every run equals the run trained alone (--no-stack), and each run is still its
    own directory with its own metrics. A cell with other head options is another group."""
    grid = write_grid(
        corpus,
        axes={"train.lr": [0.01, 0.003]},
        seeds=[0, 1],
        include=[{"head.hidden": [16], "train.lr": 0.01}],
        base={"head": {"dropout": 0.0}},
    )
    stacked, alone = expand(load_grid(grid)), expand(load_grid(grid, out=str(corpus["root"] / "alone")))
    assert len(stacked) == 6
    lines: list[str] = []
    outcome = run_grid(stacked, RunnerOptions(workers=1, device="cpu", poll_seconds=0.1), echo=lines.append)
    assert outcome.complete and len(outcome.ran) == 6
    assert sum("stacked with 3 others" in line for line in lines) == 4
    assert sum("stacked with 1 others" in line for line in lines) == 2  # the head.hidden cell, two seeds
    assert "4 runs train together" in (stacked[0].run_dir / "train.log").read_text()
    outcome = run_grid(alone, RunnerOptions(workers=1, device="cpu", poll_seconds=0.1, stack=False), echo=lines.append)
    assert outcome.complete and len(outcome.ran) == 6
    for together, single in zip(stacked, alone, strict=True):
        a = json.loads((together.run_dir / "metrics.json").read_text())
        b = json.loads((single.run_dir / "metrics.json").read_text())
        assert [r["test"]["confusion"] for r in a["runs"]] == [r["test"]["confusion"] for r in b["runs"]]
        assert [r["best_epoch"] for r in a["runs"]] == [r["best_epoch"] for r in b["runs"]]


@pytest.mark.slow
def test_crashed_runs_are_redone_and_locked_runs_are_left_to_their_owner(corpus: dict[str, Path]) -> None:
    crashed, foreign = jobs_of(write_grid(corpus, axes={"train.lr": [0.01, 0.001]}))
    run_grid([crashed, foreign], CPU, echo=lambda _: None)
    (crashed.run_dir / "metrics.json").unlink()  # as if killed before the end
    (foreign.run_dir / "metrics.json").unlink()
    assert run_state(crashed.run_dir) is RunState.CRASHED
    lock = RunLock(foreign.run_dir)
    lock.acquire()  # someone else is running it
    try:
        assert run_state(foreign.run_dir) is RunState.RUNNING
        outcome = run_grid(
            [crashed, foreign],
            RunnerOptions(workers=1, device="cpu", poll_seconds=0.1, wait_for_others=False),
            echo=lambda _: None,
        )
    finally:
        lock.release()
    assert outcome.ran == [crashed] and outcome.not_run == [foreign] and not outcome.complete
    assert len(attempts(crashed.run_dir)) == 2 and len(attempts(foreign.run_dir)) == 1
    # waiting for the owner, who gives up after a while: this runner then does the run itself
    lock.acquire()
    threading.Timer(2.0, lock.release).start()
    outcome = run_grid(
        [crashed, foreign], RunnerOptions(workers=1, device="cpu", poll_seconds=0.1), echo=lambda _: None
    )
    assert outcome.complete and outcome.ran == [foreign] and outcome.already_done == [crashed]


def _runner(grid: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ser.cli", "ablate", str(grid), "--no-report", "--device", "cpu", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_runners_on_one_grid_share_the_work(corpus: dict[str, Path]) -> None:
    grid = write_grid(
        corpus,
        axes={"train.lr": [0.01, 0.003, 0.001]},
        seeds=[0, 1],
        base={"train": {"epochs": 60, "patience": 0, "batch_size": 16}},
    )
    first, second = _runner(grid, "-j", "1"), _runner(grid, "-j", "1")
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    jobs = jobs_of(grid)
    assert all(len(attempts(job.run_dir)) == 1 for job in jobs)  # nothing ran twice
    ran = [
        int(line.split(" ran,")[0].split(": ")[-1])
        for out in outputs
        for line in out.splitlines()
        if line.startswith("6 jobs:")
    ]
    assert sum(ran) == 6 and len(ran) == 2


def _slow_grid(corpus: dict[str, Path]) -> Path:
    return write_grid(
        corpus,
        axes={"train.lr": [0.01, 0.003, 0.001]},
        base={"train": {"epochs": 400, "patience": 0, "batch_size": 16}},
    )


def _in_progress(jobs: list[Job]) -> Job | None:
    return next((j for j in jobs if attempts(j.run_dir) and run_state(j.run_dir) is RunState.RUNNING), None)


@pytest.mark.slow
def test_a_killed_runner_takes_its_jobs_down_and_the_grid_resumes(corpus: dict[str, Path]) -> None:
    grid = _slow_grid(corpus)
    jobs = jobs_of(grid)
    runner = _runner(grid, "-j", "1")
    wait_for(lambda: _in_progress(jobs) is not None, what="a job to start")
    victim = _in_progress(jobs)
    assert victim is not None
    runner.kill()  # SIGKILL: no clean-up in the runner at all
    runner.wait()
    wait_for(lambda: not is_locked(victim.run_dir), timeout=60, what="the orphaned job to die")
    assert run_state(victim.run_dir) is RunState.CRASHED
    resumed = _runner(grid, "-j", "1")
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert all(run_state(job.run_dir) is RunState.DONE for job in jobs)
    assert len(attempts(victim.run_dir)) == 2
    # the redone run has the numbers an uninterrupted run of the grid has (same config, seed and
    # bundle: the three cells train as one stack, whichever of them was interrupted)
    fresh = expand(load_grid(grid, out=str(corpus["root"] / "fresh")))
    assert run_grid(fresh, RunnerOptions(workers=1, device="cpu", poll_seconds=0.1), echo=lambda _: None).complete
    for job, again in zip(jobs, fresh, strict=True):
        redone = json.loads((job.run_dir / "metrics.json").read_text())["test"]
        assert redone == json.loads((again.run_dir / "metrics.json").read_text())["test"]


def test_ctrl_c_stops_the_jobs_and_exits_130(corpus: dict[str, Path]) -> None:
    grid = _slow_grid(corpus)
    jobs = jobs_of(grid)
    runner = _runner(grid, "-j", "2")
    wait_for(lambda: _in_progress(jobs) is not None, what="a job to start")
    runner.send_signal(signal.SIGINT)
    output = runner.communicate(timeout=120)[0]
    assert runner.returncode == 130, output
    assert "interrupted: stopping running jobs (run the same command again to resume)" in output
    assert not any(is_locked(job.run_dir) for job in jobs)  # the workers are gone
    assert any(run_state(job.run_dir) is not RunState.DONE for job in jobs)


def test_a_failing_job_is_reported_and_the_grid_goes_on(corpus: dict[str, Path]) -> None:
    jobs = jobs_of(write_grid(corpus, axes={"audio:store": [str(corpus["audio"]), str(corpus["root"] / "no.h5")]}))
    lines: list[str] = []
    outcome = run_grid(jobs, CPU, echo=lines.append)
    assert len(outcome.ran) == 1 and len(outcome.failed) == 1 and not outcome.complete
    failed, reason = outcome.failed[0]
    assert failed is jobs[1] and "no.h5" in reason
    assert "no.h5" in (failed.run_dir / "ablate.log").read_text()
    assert any("FAILED" in line for line in lines)


def test_a_worker_that_dies_costs_its_job_only(corpus: dict[str, Path], tmp_path: Path) -> None:
    fake = tmp_path / "dying-python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.stdin.readline()\nsys.exit(9)\n")
    fake.chmod(0o755)
    jobs = jobs_of(write_grid(corpus, axes={"train.lr": [0.01, 0.001]}))
    outcome = run_grid(
        jobs, RunnerOptions(workers=1, device="cpu", poll_seconds=0.05, python=str(fake)), echo=lambda _: None
    )
    assert [job for job, _ in outcome.failed] == jobs
    assert all("died with exit status 9" in reason for _, reason in outcome.failed)


# ------------------------------------------------------------------------------------------ GPUs


@pytest.fixture
def fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``nvidia-smi`` on PATH that reports two GPUs: 0 with 30000 MiB free, 1 with 100 MiB free."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, GPU-aaaa-1111, 30000, 40000'\necho '1, GPU-bbbb-2222, 100, 40000'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return smi


def test_gpu_discovery_follows_cuda_visible_devices(fake_gpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert discover_gpus() == [Gpu("0", 30000, 40000), Gpu("1", 100, 40000)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert discover_gpus() == [Gpu("1", 100, 40000)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa")
    assert discover_gpus() == [Gpu("GPU-aaaa", 30000, 40000)]
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert discover_gpus() == []


def test_no_nvidia_smi_means_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert discover_gpus() == []
    assert plan_slots([], RunnerOptions(workers=3)) == [None, None, None]


def test_slots_pack_k_jobs_per_gpu() -> None:
    gpus = [Gpu("0"), Gpu("1")]
    assert plan_slots(gpus, RunnerOptions(jobs_per_gpu=3)) == ["0", "1", "0", "1", "0", "1"]
    assert plan_slots(gpus, RunnerOptions(jobs_per_gpu=3, workers=3)) == ["0", "1", "0"]
    assert plan_slots(gpus, RunnerOptions(device="cpu", workers=2)) == [None, None]


def test_memory_guard_keeps_jobs_off_a_full_gpu(fake_gpus: Path, corpus: dict[str, Path]) -> None:
    jobs = jobs_of(write_grid(corpus, axes={"train.lr": [0.01, 0.003, 0.001]}))
    options = RunnerOptions(jobs_per_gpu=2, gpu_min_free_mib=2048, poll_seconds=0.1, stack=False)  # one job each
    lines: list[str] = []
    outcome = run_grid(jobs, options, echo=lines.append)
    assert outcome.complete and len(outcome.ran) == 3
    seen = [attempts(job.run_dir)[0].split()[-1] for job in jobs]
    assert seen == ["CUDA_VISIBLE_DEVICES=0"] * 3  # GPU 1 has 100 MiB free: never used
    assert any("GPU 1 has 100 MiB free" in line for line in lines)
    assert lines[0].endswith("4 slots on GPUs 0, 1")


def test_stack_groups_ignore_seeds_and_per_member_train_settings_only() -> None:
    from ser.ablate.job import stack_group

    base = {"fusion": "mlp", "seeds": [0], "out": "a", "head": {}, "train": {"lr": 0.01, "batch_size": 16}}
    same = [
        dict(base, seeds=[3], out="b"),
        dict(base, train={"lr": 0.1, "epochs": 9, "schedule": "plateau", "batch_size": 16}),
    ]
    other = [
        dict(base, fusion="fleser"),
        dict(base, head={"hidden": [8]}),
        dict(base, train={"lr": 0.01, "batch_size": 32}),
    ]
    assert all(stack_group(record) == stack_group(base) for record in same)
    assert all(stack_group(record) != stack_group(base) for record in other)
    sequential = dict(base, train={"lr": 0.01, "batch_size": 16, "engine": "sequential"})
    assert stack_group(sequential) != stack_group(dict(sequential, seeds=[1]))
