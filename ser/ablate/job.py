"""One grid job: lock the run directory, skip it if finished, else run the fit.

The local runner calls [`run_job`][ser.ablate.job.run_job] inside its worker processes (``ser.ablate.worker``), Slurm
tasks call [`run_jobs`][ser.ablate.job.run_jobs] through submitit, and one job can be re-run by hand with
``python -m ser.ablate.job <run dir>/job.json``. Either way the lock makes a second runner, user
or node skip a run that is in progress, and a run killed half-way is redone by the next runner.

Exit status of that command: 0 ran or already done, 2 bad input (message on stderr), 75 the run
is locked by someone else, anything else a crash (traceback on stderr).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ser.ablate.state import RunBusyError, RunLock, is_done, record_attempt
from ser.errors import UserError
from ser.fusion.config import config_from_dict
from ser.processes import tie_to_parent

logger = logging.getLogger(__name__)

BUSY_EXIT = 75
PARENT_ENV = "SER_ABLATE_PARENT_PID"
Outcome = Literal["ran", "done", "busy"]


def run_job(record: dict[str, Any]) -> Outcome:
    """Run one fit-config record unless it is finished or locked; the run directory is the one
    ``ser fit`` would use for the same config. A user error (bad input) is raised."""
    outcome, error = run_bundle([record])[0]
    if outcome == "error":
        raise UserError(error)
    return outcome


STACKED_TRAIN_KEYS = (
    "lr",
    "weight_decay",
    "momentum",
    "epochs",
    "patience",
    "schedule",
    "step_size",
    "schedule_at_start",
    "gamma",
    "plateau_patience",
    "select",
    "normalize",
    "refit",
    "checkpoint",
    "transfer_epochs",
    "loss_optimizer",
    "loss_milestones",
)
"""``train.*`` settings members of one stack may differ in (see ``ser.fusion.engine``)."""


def stack_group(record: dict[str, Any]) -> str:
    """Records with the same group may train as one stack (``ser.fusion.run.run_fits``): everything
    but the seeds, the output folder and the per-member training settings is equal. Records with
    ``train.engine: sequential`` get a group of their own."""
    rest = {k: v for k, v in record.items() if k not in ("seeds", "out")}
    train = dict(rest.get("train") or {})
    if train.get("engine") == "sequential":
        return json.dumps(record, sort_keys=True, default=str)
    rest["train"] = {k: v for k, v in train.items() if k not in STACKED_TRAIN_KEYS}
    return json.dumps(rest, sort_keys=True, default=str)


def make_bundles(records: Sequence[dict[str, Any]], size: int) -> list[list[int]]:
    """Indices of ``records`` in bundles that train as one stack: each stack group's records in grid
    order, cut every ``size`` records. A function of the whole grid, not of what is left to run, so
    a resumed grid trains its runs in the same company as an uninterrupted one."""
    if size < 1:
        raise UserError("the stack size must be at least 1")
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(stack_group(record), []).append(i)
    return [members[k : k + size] for members in groups.values() for k in range(0, len(members), size)]


def run_bundle(records: Sequence[dict[str, Any]]) -> list[tuple[Outcome | Literal["error"], str]]:
    """Run the unfinished, unlocked records of a bundle as one stacked fit (``run_fits``); per record
    ``(outcome, error message)``. When the bundle fails with a user error (one cell's bad input), each
    record is retried alone, so the failure is reported against its own cell only."""
    from ser.fusion.run import run_fits

    configs = [config_from_dict(record) for record in records]
    results: list[tuple[Outcome | Literal["error"], str]] = [("done", "")] * len(configs)
    locks: dict[int, RunLock] = {}
    try:
        for i, config in enumerate(configs):
            run_dir = Path(config.out) / config.slug()
            lock = RunLock(run_dir)
            try:
                lock.acquire()
            except RunBusyError as busy:
                logger.info("%s", busy)
                results[i] = ("busy", "")
                continue
            if is_done(run_dir):
                lock.release()
                continue
            locks[i] = lock
            record_attempt(
                run_dir,
                f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}"
                + (f", stacked with {len(configs) - 1} other runs" if len(configs) > 1 else ""),
            )
        todo = sorted(locks)
        try:
            run_fits([configs[i] for i in todo])
            for i in todo:
                results[i] = ("ran", "")
        except UserError as err:
            if len(todo) == 1:
                logger.error("%s", err)
                results[todo[0]] = ("error", str(err))
            else:
                logger.warning("the stacked bundle failed (%s); running its %d runs one by one", err, len(todo))
                for i in todo:
                    try:
                        run_fits([configs[i]])
                        results[i] = ("ran", "")
                    except UserError as one:
                        logger.error("%s", one)
                        results[i] = ("error", str(one))
    finally:
        for lock in locks.values():
            lock.release()
    return results


def run_jobs(records: Sequence[dict[str, Any]]) -> list[Outcome]:
    """Several records (one Slurm task of a chunked array): those of one stack group train together.
    A record that fails raises after the others ran."""
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(stack_group(record), []).append(i)
    outcomes: list[Outcome] = ["done"] * len(records)
    errors = []
    for indices in groups.values():
        for i, (outcome, error) in zip(indices, run_bundle([records[i] for i in indices]), strict=True):
            if outcome == "error":
                errors.append(error)
            else:
                outcomes[i] = outcome
    if errors:
        raise UserError("; ".join(errors))
    return outcomes


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the runner that started it dies (even by SIGKILL), so
    an interrupted grid leaves no orphaned fits holding GPUs and locks."""
    parent = os.environ.get(PARENT_ENV)
    if parent:
        tie_to_parent(int(parent), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m ser.ablate.job JOB.json\n")
        return 2
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        record = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        outcome = run_job(record)
    except (UserError, FileNotFoundError) as err:
        logger.error("%s", err)
        return 2
    return BUSY_EXIT if outcome == "busy" else 0


if __name__ == "__main__":
    sys.exit(main())
