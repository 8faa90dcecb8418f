"""The Python API on inputs it cannot use: ``predict`` raises naming the file and the cause,
``on_error="record"`` keeps error rows (what ``ser predict`` uses); readable reprs; several run
directories given to ``ser predict`` (a glob that matched more than one run).

The small eGeMAPS + mlp run of the session fixture ``tone_mlp_run`` (one fold, 3 epochs).
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.errors import UserError
from ser.predict.model import LISTED_FAILURES, Prediction, SerModel, UnusableInputError, load_model

CLASSES = ("neu", "cal", "hap", "sad", "ang", "fea", "dis", "sur")


@pytest.fixture(scope="module")
def model(tone_mlp_run: Path) -> SerModel:
    return load_model(tone_mlp_run, device="cpu")


@pytest.fixture
def clip(tone_corpus: Path) -> Path:
    return tone_corpus.parent / "spk0_1.wav"


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF not really a wave file")
    return path


def test_a_missing_file_raises_a_user_error_naming_it(model: SerModel, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.wav"
    with pytest.raises(UnusableInputError) as caught:
        model.predict(missing)
    assert isinstance(caught.value, UserError)  # the CLI's one-line family
    assert str(caught.value) == f"cannot classify {missing}: no such file"
    assert [(p.id, p.label, p.error) for p in caught.value.failures] == [(str(missing), None, "no such file")]
    with pytest.raises(UnusableInputError, match=re.escape(f"cannot classify {tmp_path}: a folder")):
        model.predict(tmp_path)


def test_an_undecodable_file_raises_and_on_error_record_keeps_its_row(
    model: SerModel, clip: Path, broken: Path
) -> None:
    with pytest.raises(UnusableInputError, match=re.escape(f"cannot classify {broken}: unreadable audio")):
        model.predict(broken)
    kept = model.predict(broken, on_error="record")
    assert kept.label is None and kept.probabilities == {} and "unreadable audio" in (kept.error or "")
    with pytest.raises(UnusableInputError, match="with on_error='record' they come back as Predictions") as caught:
        model.predict_many([clip, broken])
    assert [p.id for p in caught.value.failures] == [str(broken)]
    good, bad = model.predict_many([clip, broken], on_error="record")
    assert good.error is None and good.label in CLASSES and bad.id == str(broken) and bad.label is None
    assert good.probabilities == pytest.approx(model.predict(clip).probabilities, abs=1e-6)


def test_silent_samples_raise_with_the_reason(model: SerModel) -> None:
    with pytest.raises(UnusableInputError, match=re.escape("cannot classify array: silent audio")):
        model.predict(np.zeros(16000, dtype=np.float32), sample_rate=16000)


def test_missing_files_are_named_before_any_extraction(
    model: SerModel, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_extraction(*args: object) -> None:
        raise AssertionError("extraction started before the missing files were reported")

    monkeypatch.setattr(model, "_predict_batch", no_extraction)
    missing = [tmp_path / f"gone{k}.wav" for k in range(LISTED_FAILURES + 2)]
    with pytest.raises(UnusableInputError) as caught:
        model.predict_many([clip, *missing])
    message = str(caught.value)
    assert message.startswith(f"cannot classify {len(missing)} inputs: {missing[0]}: no such file; ")
    assert f"{missing[LISTED_FAILURES - 1]}: no such file; and 2 more;" in message
    assert str(missing[LISTED_FAILURES]) not in message
    assert len(caught.value.failures) == len(missing)


def test_a_manifest_row_without_its_file_names_the_row_and_the_path(model: SerModel, tmp_path: Path) -> None:
    from ser.predict.model import Request

    gone = tmp_path / "audio" / "row7.wav"
    with pytest.raises(UnusableInputError) as caught:
        model.predict_many([Request(id="row7", path=gone, start=1.0, end=2.5)])
    assert str(caught.value) == f"cannot classify row7 [1-2.5 s]: no such file {gone}"


def test_an_unknown_on_error_choice_is_refused(model: SerModel, clip: Path) -> None:
    with pytest.raises(UserError, match="on_error must be one of 'raise', 'record', not 'ignore'"):
        model.predict(clip, on_error="ignore")  # type: ignore[arg-type]


def test_reprs_say_what_answers_and_the_top_class(model: SerModel, tone_mlp_run: Path, clip: Path) -> None:
    assert repr(model) == (
        f"SerModel(fusion='mlp', recipe='ser', classes={CLASSES!r}, members=1 (all), "
        f"inputs=audio: egemaps functionals, run='{tone_mlp_run}')"
    )
    assert "members=1 (fold spk0)" in repr(load_model(tone_mlp_run, members="spk0", device="cpu"))
    answer = model.predict(clip)
    assert answer.label is not None
    assert (
        repr(answer) == f"Prediction(id='{clip}', label='{answer.label}', p={answer.probabilities[answer.label]:.2f})"
    )
    assert (
        repr(Prediction("a.wav", "ang", {"ang": 0.931, "neu": 0.069})) == "Prediction(id='a.wav', label='ang', p=0.93)"
    )
    window = Prediction("long.wav", "sad", {"sad": 0.5, "neu": 0.5}, start=2.0, end=4.5)
    assert repr(window) == "Prediction(id='long.wav', start=2, end=4.5, label='sad', p=0.50)"
    failed = Prediction("x.wav", None, error="silent audio")
    assert repr(failed) == "Prediction(id='x.wav', label=None, error='silent audio')"


def test_the_cli_keeps_error_rows_for_a_batch(tone_mlp_run: Path, clip: Path, broken: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app, ["predict", str(tone_mlp_run), str(clip), str(broken), "-o", str(out), "--device", "cpu", "--no-progress"]
    )
    assert result.exit_code == 3, result.output
    assert "1 of 2 inputs could not be used" in result.output
    with open(out, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["id"], bool(r["pred"]), bool(r["error"])) for r in rows] == [
        (str(clip), True, False),
        (str(broken), False, True),
    ]


def test_several_run_directories_name_the_matches(tone_mlp_run: Path, clip: Path, tmp_path: Path) -> None:
    twin = tone_mlp_run.with_name(tone_mlp_run.name + "-copy")
    shutil.copytree(tone_mlp_run, twin)
    try:
        result = CliRunner().invoke(app, ["predict", str(tone_mlp_run), str(twin), str(clip), "--device", "cpu"])
        assert result.exit_code == 2
        expected = f"2 run directories given: {tone_mlp_run}, {twin}; pass one (the glob matched several)"
        assert expected in result.output.replace("\n", "")
        assert "no audio files" not in result.output
        swapped = CliRunner().invoke(app, ["predict", str(clip), str(tone_mlp_run), "--device", "cpu"])
        assert swapped.exit_code == 2
        assert f"{tone_mlp_run} is a run directory, given as an input" in swapped.output.replace("\n", "")
    finally:
        shutil.rmtree(twin)
