"""One grid job: lock the run directory, skip it if finished, else run the fit.

The local runner calls [`run_job`][ser.ablate.job.run_job] inside its worker processes (``ser.ablate.worker``), Slurm
tasks call [`run_jobs`][ser.ablate.job.run_jobs] through submitit, and one job can be re-run by hand with
``python -m ser.ablate.job <run dir>/job.json``. Either way the lock makes a second runner, user
or node skip a run that is in progress, and a run killed half-way is redone by the next runner.

Exit status of that command: 0 ran or already done, 2 bad input (message on stderr), 75 the run
is locked by someone else, anything else a crash (traceback on stderr).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ser.ablate.state import RunBusyError, RunLock, is_done, record_attempt
from ser.devices import free_cached_memory, is_out_of_memory
from ser.errors import UserError
from ser.fusion.config import PinnedRun, config_from_dict
from ser.processes import tie_to_parent

if TYPE_CHECKING:
    from ser.fusion.config import FitConfig

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
    record is retried alone, so the failure is reported against its own cell only; when it runs out of
    GPU memory it is split in halves, down to single runs, and a single run that still does not fit has its
    ``train.batch_size`` halved in its own run directory (``_fit_parts``)."""
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
        _fit_parts(configs, sorted(locks), results)
    finally:
        for lock in locks.values():
            lock.release()
    return results


def _fit_parts(
    configs: list[FitConfig], todo: list[int], results: list[tuple[Outcome | Literal["error"], str]]
) -> None:
    """Fit ``configs[i]`` for ``i`` in ``todo`` as one stack, filling ``results``. A user error makes each
    run go alone; running out of GPU memory splits the stack in halves (then single runs); a run that does
    not fit alone is retried with its ``train.batch_size`` halved, down to 1, in its grid cell's run
    directory (``halve_batch``; ``configs[i]`` is replaced), and fails with a line that says what to lower
    when it does not fit even then."""
    if not todo:
        return
    failure = _try_fits([configs[i] for i in todo])
    if failure is None:
        for i in todo:
            results[i] = ("ran", "")
        return
    kind, message = failure
    if kind == "memory":
        free_cached_memory()  # the failed stack's tensors are gone with its traceback (_try_fits)
    if len(todo) == 1:
        config = configs[todo[0]]
        if kind == "memory" and config.train.batch_size > 1:
            configs[todo[0]] = smaller = halve_batch(config)
            logger.warning(
                "%s: out of GPU memory alone at train.batch_size=%d (%s); retrying it with train.batch_size=%d "
                "(recorded as a departure in its run)",
                smaller.pinned.name if smaller.pinned else config.slug(),
                config.train.batch_size,
                message,
                smaller.train.batch_size,
            )
            _fit_parts(configs, todo, results)
            return
        if kind == "memory":
            cell = config.pinned.batch_size if config.pinned else config.train.batch_size
            message = (
                f"{config.pinned.name if config.pinned else config.slug()}: out of GPU memory even alone at "
                f"train.batch_size={config.train.batch_size}"
                + (f" (halved from the cell's {cell})" if cell != config.train.batch_size else "")
                + f" ({message}); "
                + ("lower train.batch_size for this cell, " if config.train.batch_size > 1 else "")
                + "run fewer jobs per GPU (--jobs-per-gpu) or free the GPU"
            )
        logger.error("%s", message)
        results[todo[0]] = ("error", message)
    elif kind == "memory":
        half = (len(todo) + 1) // 2
        logger.warning(
            "out of GPU memory stacking %d runs (%s); splitting them into stacks of %d and %d",
            len(todo),
            message,
            half,
            len(todo) - half,
        )
        _fit_parts(configs, todo[:half], results)
        _fit_parts(configs, todo[half:], results)
    else:
        logger.warning("the stacked bundle failed (%s); running its %d runs one by one", message, len(todo))
        for i in todo:
            _fit_parts(configs, [i], results)


def halve_batch(config: FitConfig) -> FitConfig:
    """``config`` with half its ``train.batch_size`` (at least 1), pinned to the grid cell's run directory
    (``FitConfig.pinned``: the batch size is part of the slug) so the cell ends done where ``ser ablate``
    looks for it; the fit records the change among its departures (``ser.fusion.departures``)."""
    pinned = config.pinned or PinnedRun(name=config.slug(), batch_size=config.train.batch_size)
    train = dataclasses.replace(config.train, batch_size=max(1, config.train.batch_size // 2))
    return dataclasses.replace(config, train=train, pinned=pinned)


def _try_fits(configs: list[FitConfig]) -> tuple[Literal["user", "memory"], str] | None:
    """Run ``configs`` as one stacked fit: None when it ran, else the kind and text of the failure. Only
    the text of an out-of-memory error is kept (its frames are cleared), so the stack's GPU tensors are
    freed before anything is retried; any other error is raised."""
    from ser.fusion.run import run_fits

    try:
        run_fits(configs)
    except UserError as err:
        return "user", str(err)
    except RuntimeError as err:
        if not is_out_of_memory(err):
            raise
        traceback.clear_frames(err.__traceback__)
        return "memory", f"{type(err).__name__}: {err}"
    return None


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
