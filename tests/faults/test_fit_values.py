"""Every bad ``ser fit`` value is refused in one line with exit 2 before anything is written; a
diverging or zero-width model fails instead of reporting chance as a result."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from tests.fakes.caches import make_corpus

BAD_VALUES = [
    (["--set", "train.lr=nan"], "train.lr must be a finite number > 0"),
    (["--set", "train.lr=-1e-3"], "train.lr must be a finite number > 0"),
    (["--set", "train.weight_decay=-0.1"], "train.weight_decay must be a finite number >= 0"),
    (["--set", "train.momentum=1.5"], "train.momentum"),
    (["--seeds", ""], "seeds must be a non-empty list"),
    (["--seeds", "a,b"], "--seeds takes comma-separated whole numbers"),
    (["--seeds", "-1"], "every seed must be a whole number >= 0"),
    (["--seeds", "0,0"], "repeat a seed"),
    (["--set", "val_fraction=1.5"], "val_fraction must be a finite number > 0 and < 1"),
    (["--set", "val_fraction=0"], "val_fraction"),
    (["--set", "val_by=session"], "val_by must be speaker or utterance"),
    (["--folds", ""], "folds must be fold names"),
    (["--set", "train.epochs=2.5"], "train.epochs must be a whole number"),
    (["--set", "train.epochs=0"], "train.epochs must be a whole number >= 1"),
    (["--set", "train.patience=-1"], "train.patience must be a whole number >= 0"),
    (["--set", "train.device=gpu"], "train.device must be auto, cpu, cuda, cuda:N or mps"),
    (["--set", "train.device=cuda:7"], "CUDA device"),
    (["--set", "train.normalize=maybe"], "train.normalize must be true or false"),
    (["--set", "train.batch_size=0"], "train.batch_size must be a whole number >= 1"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    manifest, audio, _ = make_corpus(tmp_path_factory.mktemp("fit-values"), n_speakers=3, per_speaker=8)
    return manifest, audio


def _fit(corpus: tuple[Path, Path], out: Path, *extra: str) -> tuple[int, str]:
    manifest, audio = corpus
    result = CliRunner().invoke(
        app,
        [
            "fit",
            "-f",
            "mlp",
            "-m",
            str(manifest),
            "-p",
            "speaker-loso",
            "--audio",
            f"{audio}:layer=1",
            "--set",
            "val_by=utterance",
            "--set",
            "train.epochs=2",
            "-o",
            str(out),
            *extra,
        ],
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(("extra", "message"), BAD_VALUES, ids=[" ".join(e) for e, _ in BAD_VALUES])
def test_bad_fit_values_are_one_line_exit_2_and_write_nothing(
    corpus: tuple[Path, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    code, output = _fit(corpus, tmp_path / "runs", *extra)
    assert code == 2, output
    assert message in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_out_naming_a_file_is_refused(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    code, output = _fit(corpus, tmp_path / "file")
    assert code == 2 and "this is a file" in output


def test_divergence_fails_the_fit_with_epoch_and_cause(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    code, output = _fit(
        corpus, tmp_path / "runs", "--set", "train.lr=1e30", "--folds", "spk0", "--set", "train.normalize=false"
    )
    assert code == 2, output
    assert "training diverged at epoch" in output and "lr 1e+30" in output
    assert not list((tmp_path / "runs").glob("*/metrics.json"))  # no result is reported


def test_a_zero_width_head_is_refused(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    code, output = _fit(corpus, tmp_path / "runs", "--set", "head.hidden=[0]", "--folds", "spk0")
    assert code == 2 and "head.hidden must be a whole number >= 1" in output
    assert not (tmp_path / "runs").exists()  # refused before the run directory exists
