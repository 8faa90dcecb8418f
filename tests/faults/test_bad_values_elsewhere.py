"""Bad values for the other commands: one line (or typer's usage box), exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app

CASES = [
    (["predict", "RUN", "x.wav", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["predict", "RUN", "--hop", "1", "x.wav"], "--hop needs --window"),
    (["predict", "RUN", "x.wav", "--checkpoint", "noequals"], "--checkpoint takes MODALITY=PATH"),
    (["predict", "NOWHERE", "x.wav"], "is not a run directory"),
    (["predict", "EMPTY", "x.wav"], "is not a finished run (no metrics.json)"),
    (["cache", "info", "nope.h5"], "no such cache store"),
    (["cache", "info", "x.txt"], "must end in .h5 (HDF5) or .zarr"),
    (["cache", "verify", "nope.zarr"], "no such cache store"),
    (["cache", "merge", "nope.h5", "-o", "m.h5"], "no such cache store"),
    (["manifest", "validate", "nope.jsonl"], "no such manifest file"),
    (["manifest", "ravdess", "NOWHERE", "-o", "m.jsonl"], "RAVDESS root not found"),
    (["manifest", "csv", ".", "--csv", "nope.csv", "-o", "m.jsonl"], "pass --csv"),
    (["ablate", "nope.yaml"], "cannot read the grid file"),
    (["report", "NOWHERE"], "is not a folder of run directories"),
    (["protocol", "show", "nope", "m.jsonl"], "no such manifest file"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_values_are_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").mkdir()
    names = {"RUN": str(tmp_path / "EMPTY"), "NOWHERE": str(tmp_path / "nowhere")}
    result = CliRunner().invoke(app, [names.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert len(result.output.strip().splitlines()) == 1
