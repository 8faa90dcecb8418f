"""Audio stores know the content of the audio they were computed from (``ser.manifests.fingerprints``):
a file replaced in place is stale everywhere, a copied corpus is not, and a transcript edit leaves
audio stores alone (and makes text stores stale)."""

from __future__ import annotations

import shutil
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from ser.cli import app
from ser.manifests.fingerprints import audio_identity
from ser.manifests.schema import ManifestHeader, Utterance, read_manifest, write_manifest


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    source = Path(str(resources.files("ser").joinpath("demo_data", "ravdess16k")))
    root = tmp_path / "corpus"
    rows = []
    for speaker in ("Actor_01", "Actor_02", "Actor_03"):
        (root / speaker).mkdir(parents=True)
        for clip in sorted((source / speaker).glob("*.flac"))[:8]:
            shutil.copy(clip, root / speaker / clip.name)
            emotion = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry"}.get(
                clip.name.split("-")[2], "angry"
            )
            rows.append(
                Utterance(
                    id=clip.stem,
                    audio=f"{speaker}/{clip.name}",
                    text="Kids are talking by the door",
                    label=emotion,
                    speaker=speaker,
                )
            )
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="ravdess", root=str(root)), rows)
    return {"root": root, "manifest": manifest, "folder": tmp_path}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _extract(manifest: Path, store: Path, model: str = "egemaps") -> tuple[int, str]:
    return _run(
        "extract",
        "--model",
        model,
        "-m",
        str(manifest),
        "-o",
        str(store),
        "--num-workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
    )


def _fit(manifest: Path, out: Path, **inputs: str) -> tuple[int, str]:
    flags = [part for modality, store in inputs.items() for part in (f"--{modality}", store)]
    return _run(
        "fit",
        "-f",
        "mlp",
        "-m",
        str(manifest),
        "-p",
        "speaker-loso",
        "--set",
        "val_by=utterance",
        "--set",
        "train.epochs=1",
        "--folds",
        "Actor_01",
        "-o",
        str(out),
        *flags,
    )


def test_audio_replaced_in_place_is_stale_for_fit_verify_and_extract(corpus: dict[str, Path]) -> None:
    store = corpus["folder"] / "egemaps.h5"
    assert _extract(corpus["manifest"], store)[0] == 0
    first = read_manifest(corpus["manifest"]).utterances[0]
    target = corpus["root"] / str(first.audio)
    audio, rate = soundfile.read(target, dtype="float32")
    soundfile.write(target, np.clip(audio * 1.5, -1, 1), rate, format="FLAC")  # same path, other recording
    code, output = _fit(corpus["manifest"], corpus["folder"] / "runs", audio=str(store))
    assert code == 2 and "1 manifest rows changed" in output and first.id in output
    code, output = _run("cache", "verify", str(store), "--manifest", str(corpus["manifest"]))
    assert code != 0 and first.id in output
    code, output = _extract(corpus["manifest"], store)
    assert code == 0 and "extended the finished store (1 changed row" in output, output
    assert _fit(corpus["manifest"], corpus["folder"] / "runs", audio=str(store))[0] == 0


def test_a_copied_corpus_with_new_times_is_not_stale(corpus: dict[str, Path]) -> None:
    store = corpus["folder"] / "egemaps.h5"
    assert _extract(corpus["manifest"], store)[0] == 0
    time.sleep(0.01)
    copy = corpus["folder"] / "copy"
    shutil.copytree(corpus["root"], copy)  # new modification times, same bytes
    moved = corpus["folder"] / "moved.jsonl"
    rows = read_manifest(corpus["manifest"])
    write_manifest(moved, ManifestHeader(corpus="ravdess", root=str(copy)), rows.utterances)
    code, output = _extract(moved, store)
    assert code == 0 and "already complete" in output, output
    assert _fit(moved, corpus["folder"] / "runs", audio=str(store))[0] == 0


def test_a_transcript_edit_leaves_audio_stores_alone_and_makes_text_stores_stale(corpus: dict[str, Path]) -> None:
    audio, text = corpus["folder"] / "egemaps.h5", corpus["folder"] / "minilm.h5"
    assert _extract(corpus["manifest"], audio)[0] == 0
    assert _extract(corpus["manifest"], text, model="minilm")[0] == 0
    rows = read_manifest(corpus["manifest"])
    edited = [
        Utterance(**{**u.__dict__, "text": "Dogs are sitting by the door"}) if i == 0 else u
        for i, u in enumerate(rows.utterances)
    ]
    write_manifest(corpus["manifest"], rows.header, edited)
    assert _fit(corpus["manifest"], corpus["folder"] / "runs", audio=str(audio))[0] == 0
    code, output = _fit(corpus["manifest"], corpus["folder"] / "runs2", text=str(text))
    assert code == 2 and "1 manifest rows changed" in output


def test_audio_identity_follows_content_not_names_or_times(tmp_path: Path) -> None:
    one, two = tmp_path / "a.bin", tmp_path / "b.bin"
    data = np.random.default_rng(0).bytes(100_000)
    one.write_bytes(data)
    two.write_bytes(data)
    assert audio_identity(one) == audio_identity(two)
    for position in (10, 50_000, 99_990):  # the start, middle and end samples
        changed = bytearray(data)
        changed[position] ^= 1
        two.write_bytes(bytes(changed))
        assert audio_identity(two) != audio_identity(one)
    two.write_bytes(data + b"x")
    assert audio_identity(two) != audio_identity(one)
    assert audio_identity(tmp_path / "missing.wav") == "missing"
