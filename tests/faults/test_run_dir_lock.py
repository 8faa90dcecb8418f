"""Two fits never write one run directory at once (the run lock), and ``--no-models`` into a run
directory whose models an earlier fit of the same config saved keeps them usable."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.errors import UserError
from ser.fusion.config import FitConfig, TrainConfig
from ser.fusion.run import run_fit
from ser.run_lock import RunLock, held
from tests.fakes.caches import make_corpus


def _config(tmp_path: Path, **extra) -> FitConfig:
    if not (tmp_path / "audio.h5").exists():
        make_corpus(tmp_path, n_speakers=3, per_speaker=8)
    return FitConfig(
        fusion="logreg",
        manifest=str(tmp_path / "m.jsonl"),
        protocol="speaker-loso",
        audio=f"{tmp_path / 'audio.h5'}:layer=1",
        label_set="ravdess8",
        val_by="utterance",
        train=TrainConfig.for_head("logreg"),
        out=str(tmp_path / "runs"),
        **extra,
    )


def test_a_fit_refuses_a_run_directory_another_process_is_writing(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    run_dir = Path(cfg.out) / cfg.slug()
    run_dir.mkdir(parents=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)  # another writer's lock (not via this process)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"pid 4242 on elsewhere")
    try:
        with pytest.raises(UserError, match=r"is being run by pid 4242 on elsewhere: the same fit"):
            run_fit(cfg)
        assert not (run_dir / "metrics.json").exists()
    finally:
        os.close(fd)
    assert (run_fit(cfg) / "metrics.json").exists()  # free again: the fit runs
    assert not held(run_dir)  # and it let the lock go


def test_a_process_that_holds_the_lock_fits_inside_it(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    run_dir = Path(cfg.out) / cfg.slug()
    with RunLock(run_dir):  # what an ser ablate worker does around its jobs
        assert held(run_dir)
        assert (run_fit(cfg) / "metrics.json").exists()
        assert held(run_dir)  # the fit did not drop its owner's lock


def test_no_models_into_a_run_with_saved_models_keeps_them(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    run_dir = run_fit(cfg)
    index = json.loads((run_dir / "models" / "index.json").read_text())
    assert len(index["members"]) == 3
    args = ["fit", "-f", "logreg", "-m", cfg.manifest, "-p", "speaker-loso", "--audio", str(cfg.audio), "-q"]
    args += ["-l", "ravdess8", "--set", "val_by=utterance", "--no-models", "-o", cfg.out]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "models" / "index.json").read_text()) == index  # not rewritten as saved: false
    assert all((run_dir / "models" / member["file"]).exists() for member in index["members"])
    fresh = _config(tmp_path / "fresh", save_models=False)
    index = json.loads((run_fit(fresh) / "models" / "index.json").read_text())
    assert index["saved"] is False and index["members"] == []
