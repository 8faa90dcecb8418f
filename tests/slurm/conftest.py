"""A one-node Slurm cluster for the tests (``slurm_cluster``): its own munge daemon, ``slurm.conf``,
free ports and scratch state, ``slurmctld``/``slurmd`` in the foreground under the test session's control,
and nothing left running afterwards.

Needs root (the daemons run as root, jobs too) and the distribution's ``slurmctld``, ``slurmd``,
``munge`` and ``slurm-client`` packages (``.ci/run`` installs them); otherwise every test using the
fixture skips, naming why. Every client command reaches the cluster through ``SLURM_CONF``, set for the
session and restored afterwards, so a system Slurm or a second test session is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol", "scancel")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this folder is a ``slurm`` test."""
    folder = Path(__file__).parent
    for item in items:
        if folder in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slurm)


@dataclass
class SlurmCluster:
    """A running one-node cluster: its ``slurm.conf``, the environment client commands need, its folder."""

    conf: Path
    env: Mapping[str, str]
    root: Path
    node: str
    startup_s: float = 0.0

    def run(self, *cmd: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a client command (``sbatch``, ``scontrol``...) against this cluster; output as text."""
        result = subprocess.run(cmd, env=dict(self.env), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` of one job (or array task) as ``Key=Value`` pairs (empty when purged)."""
        out = self.run("scontrol", "-o", "show", "job", job_id, check=False).stdout
        fields: dict[str, str] = {}
        for token in out.split():
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = value
        return fields

    def wait_for(self, job_id: str, states: set[str], timeout: float = 60.0) -> str:
        """Poll until ``job_id`` is in one of ``states``; its state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job(job_id).get("JobState", "")
            if state in states:
                return state
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} still {state or 'unknown'} after {timeout:.0f} s (wanted {states})")

    def logs(self) -> str:
        """The tails of the daemons' logs, for failure messages."""
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            parts.append(f"--- {name}\n{text[-3000:]}")
        return "\n".join(parts)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _real_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(256, int(line.split()[1]) // 1024 - 1024)  # leave 1 GiB to the system
    return 1024


def _write_conf(root: Path, node: str, munge_socket: Path) -> Path:
    ctld_port, slurmd_port = _free_port(), _free_port()
    while slurmd_port == ctld_port:
        slurmd_port = _free_port()
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=sertest",
                f"SlurmctldHost={node}",
                f"SlurmctldPort={ctld_port}",
                f"SlurmdPort={slurmd_port}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={munge_socket}",
                f"StateSaveLocation={root / 'state'}",
                f"SlurmdSpoolDir={root / 'spool'}",
                f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                f"SlurmdPidFile={root / 'slurmd.pid'}",
                f"SlurmctldLogFile={root / 'slurmctld.log'}",
                f"SlurmdLogFile={root / 'slurmd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "SchedulerType=sched/backfill",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "MpiDefault=none",
                "ReturnToService=2",
                "SlurmdTimeout=30",
                "SlurmctldTimeout=30",
                "MinJobAge=60",
                "KillWait=2",
                "InactiveLimit=0",
                f"NodeName={node} CPUs={os.cpu_count() or 1} RealMemory={_real_memory_mb()} State=UNKNOWN",
                f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return conf


def _start(cmd: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A daemon in the foreground, in its own process group (so teardown can stop it and its children)."""
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the daemon's process group, SIGKILL after ``STOP_TIMEOUT_S``."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop after %s; escalating", proc.args, sig.name)


def _skip_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the one-node Slurm cluster needs root (the daemons and their jobs run as root)"
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return (
            f"Slurm/munge binaries not found: {', '.join(missing)} "
            "(apt-get install slurmctld slurmd munge slurm-client; .ci/run does it as root)"
        )
    return None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node Slurm cluster for the whole session (see the module docstring)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    root = tmp_path_factory.mktemp("slurm")
    root.chmod(0o755)  # munged and slurmd check the permissions of the folders they use
    node = socket.gethostname().split(".")[0]
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = root / "munge.socket"
    conf = _write_conf(root, node, munge_socket)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen[bytes]] = []
    cluster = SlurmCluster(conf=conf, env=env, root=root, node=node)
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        procs.append(
            _start(
                [
                    "munged",
                    "--foreground",
                    "--force",
                    f"--socket={munge_socket}",
                    f"--key-file={key}",
                    f"--pid-file={root / 'munged.pid'}",
                    f"--log-file={root / 'munged.log'}",
                    f"--seed-file={root / 'munged.seed'}",
                ],
                env,
                root / "munged.out",
            )
        )
        _wait(lambda: munge_socket.exists(), cluster, procs, "munged's socket")
        procs.append(_start(["slurmctld", "-D", "-i", "-f", str(conf)], env, root / "slurmctld.out"))
        procs.append(_start(["slurmd", "-D", "-f", str(conf)], env, root / "slurmd.out"))
        _wait(
            lambda: cluster.run("sinfo", "-h", "-o", "%t", check=False, timeout=10).stdout.strip() == "idle",
            cluster,
            procs,
            "sinfo to show the node idle",
        )
        cluster.startup_s = time.monotonic() - started
        logger.warning("slurm_cluster: started in %.1f s", cluster.startup_s)
        (root / "timings.txt").write_text(f"startup_s={cluster.startup_s:.2f}\n")
        yield cluster
    finally:
        stopping = time.monotonic()
        if procs and procs[0].poll() is None and len(procs) == 3:
            cluster.run("scancel", "--full", "--user=root", check=False, timeout=20)
        for proc in reversed(procs):
            _stop(proc)
        _stop_leftovers(conf)
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        teardown_s = time.monotonic() - stopping
        logger.warning("slurm_cluster: stopped in %.1f s", teardown_s)
        with (root / "timings.txt").open("a") as out:
            out.write(f"teardown_s={teardown_s:.2f}\n")
        left = [str(proc.args[0]) for proc in procs if proc.poll() is None] + [
            f"pid {pid}" for pid in _session_processes(conf)
        ]
        assert not left, f"still running after teardown: {left}"


def _session_processes(conf: Path) -> list[int]:
    """Live processes started under this cluster (daemons, ``slurmstepd``, job tasks): their environment
    names its ``slurm.conf``. Not this test process, nor zombies (their environment reads empty)."""
    marker = f"SLURM_CONF={conf}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker in environ:
            found.append(int(entry.name))
    return found


def _stop_leftovers(conf: Path) -> None:
    """Wait for the job steps of the stopped daemons to end; SIGKILL what is left after ``STOP_TIMEOUT_S``."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _session_processes(conf) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _session_processes(conf):
        logger.warning("killing pid %d, left over by the Slurm test cluster", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while _session_processes(conf) and time.monotonic() < deadline:
        time.sleep(0.1)


def _wait(ready: object, cluster: SlurmCluster, procs: list[subprocess.Popen[bytes]], what: str) -> None:
    """Poll ``ready()`` until true; fail with the daemons' logs after ``START_TIMEOUT_S`` or when one exits."""
    assert callable(ready)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        dead = [proc.args[0] for proc in procs if proc.poll() is not None]
        if dead:
            raise AssertionError(f"{', '.join(map(str, dead))} exited while waiting for {what}\n{cluster.logs()}")
        if ready():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {START_TIMEOUT_S:.0f} s waiting for {what}\n{cluster.logs()}")
