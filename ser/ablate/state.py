"""Where a run directory stands, and the per-run lock that keeps two processes off one run.

A run is **done** when its ``metrics.json`` exists (``ser fit`` writes it last, atomically). While a
job runs it holds an exclusive ``flock`` on ``<run dir>/.lock``; the OS drops the lock when the
process dies, however it dies, so a killed run reads as **crashed** (redone next time) and a live one
as **running** (left to its owner, whoever and wherever that is, as long as the file system honours
``flock``: local disks and NFS v4 do).
"""

from __future__ import annotations

import enum
import os
import socket
import time
from pathlib import Path

from ser.run_lock import LOCK_NAME, RunBusyError, RunLock, holder

__all__ = [
    "ATTEMPTS_NAME",
    "LOCK_NAME",
    "RunBusyError",
    "RunLock",
    "RunState",
    "attempts",
    "holder",
    "is_done",
    "is_locked",
    "record_attempt",
    "run_state",
]

ATTEMPTS_NAME = "attempts.log"


class RunState(enum.Enum):
    DONE = "done"
    RUNNING = "running"
    """Locked by a live process (this user, another user or another machine)."""
    CRASHED = "crashed"
    """Started before but neither finished nor running: will be redone."""
    TODO = "todo"


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / "metrics.json").is_file()


def is_locked(run_dir: Path) -> bool:
    """True while a live process holds the run's lock (probed without keeping it)."""
    if not (Path(run_dir) / LOCK_NAME).exists():
        return False
    probe = RunLock(run_dir)
    try:
        probe.acquire()
    except RunBusyError:
        return True
    probe.release()
    return False


def run_state(run_dir: Path) -> RunState:
    run_dir = Path(run_dir)
    if is_done(run_dir):
        return RunState.DONE
    if is_locked(run_dir):
        return RunState.RUNNING
    if (run_dir / ATTEMPTS_NAME).exists():
        return RunState.CRASHED
    return RunState.TODO


def record_attempt(run_dir: Path, note: str = "") -> None:
    """Append one line per started attempt (``attempts.log``: time, host, pid, note)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(Path(run_dir) / ATTEMPTS_NAME, "a", encoding="utf-8") as log:
        log.write(f"{stamp} {socket.gethostname()} pid {os.getpid()} {note}".rstrip() + "\n")


def attempts(run_dir: Path) -> list[str]:
    path = Path(run_dir) / ATTEMPTS_NAME
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []
