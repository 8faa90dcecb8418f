"""``ser.threads``: BLAS threads sized to the work and to the idle cores, capped by SER_MAX_THREADS."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from ser import threads


@pytest.fixture(autouse=True)
def _outside_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests set the cores themselves: a Slurm job running the suite must not cap them."""
    for name in threads.SLURM_CPU_ENVS:
        monkeypatch.delenv(name, raising=False)


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_usable_cores_follow_the_affinity_and_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv(threads.MAX_THREADS_ENV, raising=False)
    assert threads.usable_cores() == 4
    monkeypatch.setenv(threads.MAX_THREADS_ENV, "2")
    assert threads.usable_cores() == 2
    monkeypatch.setenv(threads.MAX_THREADS_ENV, "0")
    assert threads.usable_cores() == 1  # a cap below one thread still leaves one
    monkeypatch.setenv(threads.MAX_THREADS_ENV, "many")
    assert threads.usable_cores() == 4  # not a number: ignored (with a warning)


def test_usable_cores_follow_the_cpus_slurm_allocated(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Under TaskPlugin=task/none a task's affinity is the whole node; the CPUs Slurm gave it cap the cores."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv(threads.MAX_THREADS_ENV, raising=False)
    assert threads.usable_cores() == 16
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "4")
    assert threads.usable_cores() == 4
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    with caplog.at_level(logging.INFO, logger="ser.threads"):
        assert threads.usable_cores() == 1
        assert threads.idle_cores() == 1
        assert threads.blas_threads_for(threads.PARALLEL_WORK * 10) == 1
    assert "SLURM_CPUS_PER_TASK=1 caps the 16 cores this process sees to 1" in caplog.text
    monkeypatch.setenv(threads.MAX_THREADS_ENV, "8")
    assert threads.usable_cores() == 1  # the smallest cap wins
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "32")  # more than the affinity: no cap
    monkeypatch.delenv("SLURM_CPUS_ON_NODE")
    assert threads.usable_cores() == 8
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "two")
    monkeypatch.delenv(threads.MAX_THREADS_ENV)
    with caplog.at_level(logging.WARNING, logger="ser.threads"):
        assert threads.usable_cores() == 16  # not a number: ignored, with a warning
    assert "SLURM_CPUS_PER_TASK='two' is not a whole number; ignored" in caplog.text


@pytest.mark.parametrize(("others", "idle"), [(0.0, 4), (1.0, 3), (2.6, 1), (3.0, 1), (9.0, 1)])
def test_idle_cores_leave_out_what_other_processes_run(
    monkeypatch: pytest.MonkeyPatch, others: float, idle: int
) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv(threads.MAX_THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, "_other_running_tasks", lambda: others)
    assert threads.idle_cores() == idle


def test_the_running_count_excludes_this_process_and_sees_busy_ones() -> None:
    quiet = threads._other_running_tasks()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.3)
        busy = threads._other_running_tasks()
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert busy >= quiet + 1  # two more running tasks (a read may fall between one's time slices)


def test_small_problems_get_one_thread_and_big_ones_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "idle_cores", lambda: 3)
    assert threads.blas_threads_for(1100 * 88 * 8) == 1  # RAVDESS eGeMAPS logistic regression
    assert threads.blas_threads_for(threads.PARALLEL_WORK - 1) == 1
    assert threads.blas_threads_for(threads.PARALLEL_WORK) == 3


def test_blas_threads_limit_every_blas_pool_inside_the_block_only() -> None:
    before = _blas_threads()
    with threads.blas_threads(1):
        assert _blas_threads() == {1}
        np.ones((64, 64)) @ np.ones((64, 64))
    assert _blas_threads() == before


def test_torch_threads_are_lowered_to_the_cpus_slurm_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from ser.threads import cap_torch_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
        cap_torch_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")
        cap_torch_threads()
        assert torch.get_num_threads() == 1  # never raised
    finally:
        torch.set_num_threads(before)
