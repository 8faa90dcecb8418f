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

Waiting for a Slurm array does not rely on ``sacct`` (submitit's way), which fails where accounting storage
is off (common on small lab clusters) and would leave a cancelled task looking unfinished forever: a task is
finished once it has written its result or has left ``squeue``'s queue; one that left without a result
(cancelled, timed out, killed) is reported as failed with its job id and log, and its cells are redone by
the next submission.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ser.ablate.grid import Job
from ser.ablate.job import make_bundles, run_jobs
from ser.ablate.state import is_done
from ser.errors import UserError, unknown_name

logger = logging.getLogger(__name__)

EXECUTORS = {"slurm": "slurm", "submitit-local": "local"}
DEFAULT_PARAMETERS: dict[str, Any] = {"timeout_min": 120, "cpus_per_task": 2}
POLL_S = 2.0
"""Seconds between two looks at the Slurm queue while waiting for an array."""


class TaskFailure(NamedTuple):
    """A task that raised or ended without a result: its scheduler job id, the error, its log file."""

    task_id: str
    error: str
    log: str


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
    failed: list[TaskFailure] = field(default_factory=list)
    """Tasks that raised or ended without a result (cancelled, timed out, killed)."""
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
    if executor == "slurm":
        _wait_for_queue(tasks)
    for task, group in zip(tasks, groups, strict=True):
        log = str(task.paths.stderr)
        if executor == "slurm" and not task.paths.result_pickle.exists():
            error = (
                "ended without a result (cancelled, timed out or killed by the scheduler); "
                "its unfinished cells are redone by the next submission"
            )
            outcome.failed.append(TaskFailure(str(task.job_id), error, log))
            echo(f"FAILED task {task.job_id} ({', '.join(job.label() for job in group)}): {error}; log {log}")
            continue
        try:
            results = task.result()
        except Exception as err:  # a failed task is reported; the others still count
            error = _last_error_line(err)
            outcome.failed.append(TaskFailure(str(task.job_id), error, log))
            echo(f"FAILED task {task.job_id} ({', '.join(job.label() for job in group)}); log {log}")
            continue
        outcome.ran += results.count("ran")
        outcome.done_elsewhere += results.count("done")
        outcome.left_to_others += results.count("busy")
    return outcome


def _last_error_line(err: BaseException) -> str:
    """The line naming a task's error: submitit's ``FailedJobError`` carries the task's traceback and a
    note on where the logs are (given separately); its last error line says what went wrong."""
    parts = [part for part in str(err).split("----------------------") if not part.strip().startswith("You can check")]
    lines = [line.strip() for line in parts[-1].splitlines() if line.strip()] if parts else []
    return lines[-1][-500:] if lines else type(err).__name__


def queued(job_ids: Sequence[str]) -> set[str] | None:
    """The ids among ``job_ids`` (``ARRAY_TASK`` or plain) that Slurm still holds as pending, running,
    completing or requeued (``squeue``); None when ``squeue`` could not answer (logged)."""
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    try:
        result = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%i", f"--jobs={','.join(arrays)}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.warning("squeue failed (%s); still waiting", err)
        return None
    if result.returncode != 0:
        if "invalid job id" in result.stderr.lower():  # every job left the controller's memory
            return set()
        logger.warning("squeue exited %d (%s); still waiting", result.returncode, result.stderr.strip())
        return None
    listed = set(result.stdout.split())
    return {job_id for job_id in job_ids if job_id in listed}


def _wait_for_queue(tasks: Sequence[Any]) -> None:
    """Until every task has written its result or left the Slurm queue."""
    waiting = {str(task.job_id): task for task in tasks}
    while waiting:
        for job_id, task in list(waiting.items()):
            if task.paths.result_pickle.exists():
                del waiting[job_id]
        if not waiting:
            return
        still = queued(list(waiting))
        if still is not None:
            for job_id in set(waiting) - still:
                del waiting[job_id]
        if waiting:
            time.sleep(POLL_S)
