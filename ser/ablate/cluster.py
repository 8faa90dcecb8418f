"""Grids beyond one machine: Slurm job arrays through submitit.

Why submitit: the clusters SER labs run on are Slurm clusters; submitit (pure Python, no daemon,
maintained by Meta research) turns a Python call into a Slurm array task with a pickled payload and
has a local executor that runs the very same path on one machine, which is how it is tested here.
Every task calls [`ser.ablate.job.run_jobs`][ser.ablate.job.run_jobs], so the per-run locks and the "done" test are the
same as for local runs: a Slurm array, a local runner and a colleague's runner can share one grid
on a shared file system without running anything twice.

``executor`` names: ``slurm`` (sbatch arrays; parameters such as ``slurm_partition``,
``gpus_per_node``, ``timeout_min``, ``slurm_array_parallelism``) and ``submitit-local`` (local
processes through submitit, for trying the cluster path without a cluster).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ser.ablate.grid import Job
from ser.ablate.job import make_bundles, run_jobs
from ser.ablate.state import is_done
from ser.errors import UserError, unknown_name

logger = logging.getLogger(__name__)

EXECUTORS = {"slurm": "slurm", "submitit-local": "local"}
DEFAULT_PARAMETERS: dict[str, Any] = {"timeout_min": 120, "cpus_per_task": 2}


@dataclass
class ClusterOutcome:
    """What a submission did (after waiting, unless ``wait=False``)."""

    submitted: list[str] = field(default_factory=list)
    """Scheduler job ids, one per task."""
    already_done: int = 0
    """Runs that were finished before the submission."""
    ran: int = 0
    """Runs the tasks trained."""
    done_elsewhere: int = 0
    """Runs another process finished meanwhile."""
    left_to_others: int = 0
    """Runs another process was running when the task reached them (finished by it, or redone next time)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(task id, error) for tasks that raised."""
    waited: bool = True
    """False when the submission returned without waiting for the tasks."""


def chunk(jobs: list[Job], per_task: int) -> list[list[Job]]:
    """Groups of at most ``per_task`` jobs (one array task each; small fits share a task): the bundles
    of [`ser.ablate.job.make_bundles`][ser.ablate.job.make_bundles], so the jobs of a task that can stack train as one
    stack."""

    if per_task < 1:
        raise UserError("--jobs-per-task must be at least 1")
    return [[jobs[i] for i in bundle] for bundle in make_bundles([job.record for job in jobs], per_task)]


def submit_grid(
    jobs: list[Job],
    *,
    executor: str,
    folder: Path,
    parameters: dict[str, Any] | None = None,
    jobs_per_task: int = 1,
    wait: bool = True,
    echo: Callable[[str], None] = logger.info,
) -> ClusterOutcome:
    """Submit the unfinished jobs as one array (``jobs_per_task`` jobs per task) and optionally wait."""
    if executor not in EXECUTORS:
        raise unknown_name("executor", executor, ("local", *EXECUTORS))
    try:
        import submitit
    except ImportError as err:
        raise UserError("cluster execution needs submitit: pip install 'serkit[cluster]'") from err

    outcome = ClusterOutcome(waited=wait)
    todo = [job for job in jobs if not is_done(job.run_dir)]
    outcome.already_done = len(jobs) - len(todo)
    if not todo:
        echo(f"{len(jobs)} jobs, all already done")
        return outcome
    pool = submitit.AutoExecutor(folder=str(folder), cluster=EXECUTORS[executor])
    params = {**DEFAULT_PARAMETERS, **(parameters or {})}
    try:
        pool.update_parameters(**params)
    except (ValueError, TypeError) as err:
        raise UserError(f"submitit rejected the parameters {sorted(params)}: {err}") from err
    groups = chunk(todo, jobs_per_task)
    tasks = pool.map_array(run_jobs, [[job.record for job in group] for group in groups])
    outcome.submitted = [task.job_id for task in tasks]
    echo(
        f"submitted {len(todo)} jobs as {len(tasks)} {executor} tasks ({outcome.already_done} already done); "
        f"logs in {folder}"
    )
    if not wait:
        return outcome
    for task, group in zip(tasks, groups, strict=True):
        try:
            results = task.result()
        except Exception as err:  # a failed task is reported; the others still count
            outcome.failed.append((str(task.job_id), f"{type(err).__name__}: {str(err).strip()[-500:]}"))
            echo(f"FAILED task {task.job_id} ({', '.join(job.label() for job in group)})")
            continue
        outcome.ran += results.count("ran")
        outcome.done_elsewhere += results.count("done")
        outcome.left_to_others += results.count("busy")
    return outcome
