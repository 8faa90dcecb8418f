"""Run grid jobs on this machine: N at once, k per GPU, in long-lived worker processes.

* **Slots.** With GPUs (``CUDA_VISIBLE_DEVICES`` / ``nvidia-smi``) there are ``jobs_per_gpu`` slots
  per GPU, and a job starts on a GPU only while it has at least ``gpu_min_free_mib`` free (other
  users' work counts: this is a shared box), less ``gpu_min_free_mib`` held for each job started
  there whose memory no reading has shown yet (so one reading never starts every idle slot at once).
  Workers get ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (nvidia-smi's numbering) and no torchrun variables.
  Without GPUs, or with ``device="cpu"``, there are ``workers`` CPU slots (default: one per core; the
  fits use one thread each), never more than the cores hold at each fit's ``train.threads`` (workers x
  threads <= cores; each worker's BLAS pools are capped at its share through ``SER_MAX_THREADS``,
  ``ser.threads``).
* **Idempotent.** Finished runs (``metrics.json``) are skipped; a run locked by a live process (a
  second runner, another user, a Slurm node) is left to it and waited for; a crashed run is redone.
* **Workers.** Each slot has one ``ser.ablate.worker`` process (pinned to its GPU through
  ``CUDA_VISIBLE_DEVICES``) that imports torch once and runs job after job; a worker that dies
  (out-of-memory kill, native crash) costs its current job and is replaced.
* **Failure-tolerant.** A job that fails is reported with the end of its ``ablate.log`` and the
  grid goes on; the summary lists every failure.
* **Interruptible.** Ctrl-C (or SIGTERM) stops the running jobs and returns; running the grid again
  resumes it. Jobs die with the runner even if it is SIGKILLed (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ser.ablate.devices import Gpu, discover_gpus, free_memory
from ser.ablate.grid import Job
from ser.ablate.job import PARENT_ENV, make_bundles
from ser.ablate.state import is_done, is_locked
from ser.atomic_files import write_json
from ser.threads import MAX_THREADS_ENV, usable_cores

logger = logging.getLogger(__name__)

Echo = Callable[[str], None]


@dataclass(kw_only=True)
class RunnerOptions:
    """How a local grid run uses the machine."""

    workers: int | None = None
    """Most jobs at once. Default: one per CPU core without GPUs; GPUs x jobs_per_gpu with them."""
    jobs_per_gpu: int = 1
    """Jobs packed onto each GPU at once (the small heads leave most of a GPU idle)."""
    gpu_min_free_mib: int = 2048
    """Start a job on a GPU only while it has this much memory free (0 turns the guard off)."""
    device: str = "auto"
    """auto: GPUs when there are any, else CPU; cpu: never use a GPU."""
    stack: bool = True
    """Send the queued jobs of one bundle (``ser.ablate.job.make_bundles``: cells that differ only in
    seeds or per-member training settings such as lr) to a worker together, to train as one stacked
    fit (``ser.fusion.engine``)."""
    stack_size: int = 32
    """Most jobs in one stacked bundle (bundles are cut from the whole grid: see
    ``ser.ablate.job.make_bundles``)."""
    wait_for_others: bool = True
    """Wait for runs that another process is running (else report them as not run here)."""
    poll_seconds: float = 0.5
    """How often finished jobs and free GPUs are checked."""
    python: str = sys.executable
    """The Python interpreter that runs the worker processes."""


@dataclass
class GridOutcome:
    """What a grid run did."""

    total: int = 0
    """Jobs in the grid."""
    already_done: list[Job] = field(default_factory=list)
    """Jobs finished before this run."""
    ran: list[Job] = field(default_factory=list)
    """Jobs this run finished."""
    done_elsewhere: list[Job] = field(default_factory=list)
    """Jobs another process finished meanwhile."""
    failed: list[tuple[Job, str]] = field(default_factory=list)
    """Jobs that raised, with the error."""
    not_run: list[Job] = field(default_factory=list)
    """Jobs not run here: left to the process running them, or not reached before a stop."""
    interrupted: bool = False
    """True when the run was stopped (Ctrl-C) before the end."""
    seconds: float = 0.0
    """Wall time."""

    @property
    def complete(self) -> bool:
        """True when every job is finished."""
        return not (self.failed or self.not_run or self.interrupted)

    def summary(self) -> str:
        return (
            f"{self.total} jobs: {len(self.ran)} ran, {len(self.already_done)} already done, "
            f"{len(self.done_elsewhere)} done by another process, {len(self.failed)} failed, "
            f"{len(self.not_run)} not run" + (" (interrupted)" if self.interrupted else "") + f", {self.seconds:.0f} s"
        )


DISTRIBUTED_ENV = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""torchrun's variables: a worker is no rank of the runner's job (``LOCAL_RANK`` would make ``auto``/``cuda``
mean ``cuda:LOCAL_RANK`` while the worker sees one GPU, ``ser.devices.resolve_device``)."""


