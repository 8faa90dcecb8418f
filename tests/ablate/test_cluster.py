"""The cluster path (submitit) run locally through submitit's local executor: same jobs, same locks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.ablate.cluster import chunk, submit_grid
from ser.ablate.grid import expand, load_grid
from ser.ablate.state import RunState, attempts, run_state
from ser.errors import UserError
from tests.fakes.caches import write_grid

pytest.importorskip("submitit")


def test_submitit_local_array_runs_the_grid_and_resubmission_skips_it(corpus: dict[str, Path]) -> None:
    jobs = expand(load_grid(write_grid(corpus, axes={"train.lr": [0.01, 0.003, 0.001]})))
    folder = corpus["root"] / "submitit"
    outcome = submit_grid(
        jobs,
        executor="submitit-local",
        folder=folder,
        jobs_per_task=2,
        parameters={"timeout_min": 10},
        echo=lambda _: None,
    )
    assert len(outcome.submitted) == 2 and outcome.ran == 3 and not outcome.failed
    assert all(run_state(job.run_dir) is RunState.DONE and len(attempts(job.run_dir)) == 1 for job in jobs)
    again = submit_grid(jobs, executor="submitit-local", folder=folder, echo=lambda _: None)
    assert again.already_done == 3 and not again.submitted


def test_a_failing_task_is_reported(corpus: dict[str, Path]) -> None:
    jobs = expand(load_grid(write_grid(corpus, axes={"audio:store": [str(corpus["root"] / "no.h5")]})))
    outcome = submit_grid(jobs, executor="submitit-local", folder=corpus["root"] / "sub", echo=lambda _: None)
    assert len(outcome.failed) == 1 and "no.h5" in outcome.failed[0][1]


class _Job:
    """What chunking reads of a job: its fit record."""

    def __init__(self, lr: float, fusion: str = "mlp") -> None:
        self.record = {"fusion": fusion, "seeds": [0], "train": {"lr": lr}}


def test_chunks_keep_stack_groups_together_and_bad_choices() -> None:
    jobs = [_Job(0.1), _Job(0.2, "fleser"), _Job(0.3), _Job(0.4, "fleser"), _Job(0.5)]
    assert chunk(jobs, 2) == [[jobs[0], jobs[2]], [jobs[4]], [jobs[1], jobs[3]]]  # type: ignore[arg-type]
    with pytest.raises(UserError, match="at least 1"):
        chunk([1], 0)
    with pytest.raises(UserError, match="unknown executor"):
        submit_grid([], executor="pbs", folder=Path("x"))
