"""``ser predict`` outputs: ``-o`` never replaces a folder, device, FIFO or link by a file, a failed
write leaves nothing behind, timeline pictures get one name per input, and window settings that
would plan absurd numbers of windows (or a zero hop) are refused in one line."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.atomic_files import output_file
from ser.cli import app
from ser.errors import UserError
from ser.predict.model import Request
from ser.predict.windows import MAX_WINDOWS, plan_windows


def _predict(run: Path, *args: str):
    return CliRunner().invoke(app, ["predict", str(run), *args, "--no-progress"])


def test_output_paths_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        output_file(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        output_file("/dev/null")
    with pytest.raises(UserError, match="this is a folder"):
        output_file(tmp_path)
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert output_file(link) == target.resolve()  # a link is written through, not replaced
    assert output_file(tmp_path / "new.csv") == tmp_path / "new.csv"


def test_predict_o_keeps_devices_fifos_folders_and_links(tone_model, tmp_path: Path) -> None:
    run, clip = tone_model
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out, message in ((fifo, "not a regular file"), (tmp_path, "this is a folder")):
        result = _predict(run, str(clip), "-o", str(out))
        assert result.exit_code == 2 and message in result.output, result.output
    assert fifo.is_fifo() and tmp_path.is_dir()
    assert not list(tmp_path.glob("*.tmp*"))
    target = tmp_path / "table.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    result = _predict(run, str(clip), "-o", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and target.read_text().startswith("id,pred,")


def test_a_failed_write_is_one_line_and_leaves_no_temporary_file(
    tone_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, clip = tone_model
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle) -> None:
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("ser.atomic_files.os.fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    out = tmp_path / "p.csv"
    result = _predict(run, str(clip), "-o", str(out))
    assert result.exit_code == 2 and f"writing {out} failed: no space left on the device" in result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_timeline_pictures_get_one_name_per_input_and_o_names_the_table(tone_model, tmp_path: Path) -> None:
    run, clip = tone_model
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(clip, tmp_path / folder / "clip.wav")
    result = _predict(run, str(tmp_path / "a" / "clip.wav"), str(tmp_path / "b" / "clip.wav"), "--window", "1",
                      "-o", str(tmp_path / "t.csv"))  # fmt: skip
    assert result.exit_code == 0, result.output
    pictures = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pictures == ["t-001-clip.png", "t-002-clip.png"]
    assert result.output.count("timeline plot:") == 2
    refused = _predict(run, str(clip), "--window", "1", "-o", str(tmp_path / "t.png"))
    assert refused.exit_code == 2 and "-o names the table" in refused.output


def test_window_plans_are_bounded_and_a_zero_hop_is_refused(tone_model) -> None:
    run, clip = tone_model
    with pytest.raises(UserError, match=f"at most {MAX_WINDOWS}"):
        plan_windows(3600.0, 1e-300, 1e-300)
    assert len(plan_windows(86400.0, 1.0, 1.0)) == 86400
    for args, message in ((["--window", "1e-300"], "choose a longer --hop"), (["--window", "1", "--hop", "0"],
                          "must be positive seconds")):  # fmt: skip
        result = _predict(run, str(clip), *args)
        assert result.exit_code == 2 and message in result.output, result.output


def test_text_that_is_not_utf8_is_refused_in_one_line() -> None:
    broken = b"caf\xe9".decode("utf-8", errors="surrogateescape")  # what a Latin-1 argument becomes
    with pytest.raises(UserError, match=r"not valid UTF-8 \(byte '\\udce9' at character 3\)"):
        Request(id="t", text=broken)
    assert Request(id="t", text="café").text == "café"
    assert np.array_equal(Request(id="a", samples=np.ones(1600), sample_rate=16000).samples, np.ones(1600))
