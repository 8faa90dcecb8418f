"""``ser demo --print-clips``: the packaged clips' folder, for the user's own commands; nothing is run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app


def test_print_clips_prints_the_packaged_folder_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--print-clips"])
    assert result.exit_code == 0, result.output
    folder = Path(result.output.strip())
    assert result.output.count("\n") == 1  # one line, usable as $(ser demo --print-clips)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [f"Actor_0{k}" for k in range(1, 5)]
    assert len(list(folder.rglob("*.flac"))) == 240
    assert (folder / "Actor_01" / "03-01-05-02-01-01-01.flac").is_file()  # the README's clip
    assert list(tmp_path.iterdir()) == []  # no ser-demo/ workdir: nothing was run
