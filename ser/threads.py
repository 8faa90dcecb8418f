"""CPU threads sized to the work, for the BLAS pools of numpy, SciPy and scikit-learn.

A BLAS library starts as many threads as the machine has cores, whatever the size of the product.
On the small problems of stage 2 (a logistic regression over 1100 x 88 features and 8 classes) the
threads cost more than they bring, even on an idle machine, and when other processes hold the
cores a product that takes microseconds on one thread waits milliseconds for its second one:
measured on 2 cores, a whole leave-one-speaker-out ``ser fit --fusion logreg`` over 24 RAVDESS
actors took 195 s with the default threads and 17.7 s with one (``benchmarks/classic_speed.py``).

So every fit runs its BLAS calls on one thread, and a problem big enough for threads to pay
([`PARALLEL_WORK`][ser.threads.PARALLEL_WORK] multiply-adds per product, measured on a logistic regression: 1 thread is
faster below it, 2 threads about even at 1.6e8) gets the cores that other processes leave idle.
The BLAS thread count does not change the numbers here (tested: the same coefficients bit for
bit with 1 and 2 threads), so it may follow the machine's load. torch's own thread count does
change them (float sums split differently), so it is a setting of the fit (``train.threads``),
never chosen from the load.

``SER_MAX_THREADS`` caps every choice: ``ser ablate`` sets it for its workers so that workers x
threads never exceed the cores. Inside a Slurm job the CPUs Slurm allocated cap it too
(``SLURM_CPUS_PER_TASK``, set by ``--cpus-per-task``, and ``SLURM_CPUS_ON_NODE``, the CPUs of the
job step on this node): many clusters run without cgroups or CPU binding (``TaskPlugin=task/none``),
where a task given 1 CPU of a 64-core node still sees all 64 in its affinity.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

MAX_THREADS_ENV = "SER_MAX_THREADS"
"""Environment variable: the most threads one process of ``ser`` may use (set by ``ser ablate``)."""

PARALLEL_WORK = 1e8
"""Multiply-adds per matrix product from which a second BLAS thread can pay (see the module doc)."""


SLURM_CPU_ENVS = ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE")
"""Environment variables of a Slurm job that cap the cores (the CPUs per task; the job step's CPUs on this node)."""

_reported: set[tuple[str, int, int]] = set()


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by the CPUs Slurm allocated
    ([`SLURM_CPU_ENVS`][ser.threads.SLURM_CPU_ENVS]) and by ``SER_MAX_THREADS``, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    for name in (*SLURM_CPU_ENVS, MAX_THREADS_ENV):
        cap = _env_cap(name)
        if cap is None or cap >= cores:
            continue
        if name != MAX_THREADS_ENV and (name, cap, cores) not in _reported:
            _reported.add((name, cap, cores))  # once per process and value, not on every call
            logger.info("threads: %s=%d caps the %d cores this process sees to %d", name, cap, cores, cap)
        cores = cap
    return max(1, cores)


def _env_cap(name: str) -> int | None:
    """The whole number in environment variable ``name`` (at least 1), or None when unset or not a number."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return max(1, int(text))
    except ValueError:
        logger.warning("%s=%r is not a whole number; ignored", name, text)
        return None


def idle_cores() -> int:
    """The usable cores that other processes leave free now, at least 1: the cores less the tasks
    running besides this process (Linux: the median of a few reads of ``/proc/loadavg``'s running
    count over about 20 ms; elsewhere the 1-minute load average, which lags and counts this process's
    own recent work)."""
    cores = usable_cores()
    others = _other_running_tasks()
    return max(1, min(cores, int(cores - others + 0.5)))


def _other_running_tasks() -> float:
    """Tasks running or runnable now, this one excluded (see ``idle_cores``)."""
    counts = []
    for _ in range(5):
        try:
            with open("/proc/loadavg", encoding="ascii") as handle:
                running = handle.read().split()[3].split("/")[0]
            counts.append(int(running) - 1)
        except (OSError, IndexError, ValueError):
            break
        time.sleep(0.005)
    if counts:
        return float(sorted(counts)[len(counts) // 2])
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def blas_threads_for(work: float) -> int:
    """Threads for BLAS products of ``work`` multiply-adds each (e.g. rows x features x classes):
    one below [`PARALLEL_WORK`][ser.threads.PARALLEL_WORK], else the idle cores."""
    return 1 if work < PARALLEL_WORK else idle_cores()


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` BLAS threads in every loaded BLAS library (restored afterwards)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, n), user_api="blas"):
        yield


def cap_torch_threads() -> None:
    """Lower torch's intra-op threads to [`usable_cores`][ser.threads.usable_cores] when it would use more (a Slurm
    task given 1 CPU on a node without CPU binding sees, and by default uses, every core of the node);
    never raises it. Extraction calls it before its first forward pass."""
    import torch

    cores = usable_cores()
    if torch.get_num_threads() > cores:
        logger.info("torch threads: %d -> %d (the CPUs this process may use)", torch.get_num_threads(), cores)
        torch.set_num_threads(cores)
