"""``ser extract --shard slurm``: the shard of a Slurm job array task, read from the array's environment
(the real sbatch array runs in ``tests/slurm/test_threads_and_shards.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.extract.base import ExtractorError
from ser.extract.run_options import parse_shard, slurm_array_shard
from ser.manifests.schema import ManifestHeader, Utterance, write_manifest
from tests.fakes import write_tone

ARRAY_ENVS = ("ID", "MIN", "MAX", "COUNT", "STEP")


def _array(task: int, low: int, high: int, count: int, step: int | None = None) -> dict[str, str]:
    """The environment Slurm gives one task of ``--array=low-high[:step]`` (``count`` tasks)."""
    env = {"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "40"}
    for name, value in zip(ARRAY_ENVS, (task, low, high, count, step), strict=True):
        if value is not None:
            env[f"SLURM_ARRAY_TASK_{name}"] = str(value)
    return env


@pytest.mark.parametrize(
    ("envs", "shards"),
    [
        ([_array(t, 0, 3, 4, 1) for t in range(4)], [(i, 4) for i in range(4)]),  # --array=0-3
        ([_array(t, 1, 4, 4) for t in range(1, 5)], [(i, 4) for i in range(4)]),  # --array=1-4, no STEP set
        ([_array(t, 0, 6, 4, 2) for t in (0, 2, 4, 6)], [(i, 4) for i in range(4)]),  # --array=0-6:2
        ([_array(7, 7, 7, 1, 1)], [(0, 1)]),  # --array=7
    ],
)
def test_every_task_of_an_array_gets_its_own_shard(envs: list[dict[str, str]], shards: list[tuple[int, int]]) -> None:
    assert [parse_shard("slurm", env) for env in envs] == shards
    assert [parse_shard("SLURM", env) for env in envs] == shards


def test_explicit_shards_ignore_the_array() -> None:
    assert parse_shard("1/3", _array(0, 0, 3, 4)) == (1, 3)
    assert parse_shard(None, _array(0, 0, 3, 4)) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "--shard slurm takes its shard from a Slurm job array, but this runs outside one (in Slurm"),
        ({"SLURM_JOB_ID": "5"}, "runs outside one (in a Slurm job without SLURM_ARRAY_TASK_ID)"),
        (
            _array(5, 0, 7, 3, 1),
            "needs a job array without gaps (e.g. --array=0-2); this one has 3 tasks",
        ),  # --array=0,5,7
        (_array(3, 0, 6, 4, 2), "array task 3 is not one of 4 tasks from 0 to 6 in steps of 2"),
        ({**_array(1, 0, 3, 4), "SLURM_ARRAY_TASK_COUNT": "four"}, "SLURM_ARRAY_TASK_COUNT='four' is not a whole"),
        (
            {k: v for k, v in _array(1, 0, 3, 4).items() if k != "SLURM_ARRAY_TASK_MIN"},
            "SLURM_ARRAY_TASK_MIN is not set",
        ),
    ],
)
def test_anything_but_a_gapless_array_is_refused_in_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ExtractorError) as refused:
        slurm_array_shard(env)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_the_cli_refuses_shard_slurm_outside_an_array_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ARRAY_ENVS:
        monkeypatch.delenv(f"SLURM_ARRAY_TASK_{name}", raising=False)
    write_tone(tmp_path / "t.wav", seconds=0.2, frequency=300.0)
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="tones", root=str(tmp_path)), [Utterance(id="t", audio="t.wav")])
    out = tmp_path / "out.h5"
    args = ["extract", "--model", "logmel", "-m", str(manifest), "-o", str(out), "--shard", "slurm", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--shard slurm takes its shard from a Slurm job array" in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("out*"))
