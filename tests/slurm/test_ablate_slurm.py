"""What users do with ``ser ablate --executor slurm`` on a real (one-node) Slurm cluster: a grid as a job
array whose report equals a local run's, cancelling and resubmitting, requeueing, failing tasks."""

from __future__ import annotations

import csv
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.ablate.cluster import ClusterOutcome, submit_grid
from ser.ablate.grid import Job, expand, load_grid
from ser.ablate.state import RunState, attempts, is_done, run_state
from ser.cli import app
from tests.fakes.caches import tiny_corpus, write_grid
from tests.slurm.conftest import SlurmCluster

pytest.importorskip("submitit")

SLURM = ["--executor", "slurm", "--cluster-opt", "slurm_partition=debug", "--cluster-opt", "cpus_per_task=1"]


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    return tiny_corpus(tmp_path)


def _report_of(runs: Path) -> dict[str, dict[str, str]]:
    """``ser report`` of a runs folder: report.csv's rows by cell."""
    result = CliRunner().invoke(app, ["report", str(runs), "--no-plots"])
    assert result.exit_code == 0, result.output
    return _report(runs)


def _report(folder: Path) -> dict[str, dict[str, str]]:
    """report.csv of a grid's runs, its rows by cell."""
    rows = csv.DictReader((folder / "report" / "report.csv").read_text(encoding="utf-8").splitlines())
    return {row["cell"]: row for row in rows}


