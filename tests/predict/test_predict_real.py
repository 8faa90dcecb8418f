"""``ser predict`` and ``ser.load_model`` on real RAVDESS audio: round-trip exactness against the fit's
own test predictions, the Python API, windows, bad inputs and the run-directory checks.

The packaged demo clips (actors 01-04, real RAVDESS) give a fast eGeMAPS (with LLD sequences) and
MiniLM cache; the whole 1200-clip RAVDESS cache of the session fixture gives one more fold.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cli import app
from tests.fakes.demo import demo_corpus, demo_manifest

pytestmark = pytest.mark.slow  # extracts the demo caches (eGeMAPS LLDs, MiniLM) and fits several heads

FOLD = "Actor_02"


@pytest.fixture(scope="module")
def demo_caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The packaged RAVDESS clips: manifest, eGeMAPS store with the LLD sequences, MiniLM store."""
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    folder = tmp_path_factory.mktemp("predict-demo")
    corpus = demo_corpus()
    manifest = demo_manifest(folder)
    egemaps, minilm = folder / "egemaps.h5", folder / "minilm.h5"
    run_extraction(manifest, build_extractor("egemaps"), egemaps, RunOptions(seq="lld", num_workers=2, progress=False))
    run_extraction(manifest, build_extractor("minilm", device="cpu"), minilm, RunOptions(num_workers=0, progress=False))
    return {"folder": folder, "manifest": manifest, "egemaps": egemaps, "minilm": minilm, "corpus": corpus}


def _fit(args: list[str]) -> Path:
    result = CliRunner().invoke(app, ["fit", *args])
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1].split("run directory: ")[1])


def _fold_manifest(run: Path, manifest: Path, fold: str) -> tuple[Path, dict[str, dict[str, str]]]:
    """A manifest of the fold's test rows (beside the original, same root) and the fit's predictions."""
    from ser.manifests.schema import read_manifest, write_manifest

    with open(run / "predictions.csv", encoding="utf-8") as handle:
        expected = {row["id"]: row for row in csv.DictReader(handle) if row["fold"] == fold}
    rows = read_manifest(manifest)
    subset = manifest.with_name(f"{run.name}-{fold}.jsonl")
    write_manifest(subset, rows.header, [u for u in rows.utterances if u.id in expected])
    return subset, expected