def worker_env(gpu: str | None, max_threads: int) -> dict[str, str]:
    """The environment of a worker process pinned to ``gpu`` (an nvidia-smi index or UUID; None: no GPU).

    nvidia-smi numbers GPUs in PCI bus order, CUDA by default fastest first: ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
    makes an index in ``CUDA_VISIBLE_DEVICES`` name the GPU nvidia-smi reported (and the guard measured)."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env[PARENT_ENV] = str(os.getpid())
    env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env.setdefault("OMP_NUM_THREADS", "1")
    env[MAX_THREADS_ENV] = str(max_threads)  # the worker's share of the cores (ser.threads)
    return env


class _Worker:
    """One ``ser.ablate.worker`` process pinned to a slot's device, fed one job at a time."""

    def __init__(self, gpu: str | None, options: RunnerOptions, log_path: Path, max_threads: int) -> None:
        env = worker_env(gpu, max_threads)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            # A new session: the terminal's Ctrl-C reaches the runner only, which stops the workers itself.
            self.process = subprocess.Popen(
                [options.python, "-m", "ser.ablate.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self._buffer = b""

    def send(self, specs: list[Path]) -> bool:
        """Hand over one job or a bundle; False when the worker is gone."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps({"specs": [str(spec) for spec in specs]}) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def answer(self) -> dict[str, Any] | None:
        """The worker's answer for its current job, if it has written one."""
        assert self.process.stdout is not None
        try:
            chunk = os.read(self.process.stdout.fileno(), 65536)
        except BlockingIOError:
            chunk = b""
        self._buffer += chunk
        if b"\n" not in self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class _Slot:
    gpu: str | None
    """GPU id for CUDA_VISIBLE_DEVICES, None for a CPU slot."""
    worker: _Worker | None = None
    jobs: list[Job] = field(default_factory=list)
    """The job, or the bundle of jobs, the worker is running (empty when idle)."""
    started: float = 0.0


@dataclass(frozen=True)
class _Reservation:
    """GPU memory held for a job just started, until a reading of the GPU shows the job's own."""

    gpu: str
    free_at_start: int
    """The GPU's free MiB when the job started, less what earlier reservations held."""


def plan_slots(gpus: list[Gpu], options: RunnerOptions) -> list[str | None]:
    """The slots a run gets: ``jobs_per_gpu`` per GPU (capped by ``workers``), or CPU slots."""
    if options.jobs_per_gpu < 1:
        raise ValueError("jobs_per_gpu must be at least 1")
    if options.device == "cpu" or not gpus:
        return [None] * max(1, options.workers or usable_cores())
    slots: list[str | None] = [g.id for _ in range(options.jobs_per_gpu) for g in gpus]
    return slots[: options.workers] if options.workers else slots


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def _write_spec(job: Job) -> Path:
    job.run_dir.mkdir(parents=True, exist_ok=True)
    spec = job.run_dir / "job.json"
    write_json(spec, job.record, indent=1, default=str)
    return spec


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. from a batch system) stops the grid like Ctrl-C does; Ctrl-C (SIGINT) stops it
    even when the runner was started with SIGINT ignored (a shell's background job)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_workers(slots: list[_Slot], grace: float = 10.0) -> None:
    """Terminate every worker (SIGTERM, then SIGKILL after ``grace`` seconds)."""
    workers = [slot.worker for slot in slots if slot.worker is not None]
    for worker in workers:
        if worker.alive():
            worker.process.terminate()
    deadline = time.monotonic() + grace
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
    for slot in slots:
        slot.worker = None


class _Scheduler:
    """The state of one local grid run (queue, deferred runs, slots) and its steps."""

    def __init__(self, jobs: list[Job], options: RunnerOptions, echo: Echo, log_dir: Path) -> None:
        self.options, self.echo, self.log_dir = options, echo, log_dir
        self.gpus = discover_gpus() if options.device != "cpu" else []
        self.slots = [_Slot(gpu) for gpu in plan_slots(self.gpus, options)]
        self.cpu_note = ""
        if not self.gpus:
            self.slots, self.cpu_note = self._fit_cores(jobs)
        self.outcome = GridOutcome(total=len(jobs))
        self.started = time.monotonic()
        self.queue: deque[Job] = deque()
        for job in jobs:
            (self.outcome.already_done if is_done(job.run_dir) else self.queue).append(job)
        self.deferred: list[Job] = []
        self.bundle: dict[Path, list[Job]] = {}
        if options.stack:
            for indices in make_bundles([job.record for job in jobs], options.stack_size):
                for i in indices:
                    self.bundle[jobs[i].run_dir] = [jobs[k] for k in indices]
        self._last_memory_note = 0.0
        self.reserved: dict[int, _Reservation] = {}
        """Slot index -> the GPU memory held for the job it started (``_reserve``)."""

    def _fit_cores(self, jobs: list[Job]) -> tuple[list[_Slot], str]:
        """CPU slots such that workers x each fit's torch threads (``train.threads``) stay within the
        cores, with a note when ``--workers`` asked for more."""
        cores = usable_cores()
        threads = max((job.config.train.threads or cores for job in jobs), default=1)
        most = max(1, cores // threads)
        if len(self.slots) <= most:
            return self.slots, ""
        note = (
            f" (--workers {len(self.slots)} x train.threads {threads} would run {len(self.slots) * threads} "
            f"threads on {cores} cores: {most} worker{'s' * (most != 1)} instead)"
        )
        return self.slots[:most], note

    def eta(self) -> str:
        """Time left at the mean pace of the jobs run here so far (empty before the first one ends)."""
        done = len(self.outcome.ran) + len(self.outcome.failed)
        left = len(self.queue) + len(self.deferred) + sum(len(slot.jobs) for slot in self.slots)
        if not done or not left:
            return ""
        seconds = (time.monotonic() - self.started) / done * left
        return f", about {seconds / 60:.0f} min left" if seconds >= 90 else f", about {seconds:.0f} s left"

    def describe(self) -> str:
        where = (
            f"{len(self.slots)} slots on GPUs {', '.join(g.id for g in self.gpus)}"
            if self.gpus
            else f"{len(self.slots)} CPU worker{'s' * (len(self.slots) != 1)}{self.cpu_note}"
        )
        return (
            f"{self.outcome.total} jobs, {len(self.outcome.already_done)} already done, {len(self.queue)} to run "
            f"on {where}"
        )

    def _count(self) -> str:
        o = self.outcome
        return f"[{len(o.already_done) + len(o.ran) + len(o.done_elsewhere) + len(o.failed)}/{o.total}]"

    def _fail(self, job: Job, reason: str) -> None:
        self.outcome.failed.append((job, reason))
        self.echo(f"{self._count()} FAILED  {job.label()} seed {job.seed}: {reason.splitlines()[0]}")

    def _settle(self, slot: _Slot, answer: dict[str, Any]) -> None:
        jobs, seconds = slot.jobs, time.monotonic() - slot.started
        slot.jobs = []
        results = answer.get("results") or [answer] * len(jobs)
        for job, result in zip(jobs, results, strict=True):
            self._settle_job(job, result, seconds, len(jobs))

    def _settle_job(self, job: Job, answer: dict[str, Any], seconds: float, bundled: int) -> None:
        status = answer.get("status")
        if status == "busy":
            self.deferred.append(job)
        elif status == "done" and is_done(job.run_dir):
            self.outcome.done_elsewhere.append(job)
        elif status == "ran" and is_done(job.run_dir):
            self.outcome.ran.append(job)
            together = f", stacked with {bundled - 1} others" if bundled > 1 else ""
            self.echo(
                f"{self._count()} done    {job.label()} seed {job.seed} ({seconds:.1f} s{together}) -> "
                f"{job.run_dir.name}{self.eta()}"
            )
        else:
            log = job.run_dir / "ablate.log"
            self._fail(job, f"{answer.get('error', 'no result written')} (end of {log}:\n{_tail(log)})")

    def reap(self) -> None:
        for slot in self.slots:
            if slot.worker is None or not slot.jobs:
                continue
            answer = slot.worker.answer()
            if answer is not None:
                self._settle(slot, answer)
            elif not slot.worker.alive():  # killed (out of memory?) or crashed hard: costs this job only
                code = slot.worker.process.returncode
                slot.worker = None
                self._settle(
                    slot,
                    {
                        "status": "error",
                        "error": f"the worker process died with exit status {code} "
                        "(killed, e.g. out of memory, or a crash in native code)",
                    },
                )

    def revisit_deferred(self) -> None:
        """Runs another process holds: finished by it, given up by it (redo here), or still running."""
        still = []
        for job in self.deferred:
            if is_done(job.run_dir):
                self.outcome.done_elsewhere.append(job)
                self.echo(f"{self._count()} done elsewhere {job.label()} seed {job.seed}")
            elif not is_locked(job.run_dir):
                self.queue.appendleft(job)
            elif self.options.wait_for_others:
                still.append(job)
            else:
                self.outcome.not_run.append(job)
        self.deferred = still

    def _held(self, gpu: str) -> int:
        """MiB of ``gpu`` held for jobs started on it whose memory no reading has shown yet."""
        return self.options.gpu_min_free_mib * sum(1 for r in self.reserved.values() if r.gpu == gpu)

    def _update_reservations(self, free: dict[str, int | None]) -> None:
        """Drop the reservations of jobs that ended, and of jobs whose memory shows in this reading (the
        GPU's free memory fell by the guard since the job started)."""
        guard = self.options.gpu_min_free_mib
        for index, held in list(self.reserved.items()):
            reading = free.get(held.gpu)
            if not self.slots[index].jobs or (reading is not None and reading <= held.free_at_start - guard):
                del self.reserved[index]

    def _gpu_has_room(self, slot: _Slot, free: dict[str, int | None]) -> bool:
        if slot.gpu is None or self.options.gpu_min_free_mib <= 0:
            return True
        measured = free.get(slot.gpu)
        if measured is None:
            return True
        held = self._held(slot.gpu)
        if measured - held >= self.options.gpu_min_free_mib:
            return True
        now = time.monotonic()
        if now - self._last_memory_note > 60:
            self._last_memory_note = now
            self.echo(
                f"waiting: GPU {slot.gpu} has {measured} MiB free"
                + (f" ({held} MiB of it held for jobs just started)" if held else "")
                + f", below the {self.options.gpu_min_free_mib} MiB guard (--gpu-min-free)"
            )
        return False

    def _reserve(self, index: int, slot: _Slot, free: dict[str, int | None]) -> None:
        """Hold the guard's memory on the slot's GPU for the job just started there, until a reading
        shows the job's own memory (a worker takes seconds to allocate: without this, every idle slot
        of a GPU would start on one reading of its free memory)."""
        measured = free.get(slot.gpu) if slot.gpu is not None else None
        if measured is not None and slot.jobs and self.options.gpu_min_free_mib > 0:
            assert slot.gpu is not None
            self.reserved[index] = _Reservation(slot.gpu, measured - self._held(slot.gpu))

    def _start(self, index: int, slot: _Slot, jobs: list[Job]) -> None:
        specs = [_write_spec(job) for job in jobs]
        for _ in range(2):  # a worker that died while idle is replaced once
            if slot.worker is None or not slot.worker.alive():
                slot.worker = _Worker(
                    slot.gpu,
                    self.options,
                    self.log_dir / f"worker-{index}.log",
                    max(1, usable_cores() // len(self.slots)),
                )
            if slot.worker.send(specs):
                slot.jobs, slot.started = list(jobs), time.monotonic()
                return
            slot.worker = None
        for job in jobs:
            self._fail(job, f"could not start a worker process (see {self.log_dir / f'worker-{index}.log'})")

    def _companions(self, job: Job) -> list[Job]:
        """``job`` and the queued jobs of its bundle that can start now."""
        bundle = {other.run_dir for other in self.bundle.get(job.run_dir, [job])}
        chosen: list[Job] = [job]
        rest: deque[Job] = deque()
        for other in self.queue:
            if other.run_dir in bundle and not is_done(other.run_dir) and not is_locked(other.run_dir):
                chosen.append(other)
            else:
                rest.append(other)
        self.queue = rest
        return chosen

    def launch_ready(self) -> None:
        idle = [(i, slot) for i, slot in enumerate(self.slots) if not slot.jobs]
        if not idle or not self.queue:
            return
        gpu_idle = any(slot.gpu is not None for _, slot in idle)
        free = free_memory(self.gpus) if gpu_idle and self.options.gpu_min_free_mib > 0 else {}
        self._update_reservations(free)
        for index, slot in idle:
            if not self.queue:
                break
            if not self._gpu_has_room(slot, free):
                continue
            job = self.queue.popleft()
            if is_done(job.run_dir):
                self.outcome.done_elsewhere.append(job)
            elif is_locked(job.run_dir):
                self.deferred.append(job)
            else:
                self._start(index, slot, self._companions(job))
                self._reserve(index, slot, free)

    def busy(self) -> bool:
        return bool(self.queue or self.deferred or any(s.jobs for s in self.slots))

    def close(self) -> None:
        """Stop the workers; jobs they were running (only when interrupted) are not run."""
        running = [job for slot in self.slots for job in slot.jobs]
        _stop_workers(self.slots)
        for slot in self.slots:
            slot.jobs = []
        self.outcome.not_run += running + list(self.queue) + self.deferred
        self.queue.clear()
        self.deferred = []


def run_grid(
    jobs: list[Job], options: RunnerOptions | None = None, echo: Echo = logger.info, log_dir: Path | None = None
) -> GridOutcome:
    """Run every job that is not finished yet; returns what happened (see
    [`GridOutcome`][ser.ablate.runner.GridOutcome]).

    ``log_dir`` holds the workers' own logs (default ``<first job's out>/.workers``)."""
    options = options or RunnerOptions()
    start = time.monotonic()
    if log_dir is None:
        log_dir = (Path(jobs[0].config.out) if jobs else Path(".")) / ".workers"
    scheduler = _Scheduler(jobs, options, echo, log_dir)
    echo(scheduler.describe())
    with _sigterm_as_interrupt():
        try:
            while scheduler.busy():
                scheduler.reap()
                scheduler.revisit_deferred()
                scheduler.launch_ready()
                if scheduler.busy():
                    time.sleep(options.poll_seconds)
        except KeyboardInterrupt:
            echo("interrupted: stopping running jobs (run the same command again to resume)")
            scheduler.outcome.interrupted = True
        finally:
            scheduler.close()
    scheduler.outcome.seconds = time.monotonic() - start
    return scheduler.outcome
