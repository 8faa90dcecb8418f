"""Process plumbing shared by the stages (standard library only).

* [`tie_to_parent`][ser.processes.tie_to_parent]: Linux kills a child process (a decoding worker, a grid job) when the
  process that started it dies, even by SIGKILL, so nothing is left running and holding files or GPUs.
* [`StopRequest`][ser.processes.StopRequest]: SIGINT and SIGTERM become a flag that a long loop checks between items, so
  an interrupted run stops at a safe point (no item cut in half inside a C library that would swallow
  the interrupt), flushes what it has and says how to resume. A second signal stops at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal the kernel sends this process when its parent dies (linux/prctl.h)."""


def tie_to_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; exit at once when the parent
    ``parent_pid`` is already gone. Returns False where this is not possible (not Linux, no prctl)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig) != 0:
            return False
    except (OSError, AttributeError) as err:
        logger.warning("cannot tie process %d to its parent (%s)", os.getpid(), err)
        return False
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    return True


def worker_setup(parent_pid: int, worker_id: int = 0) -> None:
    """For worker processes of a command (a DataLoader ``worker_init_fn``, which passes ``worker_id``): die
    with the command, and leave Ctrl-C and SIGTERM to it (the terminal sends SIGINT, a scheduler's cancel
    SIGTERM, to the whole process group; the command stops at a safe point and stops its workers itself,
    and they die with it at the latest)."""
    tie_to_parent(parent_pid, signal.SIGKILL)
    for sig in StopRequest.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class StopRequest:
    """Within ``with StopRequest() as stop:``, SIGINT / SIGTERM set ``stop.requested`` (the loop checks it
    between items); the second signal raises `KeyboardInterrupt` at once. Outside the main
    thread (where handlers cannot be installed) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, what: str = "the run") -> None:
        self.what = what
        self.requested: str | None = None
        """Name of the signal that asked to stop (None: keep going)."""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = name
        logger.warning(
            "%s received: %s stops after the current batch and keeps what it has (again to stop at once)",
            name,
            self.what,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
