"""Inside Slurm tasks: threads follow ``SLURM_CPUS_PER_TASK``, and ``ser extract --shard slurm`` over a job
array, merged with ``ser cache merge``, equals one pass."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser.cache.reader import CacheReader
from tests.fakes.tones import write_tone_corpus
from tests.slurm.conftest import SlurmCluster

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, os
import numpy  # loads the BLAS library threadpoolctl reports on
from threadpoolctl import threadpool_info
from ser.threads import blas_threads, idle_cores, usable_cores
with blas_threads(idle_cores()):
    blas = sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
print(json.dumps({"usable": usable_cores(), "blas": blas, "affinity": len(os.sched_getaffinity(0)),
                  "cpus_per_task": os.environ.get("SLURM_CPUS_PER_TASK")}))
"""


def _outside_slurm_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "SER_MAX_THREADS"}


def _rows(store: Path) -> int:
    with CacheReader(store) as reader:
        return len(reader.ids)


def test_a_task_given_one_cpu_sizes_its_threads_to_one(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    machine = len(os.sched_getaffinity(0))
    if machine < 2:
        pytest.skip("needs a machine with 2 cores or more to tell one CPU from the machine's")
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    outside = subprocess.run(
        [sys.executable, str(probe)], env=_outside_slurm_env(), cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(outside.stdout)["usable"] == machine  # outside Slurm: the machine's cores

    out = tmp_path / "probe.out"
    slurm_cluster.run(
        "sbatch",
        "--wait",
        "--cpus-per-task=1",
        "--export=ALL,SER_MAX_THREADS=",  # only Slurm's allocation caps the cores here
        f"--chdir={REPO}",
        f"--output={out}",
        "--wrap",
        f"{sys.executable} {probe}",
        timeout=120,
    )
    inside = json.loads(out.read_text().strip().splitlines()[-1])
    assert inside["cpus_per_task"] == "1"
    assert inside["affinity"] == machine  # TaskPlugin=task/none: the affinity alone would give the whole node
    assert inside["usable"] == 1
    assert inside["blas"] == [1]


def test_an_array_of_shards_merged_equals_one_pass(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    manifest = write_tone_corpus(corpus, speakers=2, per_speaker=4)  # 8 clips
    ser = shutil.which("ser", path=str(Path(sys.executable).parent)) or "ser"
    extract = [ser, "extract", "--model", "logmel", "--preset", "64", "-m", str(manifest), "--num-workers", "0"]
    extract += ["--no-progress"]
    sharded = tmp_path / "sharded" / "feats.h5"
    sharded.parent.mkdir()
    slurm_cluster.run(
        "sbatch",
        "--wait",
        "--array=0-2",
        "--cpus-per-task=1",
        f"--chdir={REPO}",
        f"--output={tmp_path}/extract-%A_%a.out",
        "--wrap",
        " ".join([*extract, "-o", str(sharded), "--shard", "slurm"]),
        timeout=300,
    )
    shards = sorted(sharded.parent.glob("feats.shard*of3.h5"))
    logs = "\n".join(path.read_text() for path in sorted(tmp_path.glob("extract-*.out")))
    assert [path.name for path in shards] == [f"feats.shard{i}of3.h5" for i in range(3)], logs
    merged = tmp_path / "merged.h5"
    merge = [ser, "cache", "merge", *map(str, shards), "--output", str(merged)]
    subprocess.run(merge, env=_outside_slurm_env(), capture_output=True, text=True, check=True, timeout=120)

    single = tmp_path / "single.h5"
    subprocess.run(
        [*extract, "-o", str(single)], env=_outside_slurm_env(), capture_output=True, text=True, check=True, timeout=300
    )
    with CacheReader(merged) as joined, CacheReader(single) as whole:
        assert len(whole.ids) == 8
        assert sorted(joined.ids) == sorted(whole.ids)
        assert [_rows(path) for path in shards] == [
            3,
            3,
            2,
        ]  # rows 0, 3, 6 / 1, 4, 7 / 2, 5: each task took its own shard
        assert sorted(joined.layout.pooled) == sorted(whole.layout.pooled)
        for stat in whole.layout.pooled:
            a, b = joined.pooled(stat, ids=whole.ids), whole.pooled(stat)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a, b), f"pooled {stat} differs between the merged shards and one pass"
