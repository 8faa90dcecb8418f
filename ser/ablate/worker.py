"""A long-lived job process of the local runner: imports torch, scikit-learn and matplotlib once,
then runs one grid job after another (``python -m ser.ablate.worker``).

Starting a fresh Python per job would cost several seconds of imports for fits that often take
less; a worker pays that once. Isolation stays: a job that raises is reported and the worker goes
on; a job that kills its process (segfault, out-of-memory kill) costs that worker, which the
runner replaces.

Protocol: one JSON line per request on stdin, ``{"specs": ["<run dir>/job.json", ...]}`` (one job,
or a bundle of one stack group that trains as one stacked fit: ``ser.ablate.job.run_bundle``); one
JSON line per answer on the original stdout, ``{"specs": [...], "results": [{"status":
"ran"|"done"|"busy"|"error", "error": "..."}, ...]}``. A job's warnings, errors and tracebacks go to
``<run dir>/ablate.log`` (its ``train.log`` has the rest; stray prints go to the worker's stderr),
so the answer channel stays clean.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from ser.ablate.job import die_with_parent, run_bundle
from ser.devices import free_cached_memory
from ser.errors import UserError

logger = logging.getLogger(__name__)


def run_specs(specs: list[Path]) -> dict[str, Any]:
    """Run the jobs described by ``specs`` (one bundle) with their logs in their run directories;
    never raises for a job's own failure."""
    logs = []
    root = logging.getLogger()
    for spec in specs:
        log = logging.FileHandler(spec.parent / "ablate.log", encoding="utf-8")
        log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.setLevel(logging.WARNING)  # the fit's own train.log has the rest
        root.addHandler(log)
        logs.append(log)
    answer: dict[str, Any] = {"specs": [str(s) for s in specs]}
    try:
        records = [json.loads(spec.read_text(encoding="utf-8")) for spec in specs]
        answer["results"] = [{"status": status, "error": error} for status, error in run_bundle(records)]
    except (UserError, FileNotFoundError, ValueError) as err:
        logger.error("%s", err)
        answer["results"] = [{"status": "error", "error": str(err)}] * len(specs)
    except Exception as err:  # a bug or a runtime failure inside the fit: report it, keep serving
        logger.error("job failed:\n%s", traceback.format_exc())
        answer["results"] = [{"status": "error", "error": f"{type(err).__name__}: {err}"}] * len(specs)
    finally:
        for log in logs:
            root.removeHandler(log)
            log.close()
        free_cached_memory()
    return answer


def serve(requests: IO[str], answers: IO[str]) -> None:
    for line in requests:
        if not line.strip():
            continue
        answer = run_specs([Path(spec) for spec in json.loads(line)["specs"]])
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main() -> int:
    die_with_parent()
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the answers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(sys.stdin, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
