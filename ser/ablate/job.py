"""One grid job: lock the run directory, skip it if finished, else run the fit.

The local runner calls :func:`run_job` inside its worker processes (``ser.ablate.worker``), Slurm
tasks call :func:`run_jobs` through submitit, and one job can be re-run by hand with
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
    ``ser fit`` would use for the same config."""
    from ser.fusion.run import run_fit

    config = config_from_dict(record)
    run_dir = Path(config.out) / config.slug()
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except RunBusyError as busy:
        logger.info("%s", busy)
        return "busy"
    try:
        if is_done(run_dir):
            return "done"
        record_attempt(run_dir, f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
        run_fit(config)
        return "ran"
    finally:
        lock.release()


def run_jobs(records: Sequence[dict[str, Any]]) -> list[Outcome]:
    """Several records one after the other (one Slurm task of a chunked array)."""
    return [run_job(record) for record in records]


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
