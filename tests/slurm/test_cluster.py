"""The one-node cluster itself: arrays run with their environment, ``scancel`` ends a running job."""

from __future__ import annotations

from pathlib import Path

from tests.slurm.conftest import SlurmCluster


def test_an_array_runs_every_task_with_its_environment(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = tmp_path / "task.sh"
    script.write_text(
        f'#!/bin/sh\necho "$SLURM_ARRAY_TASK_ID $SLURM_CPUS_PER_TASK" > {tmp_path}/out.$SLURM_ARRAY_TASK_ID\n'
    )
    slurm_cluster.run(
        "sbatch", "--wait", "--array=0-3", "--cpus-per-task=1", f"--output={tmp_path}/slurm-%A_%a.out", str(script)
    )
    outputs = {path.name: path.read_text().split() for path in tmp_path.glob("out.*")}
    assert outputs == {f"out.{i}": [str(i), "1"] for i in range(4)}


def test_scancel_ends_a_running_job(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job_id = slurm_cluster.run(
        "sbatch", "--parsable", f"--output={tmp_path}/sleep.out", "--wrap", "sleep 300"
    ).stdout.strip()
    slurm_cluster.wait_for(job_id, {"RUNNING"})
    slurm_cluster.run("scancel", job_id)
    assert slurm_cluster.wait_for(job_id, {"CANCELLED"}, timeout=30) == "CANCELLED"