def _assert_reproduces(run: Path, manifest: Path, fold: str, tmp_path: Path) -> None:
    subset, expected = _fold_manifest(run, manifest, fold)
    out = tmp_path / f"{run.name}.csv"
    result = CliRunner().invoke(
        app,
        ["predict", str(run), "-m", str(subset), "--members", fold, "-o", str(out), "--no-progress", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    with open(out, encoding="utf-8") as handle:
        got = {row["id"]: row for row in csv.DictReader(handle)}
    assert set(got) == set(expected) and len(expected) == 60
    classes = [c for c in next(iter(expected.values())) if c.startswith("p_")]
    assert [got[i]["pred"] for i in expected] == [expected[i]["pred"] for i in expected]
    worst = max(abs(float(got[i][c]) - float(expected[i][c])) for i in expected for c in classes)
    assert worst <= 1e-5
    assert all(got[i]["error"] == "" for i in got)


def test_predict_reproduces_the_fold_predictions_of_an_audio_mlp(demo_caches: dict[str, Path], tmp_path: Path) -> None:
    run = _fit(
        [
            "-f",
            "mlp",
            "-m",
            str(demo_caches["manifest"]),
            "-p",
            "speaker-loso",
            "--set",
            "val_by=utterance",
            "--audio",
            f"{demo_caches['egemaps']}:stat=functionals",
            "--folds",
            FOLD,
            "--set",
            "train.epochs=4",
            "-o",
            str(tmp_path / "runs"),
        ]
    )
    index = json.loads((run / "models" / "index.json").read_text())
    assert index["format"] == 1 and [m["name"] for m in index["members"]] == [f"{FOLD}-seed0"]
    assert (run / "models" / f"{FOLD}-seed0.safetensors").stat().st_size > 1000
    _assert_reproduces(run, demo_caches["manifest"], FOLD, tmp_path)


def test_predict_reproduces_audio_text_fleser_and_refuses_missing_text(
    demo_caches: dict[str, Path], tmp_path: Path
) -> None:
    run = _fit(
        [
            "-f",
            "fleser",
            "-m",
            str(demo_caches["manifest"]),
            "-p",
            "speaker-loso",
            "--set",
            "val_by=utterance",
            "--audio",
            str(demo_caches["egemaps"]),
            "--text",
            str(demo_caches["minilm"]),
            "--folds",
            FOLD,
            "--set",
            "train.epochs=3",
            "-o",
            str(tmp_path / "runs"),
        ]
    )
    _assert_reproduces(run, demo_caches["manifest"], FOLD, tmp_path)
    clip = next((demo_caches["corpus"] / "Actor_01").glob("*.flac"))
    refused = CliRunner().invoke(app, ["predict", str(run), str(clip), "--device", "cpu"])
    assert refused.exit_code == 2
    assert "reads text" in refused.output and "--text" in refused.output
    with_text = CliRunner().invoke(
        app,
        [
            "predict",
            str(run),
            str(clip),
            "--text",
            "Kids are talking by the door",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "one.jsonl"),
        ],
    )
    assert with_text.exit_code == 0, with_text.output
    (row,) = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    probabilities = [row[k] for k in row if k.startswith("p_")]
    assert len(probabilities) == 8 and math.isclose(sum(probabilities), 1.0, abs_tol=1e-5)
    assert row["pred"] == max((k for k in row if k.startswith("p_")), key=row.get)[2:]


def test_predict_reproduces_a_sequence_head_on_float16_lld_frames(demo_caches: dict[str, Path], tmp_path: Path) -> None:
    run = _fit(
        [
            "-f",
            "audio_transformer",
            "-m",
            str(demo_caches["manifest"]),
            "-p",
            "speaker-loso",
            "--set",
            "val_by=utterance",
            "--audio",
            f"{demo_caches['egemaps']}:seq=lld",
            "--folds",
            FOLD,
            "--set",
            "train.epochs=2",
            "--set",
            "train.batch_size=32",
            "-o",
            str(tmp_path / "runs"),
        ]
    )
    index = json.loads((run / "models" / "index.json").read_text())
    assert index["inputs"]["audio"]["view"] == {"kind": "seq", "stat": None, "layer": "lld"}
    assert index["inputs"]["audio"]["dtypes"]["seq"] == "float16"
    _assert_reproduces(run, demo_caches["manifest"], FOLD, tmp_path)


@pytest.fixture(scope="module")
def mlp_run(demo_caches: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An audio-only eGeMAPS MLP over all four demo folds, with a final model."""
    out = tmp_path_factory.mktemp("mlp-run")
    return _fit(
        [
            "-f",
            "mlp",
            "-m",
            str(demo_caches["manifest"]),
            "-p",
            "speaker-loso",
            "--set",
            "val_by=utterance",
            "--audio",
            str(demo_caches["egemaps"]),
            "--set",
            "train.epochs=6",
            "--final",
            "-o",
            str(out),
        ]
    )


def test_final_model_is_trained_on_every_labelled_row_and_is_the_default(mlp_run: Path) -> None:
    from ser import load_model

    index = json.loads((mlp_run / "models" / "index.json").read_text())
    final = index["final"]
    assert final["fold"] == "final" and final["training_rows"] == 240  # LOSO: every labelled row
    members = index["members"]
    best = sorted(m["best_epoch"] for m in members)
    assert final["best_epoch"] == best[(len(best) - 1) // 2]  # the median member's epoch count
    assert final["recipe"]["candidate"] == 0
    assert load_model(mlp_run, device="cpu").members == ["final-seed0"]
    assert load_model(mlp_run, members="all", device="cpu").members == [m["name"] for m in members]


def test_python_api_predicts_paths_arrays_and_lists_alike(mlp_run: Path, demo_caches: dict[str, Path]) -> None:
    import soundfile

    from ser import load_model

    model = load_model(mlp_run, members="all", device="cpu")
    clips = sorted((demo_caches["corpus"] / "Actor_03").glob("*.flac"))[:5]
    one = model.predict(clips[0])
    assert one.label in model.classes and one.error is None
    assert math.isclose(sum(one.probabilities.values()), 1.0, abs_tol=1e-6)
    samples, rate = soundfile.read(clips[0], dtype="float32")
    from_array = model.predict(samples, sample_rate=rate)
    assert from_array.label == one.label
    assert max(abs(from_array.probabilities[c] - one.probabilities[c]) for c in model.classes) < 1e-6
    many = model.predict_many(clips)
    assert [p.id for p in many] == [str(c) for c in clips]
    assert many[0].probabilities == pytest.approx(one.probabilities, abs=1e-6)
    stereo_48k = np.repeat(
        np.interp(np.arange(0, len(samples), 1 / 3), np.arange(len(samples)), samples)[:, None], 2, axis=1
    )
    assert model.predict(stereo_48k, sample_rate=48000).label in model.classes
    with pytest.raises(Exception, match="sample_rate"):
        model.predict(samples)


def test_bad_inputs_give_error_rows_and_never_stop_the_list(
    mlp_run: Path, demo_caches: dict[str, Path], tmp_path: Path
) -> None:
    import soundfile

    silent, broken = tmp_path / "silent.wav", tmp_path / "broken.wav"
    soundfile.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    broken.write_bytes(b"RIFF not really a wave file")
    good = sorted((demo_caches["corpus"] / "Actor_04").glob("*.flac"))[0]
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app, ["predict", str(mlp_run), str(silent), str(good), str(broken), "-o", str(out), "--device", "cpu"]
    )
    assert result.exit_code == 3
    assert "2 of 3 inputs could not be used" in result.output
    with open(out, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [str(silent), str(good), str(broken)]
    assert "silent" in rows[0]["error"] and rows[0]["pred"] == ""
    assert rows[1]["error"] == "" and rows[1]["pred"]
    assert "unreadable" in rows[2]["error"]


def test_windows_cover_a_recording_of_known_length(mlp_run: Path, demo_caches: dict[str, Path], tmp_path: Path) -> None:
    import soundfile

    from ser.predict.windows import plan_windows

    clips = sorted((demo_caches["corpus"] / "Actor_01").glob("*.flac"))[:6]
    audio = np.concatenate([soundfile.read(c, dtype="float32")[0] for c in clips])
    audio = np.concatenate([audio, np.zeros(16000 * 2, dtype=np.float32)])  # 2 s of digital silence at the end
    long = tmp_path / "long.wav"
    soundfile.write(long, audio, 16000)
    duration = len(audio) / 16000
    out = tmp_path / "timeline.csv"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(mlp_run),
            str(long),
            "--window",
            "2",
            "--hop",
            "0.5",
            "-o",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    with open(out, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = math.floor((duration - 2) / 0.5) + 1 + (1 if (duration - 2) % 0.5 > 1e-9 else 0)
    assert len(rows) == expected == len(plan_windows(duration, 2, 0.5))
    assert float(rows[0]["start"]) == 0.0 and float(rows[-1]["end"]) == pytest.approx(duration, abs=1e-3)
    assert "silent" in rows[-1]["error"]  # the last window lies in the silence
    assert all(r["pred"] for r in rows[:-4])
    assert (tmp_path / "timeline.png").stat().st_size > 5000


def test_run_directory_problems_are_one_line_and_exit_2(mlp_run: Path, tmp_path: Path) -> None:
    import shutil

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["predict", *args, "--device", "cpu"])
        return result.exit_code, result.output

    code, output = run(str(tmp_path / "nowhere"), "x.wav")
    assert code == 2 and "not a run directory" in output
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    assert run(str(unfinished), "x.wav")[0] == 2
    older = tmp_path / "older"
    shutil.copytree(mlp_run, older)
    shutil.rmtree(older / "models")
    code, output = run(str(older), "x.wav")
    assert code == 2 and "older ser" in output
    other_format = tmp_path / "other"
    shutil.copytree(mlp_run, other_format)
    index = json.loads((other_format / "models" / "index.json").read_text())
    (other_format / "models" / "index.json").write_text(json.dumps({**index, "format": 99}))
    code, output = run(str(other_format), "x.wav")
    assert code == 2 and "format 99" in output
    code, output = run(str(mlp_run), "--members", "Actor_99", "x.wav")
    assert code == 2 and "Actor_01" in output


def test_features_from_another_opensmile_version_are_refused_naming_it(mlp_run: Path, tmp_path: Path) -> None:
    import shutil

    import opensmile

    changed = tmp_path / "changed"
    shutil.copytree(mlp_run, changed)
    index = json.loads((changed / "models" / "index.json").read_text())
    index["inputs"]["audio"]["extractor"]["config"]["opensmile"] = "0.9.0"  # as if extracted with another version
    (changed / "models" / "index.json").write_text(json.dumps(index))
    result = CliRunner().invoke(app, ["predict", str(changed), "x.wav", "--device", "cpu"])
    assert result.exit_code == 2
    assert f"config.opensmile: the run used '0.9.0', now '{opensmile.__version__}'" in result.output


def test_real_ravdess_fold_of_the_full_cache_round_trips(ravdess_egemaps: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, store = ravdess_egemaps
    run = _fit(
        [
            "-f",
            "mlp",
            "-m",
            str(manifest),
            "-p",
            "speaker-loso",
            "--audio",
            str(store),
            "--folds",
            "Actor_11",
            "--set",
            "train.epochs=3",
            "-o",
            str(tmp_path / "runs"),
        ]
    )
    _assert_reproduces(run, manifest, "Actor_11", tmp_path)


def test_predict_reproduces_a_classic_logreg_loaded_from_skops(demo_caches: dict[str, Path], tmp_path: Path) -> None:
    run = _fit(
        [
            "-f",
            "logreg",
            "-m",
            str(demo_caches["manifest"]),
            "-p",
            "speaker-loso",
            "--set",
            "val_by=utterance",
            "--audio",
            str(demo_caches["egemaps"]),
            "--folds",
            FOLD,
            "-o",
            str(tmp_path / "runs"),
        ]
    )
    assert (run / "models" / f"{FOLD}-seed0.skops").is_file()
    _assert_reproduces(run, demo_caches["manifest"], FOLD, tmp_path)