def _wait_until(ready: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _array_gone(cluster: SlurmCluster, job_ids: list[str]) -> bool:
    out = cluster.run("squeue", "--noheader", "--array", "--format=%i", check=False).stdout.split()
    return not set(out) & set(job_ids)


def _stamps(jobs: list[Job]) -> dict[Path, tuple[int, int]]:
    """(inode, mtime) of each finished run's metrics.json: a run that ran again changes it."""
    return {
        job.run_dir: ((job.run_dir / "metrics.json").stat().st_ino, (job.run_dir / "metrics.json").stat().st_mtime_ns)
        for job in jobs
        if is_done(job.run_dir)
    }


def test_a_grid_runs_as_a_job_array_and_reports_like_a_local_run(
    slurm_cluster: SlurmCluster, corpus: dict[str, Path]
) -> None:
    grid = write_grid(corpus, axes={"train.lr": [0.01, 0.003]})
    runner = CliRunner()
    local = runner.invoke(
        app, ["ablate", str(grid), "--out", str(corpus["root"] / "local"), "-j", "1", "--no-stack", "--device", "cpu"]
    )
    assert local.exit_code == 0, local.output
    slurm = runner.invoke(app, ["ablate", str(grid), "--out", str(corpus["root"] / "slurm"), *SLURM])
    assert slurm.exit_code == 0, slurm.output
    assert "2 jobs: 2 ran, 0 already done" in slurm.output and "0 tasks failed" in slurm.output
    jobs = expand(load_grid(grid, out=str(corpus["root"] / "slurm")))
    assert all(is_done(job.run_dir) and len(attempts(job.run_dir)) == 1 for job in jobs)
    local_rows, slurm_rows = _report(corpus["root"] / "local"), _report(corpus["root"] / "slurm")
    assert len(slurm_rows) == 2 and slurm_rows == local_rows  # every column, every number


def test_cancelling_the_array_mid_grid_then_resubmitting_runs_only_the_missing_cells(
    slurm_cluster: SlurmCluster, corpus: dict[str, Path]
) -> None:
    grid = write_grid(corpus, axes={"train.epochs": [4, 1500, 1501]})
    jobs = expand(load_grid(grid))
    outcomes: list[ClusterOutcome] = []
    waiting = threading.Thread(  # `ser ablate` waiting for its array, as a user's terminal would
        target=lambda: outcomes.append(
            submit_grid(
                jobs,
                executor="slurm",
                folder=corpus["root"] / "submitit",
                parameters={"slurm_partition": "debug", "cpus_per_task": 1, "slurm_array_parallelism": 1},
                echo=lambda _: None,
            )
        ),
        daemon=True,
    )
    waiting.start()
    _wait_until(lambda: is_done(jobs[0].run_dir) and bool(attempts(jobs[1].run_dir)), "cell 1 to finish, 2 to start")
    array = slurm_cluster.run("squeue", "--noheader", "--format=%F").stdout.split()[0]
    slurm_cluster.run("scancel", array)
    waiting.join(timeout=60)  # the waiting submission notices the cancellation (no accounting needed)
    assert not waiting.is_alive(), "submit_grid still waiting for a cancelled array"
    (outcome,) = outcomes
    assert outcome.ran == 1 and len(outcome.submitted) == 3
    assert [failure.task_id for failure in outcome.failed] == outcome.submitted[1:]
    assert all("ended without a result" in failure.error for failure in outcome.failed)
    _wait_until(lambda: _array_gone(slurm_cluster, outcome.submitted), "the cancelled array to leave the queue")
    assert is_done(jobs[0].run_dir)
    assert not is_done(jobs[1].run_dir) and run_state(jobs[1].run_dir) is RunState.CRASHED  # half-written: not done
    assert not is_done(jobs[2].run_dir)
    before = _stamps(jobs)
    again = CliRunner().invoke(app, ["ablate", str(grid), *SLURM])
    assert again.exit_code == 0, again.output
    assert "3 jobs: 2 ran, 1 already done" in again.output
    after = _stamps(jobs)
    ran_twice = [run_dir for run_dir, stamp in before.items() if after[run_dir] != stamp]
    print(f"cancel -> resubmit: {len(ran_twice)} cells ran twice")
    assert len(after) == 3 and not ran_twice
    assert [len(attempts(job.run_dir)) for job in jobs] == [1, 2, 1]


def test_a_requeued_task_resumes_its_cell_and_nothing_counts_twice(
    slurm_cluster: SlurmCluster, corpus: dict[str, Path]
) -> None:
    grid = write_grid(corpus, axes={"train.epochs": [1500]})
    jobs = expand(load_grid(grid))
    outcome = submit_grid(
        jobs,
        executor="slurm",
        folder=corpus["root"] / "submitit",
        parameters={"slurm_partition": "debug", "cpus_per_task": 1},
        wait=False,
        echo=lambda _: None,
    )
    _wait_until(lambda: bool(attempts(jobs[0].run_dir)), "the cell to start")
    slurm_cluster.run("scontrol", "requeue", outcome.submitted[0])
    # Slurm holds a requeued batch job about two minutes (its BeginTime); release it now, as an admin would
    slurm_cluster.wait_for(outcome.submitted[0], {"PENDING"})
    slurm_cluster.run("scontrol", "update", f"JobId={outcome.submitted[0]}", "StartTime=now")
    _wait_until(lambda: len(attempts(jobs[0].run_dir)) == 2, "the requeued task to start again", timeout=180)
    _wait_until(lambda: _array_gone(slurm_cluster, outcome.submitted), "the requeued task to finish", timeout=120)
    assert is_done(jobs[0].run_dir)
    (row,) = _report_of(corpus["root"] / "runs").values()
    assert row["n_runs"] == "2"  # its two folds, once each
    again = CliRunner().invoke(app, ["ablate", str(grid), *SLURM])
    assert again.exit_code == 0 and "1 jobs, all already done" in again.output, again.output


def test_a_failing_task_is_reported_with_its_job_id_and_log(
    slurm_cluster: SlurmCluster, corpus: dict[str, Path]
) -> None:
    grid = write_grid(corpus, axes={"audio:store": [str(corpus["root"] / "no.h5")]})
    result = CliRunner().invoke(app, ["ablate", str(grid), *SLURM, "--no-report"])
    assert result.exit_code == 1, result.output
    match = re.search(r"failed task (\d+(?:_0)?): (.*)\n  log: (\S+)", result.output)
    assert match, result.output
    job_id, error, log = match.groups()
    assert (
        error == f"ser.errors.UserError: {corpus['root'] / 'no.h5'}: no such cache store; create it with `ser extract`"
    )
    # the task has written its result; Slurm records the state once its process has exited
    assert slurm_cluster.wait_for(job_id, {"FAILED", "COMPLETED", "CANCELLED", "TIMEOUT"}) == "FAILED"
    assert Path(log).is_file() and Path(log).name.startswith(job_id) and "no.h5" in Path(log).read_text()
