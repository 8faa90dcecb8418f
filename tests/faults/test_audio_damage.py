"""Damaged audio is refused with a reason, and same-size edits of audio are caught by the store fingerprints.

A WAV cut to a third of its length, or whose header claims 10 hours, is rejected as damaged by the one
audio loader (extraction rejects the row, ``ser manifest validate`` reports an error); new stores identify
audio by a hash of the whole file, so a gain change in the middle of a clip makes the row stale.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from ser.cache.reader import CacheReader
from ser.cli import app
from ser.extract.audio import AudioError, load_audio
from ser.manifests.fingerprints import SCHEME, audio_identity, row_fingerprints
from ser.manifests.schema import ManifestHeader, Utterance, read_manifest, write_manifest

RATE = 16000


def _tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _claim_ten_hours(path: Path) -> None:
    data = path.read_bytes()
    at = data.find(b"data")
    path.write_bytes(data[: at + 4] + struct.pack("<I", 10 * 3600 * RATE * 2) + data[at + 8 :])


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Manifest of six 1.5 s WAV clips; ``bad_cut`` is truncated to a third, ``bad_long`` claims 10 hours."""
    root = tmp_path / "corpus"
    root.mkdir()
    rows = []
    for i, name in enumerate(["ok_0", "ok_1", "ok_2", "ok_3", "bad_cut", "bad_long"]):
        soundfile.write(root / f"{name}.wav", _tone(1.5, 150 + 40 * i), RATE, subtype="PCM_16")
        rows.append(Utterance(id=name, audio=f"{name}.wav", label="a" if i % 2 else "b", speaker=f"s{i % 2}"))
    _truncate(root / "bad_cut.wav")
    _claim_ten_hours(root / "bad_long.wav")
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="tones", root=str(root)), rows)
    return manifest


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_loader_refuses_truncated_and_lying_wav_files(corpus: Path) -> None:
    root = corpus.parent / "corpus"
    assert load_audio(root / "ok_0.wav", sample_rate=RATE).size == round(1.5 * RATE)
    with pytest.raises(AudioError, match=r"damaged audio: the WAV header states 48000 bytes .* only 15\d\d\d"):
        load_audio(root / "bad_cut.wav", sample_rate=RATE)
    with pytest.raises(AudioError, match=r"damaged audio: the WAV header states 1152000000 bytes .* only 48000"):
        load_audio(root / "bad_long.wav", sample_rate=RATE)


def test_validate_reports_damaged_files_as_errors(corpus: Path) -> None:
    code, output = _run("manifest", "validate", str(corpus), "--all-labels")
    assert code != 0, output
    assert "damaged audio" in output and "bad_cut" in output and "bad_long" in output, output
    assert "ok_0" not in output


def test_extraction_rejects_damaged_rows_and_keeps_the_rest(corpus: Path) -> None:
    store = corpus.parent / "tones.egemaps.h5"
    args = ["extract", "--model", "egemaps", "-m", str(corpus), "-o", str(store)]
    code, output = _run(*args, "--num-workers", "0", "--no-progress", "--device", "cpu")
    assert code == 3 and "2 rejected" in output, output  # 3: finished, with rejected rows
    reader = CacheReader(store)
    assert sorted(reader.ids) == ["ok_0", "ok_1", "ok_2", "ok_3"]
    assert set(reader.rejected) == {"bad_cut", "bad_long"}
    assert all(reason.startswith("damaged audio") for reason in reader.rejected.values()), reader.rejected


def test_a_same_size_gain_edit_in_the_middle_is_stale(corpus: Path) -> None:
    rows = read_manifest(corpus)
    good = [u for u in rows.utterances if u.id.startswith("ok")]
    write_manifest(corpus, rows.header, good)
    store = corpus.parent / "tones.egemaps.h5"
    extract = ["extract", "--model", "egemaps", "-m", str(corpus), "-o", str(store)]
    extract += ["--num-workers", "0", "--no-progress", "--device", "cpu"]
    assert _run(*extract)[0] == 0
    target = corpus.parent / "corpus" / "ok_1.wav"
    before = target.stat().st_size
    sampled_before = audio_identity(target, full=False)
    audio, _ = soundfile.read(target, dtype="int16")
    for lo, hi in ((0.09, 0.44), (0.56, 0.63)):  # 42 % of the clip, clear of the three 4 KiB samples
        part = slice(round(lo * audio.size), round(hi * audio.size))
        audio[part] = np.round(audio[part] * 10 ** (-12 / 20)).astype(np.int16)
    soundfile.write(target, audio, RATE, subtype="PCM_16")
    assert target.stat().st_size == before
    code, output = _run("cache", "verify", str(store), "--manifest", str(corpus))
    assert code != 0 and "ok_1" in output, output
    code, output = _run(*extract)
    assert code == 0 and "already complete" not in output and "1 changed row" in output, output
    # Why the scheme changed: the sampled identity (kept for v2 stores) cannot see this edit.
    assert SCHEME == "v3" and audio_identity(target, full=False) == sampled_before


def test_v2_stores_keep_their_sampled_fingerprints(corpus: Path) -> None:
    """A store written under v2 is compared under v2: the new default does not make it stale."""
    manifest = read_manifest(corpus)
    rows = [u for u in manifest.utterances if u.id.startswith("ok")]
    v2 = row_fingerprints(manifest, rows, modality="audio", scheme="v2")
    v3 = row_fingerprints(manifest, rows, modality="audio", scheme="v3")
    assert v2 == row_fingerprints(manifest, rows, modality="audio", scheme="v2")
    assert all(v2[u.id] != v3[u.id] for u in rows)
    path = corpus.parent / "corpus" / "ok_0.wav"
    data = bytearray(path.read_bytes())
    data[len(data) // 4] ^= 0xFF  # one byte outside the three sampled regions
    path.write_bytes(bytes(data))
    assert row_fingerprints(manifest, rows, modality="audio", scheme="v2")["ok_0"] == v2["ok_0"]
    assert row_fingerprints(manifest, rows, modality="audio", scheme="v3")["ok_0"] != v3["ok_0"]
