"""Progress of a fit, for whoever watches it: units of work done, and one line per member as it ends.

The unit is an epoch of one member for neural heads and a grid point (one estimator fitted) of
one member for classic heads, so a fit's total is known before it trains (members that stop early
count their remaining epochs as done). Library code reports to [`current`][ser.fusion.progress.current], which does
nothing unless a caller installed a reporter with [`reporting`][ser.fusion.progress.reporting] (``ser fit`` and
``ser demo`` install [`ConsoleProgress`][ser.fusion.progress.ConsoleProgress], which draws a bar on stderr; ``--quiet``
installs none).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO


class Progress:
    """The silent reporter (the default): every method does nothing."""

    def start(self, total: int, what: str) -> None:
        """A fit of ``total`` units begins (``what``: e.g. ``logreg: 20 members``)."""

    def advance(self, units: int = 1) -> None:
        """``units`` more units are done."""

    def member_done(self, line: str) -> None:
        """A member finished training and selection (``line`` says which and how it did)."""

    def close(self) -> None:
        """The fit's training is over."""


_CURRENT: ContextVar[Progress] = ContextVar("ser_fit_progress", default=Progress())  # noqa: B039 (stateless)


def current() -> Progress:
    """The reporter of the running fit (a silent one unless [`reporting`][ser.fusion.progress.reporting] installed
    another)."""
    return _CURRENT.get()


def silence() -> None:
    """Report nothing from here on in this context (a forked worker process: its parent reports)."""
    _CURRENT.set(Progress())


@contextmanager
def reporting(progress: Progress) -> Iterator[Progress]:
    """Report the fits run inside the block to ``progress`` (closed at the end)."""
    token = _CURRENT.set(progress)
    try:
        yield progress
    finally:
        progress.close()
        _CURRENT.reset(token)


class ConsoleProgress(Progress):
    """A tqdm bar on ``stream`` (stderr by default) with the members' lines printed above it as they end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.bar: Any = None
        self.started = time.monotonic()

    def start(self, total: int, what: str) -> None:
        from tqdm import tqdm

        self.close()
        tqdm.monitor_interval = 0  # no monitor thread: classic fits fork worker processes (ser.fusion.classic_pool)
        self.bar = tqdm(
            total=total,
            desc=what,
            unit="step",
            file=self.stream,
            mininterval=0.5,
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]",
        )

    def advance(self, units: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(units)

    def member_done(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
