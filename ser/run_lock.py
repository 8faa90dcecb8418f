"""The per-run lock that keeps two processes off one run directory (``ser fit`` and ``ser ablate`` both take it).

While a fit writes a run directory it holds an exclusive ``flock`` on ``<run dir>/.lock``; the OS
drops the lock when the process dies, however it dies, so a killed run never stays locked, and a live
one is left to its owner (this user, another user or another machine, as long as the file system
honours ``flock``: local disks and NFS v4 do). A process that already holds a run's lock (an
``ser ablate`` worker running its jobs) takes it again at no cost: [`held`][ser.run_lock.held] says so.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

LOCK_NAME = ".lock"

_HELD: set[Path] = set()
"""Run directories whose lock this process holds (resolved paths)."""


def held(run_dir: Path) -> bool:
    """True when this process holds ``run_dir``'s lock already."""
    return Path(run_dir).resolve() in _HELD


class RunBusyError(Exception):
    """Another live process holds the run's lock."""


class RunLock:
    """Exclusive, non-blocking lock on a run directory (``with RunLock(dir): ...``)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise RunBusyError(f"{self.run_dir} is being run by {holder(self.run_dir)}") from err
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._fd = fd
        _HELD.add(self.run_dir.resolve())

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
            _HELD.discard(self.run_dir.resolve())

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def holder(run_dir: Path) -> str:
    """Who wrote the lock file last (``pid N on HOST``), for messages."""
    try:
        return (Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8").strip() or "another process"
    except OSError:
        return "another process"
