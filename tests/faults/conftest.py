"""Fixtures of the fault tests: a small fitted run to predict with."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app


@pytest.fixture(scope="module")
def tone_model(tone_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory, one clip): eGeMAPS + mlp on the synthetic tone corpus, one fold, 3 epochs."""
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    folder = tmp_path_factory.mktemp("tone-model")
    store = folder / "tones.egemaps.h5"
    run_extraction(tone_corpus, build_extractor("egemaps"), store, RunOptions(num_workers=0, progress=False))
    args = ["fit", "-f", "mlp", "-m", str(tone_corpus), "-p", "speaker-loso", "--set", "val_by=utterance", "-q"]
    args += ["--audio", str(store), "--folds", "spk0", "--set", "train.epochs=3", "-o", str(folder / "runs")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1].split("run directory: ")[1])
    return run, tone_corpus.parent / "spk0_1.wav"


@pytest.fixture(scope="module")
def tone_logreg(tone_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory: eGeMAPS + logreg (a classic, skops member) on the synthetic tone corpus, one fold."""
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    folder = tmp_path_factory.mktemp("tone-logreg")
    store = folder / "tones.egemaps.h5"
    run_extraction(tone_corpus, build_extractor("egemaps"), store, RunOptions(num_workers=0, progress=False))
    args = ["fit", "-f", "logreg", "-m", str(tone_corpus), "-p", "speaker-loso", "--set", "val_by=utterance", "-q"]
    args += ["--audio", str(store), "--folds", "spk0", "-o", str(folder / "runs")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1].split("run directory: ")[1])
