"""Whisper encoder extractor on a tiny random checkpoint saved to disk (see conftest.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from transformers import WhisperFeatureExtractor, WhisperModel

from ser.errors import UnknownNameError
from ser.extract.base import ExtractorError, Features, Item, ItemRejected
from ser.extract.registry import build_extractor
from ser.extract.whisper import WhisperEncoderExtractor

pytestmark = pytest.mark.usefixtures("torch_one_thread")

RATE = 16000
HIDDEN = 32
LAYERS = ("layer_00", "layer_01", "layer_02")
ATOL = 1e-5


@pytest.fixture(scope="module")
def extractor(tiny_whisper: Path) -> WhisperEncoderExtractor:
    built = build_extractor("whisper", "tiny", checkpoint=str(tiny_whisper))
    assert isinstance(built, WhisperEncoderExtractor)
    return built


def _noise(n_samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(n_samples)).astype(np.float32)


def _features(result: Features | ItemRejected) -> Features:
    assert isinstance(result, Features), result
    return result


def test_spec(extractor: WhisperEncoderExtractor, tiny_whisper: Path) -> None:
    spec = extractor.spec
    assert (spec.name, spec.preset, spec.modality) == ("whisper", "tiny", "audio")
    assert spec.pooled == {"mean": (3, HIDDEN), "std": (3, HIDDEN)}
    assert spec.seq_layers == dict.fromkeys(LAYERS, HIDDEN)
    assert (spec.sample_rate, spec.frame_rate, spec.min_samples) == (RATE, 50.0, 320)
    assert spec.supports_padding
    assert not extractor.encoder.training
    upstream = extractor.upstream()
    assert (upstream["layers"], upstream["dim"], upstream["mel_bins"]) == (3, HIDDEN, 80)
    assert upstream["model"] == str(tiny_whisper)
    assert extractor.config()["chunk_seconds"] == 30.0


@pytest.mark.parametrize(
    ("n_samples", "n_frames"),
    [(16000, 50), (9280, 29), (9281, 30), (200, 1)],
    ids=["1s", "0.58s", "0.58s+1", "shorter-than-a-hop"],
)
def test_valid_frames_cover_the_audio(extractor: WhisperEncoderExtractor, n_samples: int, n_frames: int) -> None:
    assert n_frames == math.ceil(n_samples / 320)
    features = _features(extractor.extract([Item("a", _noise(n_samples, seed=n_samples))], LAYERS)[0])
    assert features.note is None
    assert all(features.seq[name].shape == (n_frames, HIDDEN) for name in LAYERS)
    frames = np.stack([features.seq[name] for name in LAYERS]).astype(np.float64)
    np.testing.assert_allclose(features.pooled["mean"], frames.mean(axis=1), atol=ATOL, rtol=0)
    np.testing.assert_allclose(features.pooled["std"], frames.std(axis=1), atol=ATOL, rtol=0)


def test_batched_equals_one_at_a_time(extractor: WhisperEncoderExtractor) -> None:
    items = [Item(f"u{i}", _noise(n, seed=i)) for i, n in enumerate((4800, 16000, 9280, 43210))]
    batched = [_features(r) for r in extractor.extract(items, LAYERS)]
    for item, together in zip(items, batched, strict=True):
        alone = _features(extractor.extract([item], LAYERS)[0])
        for stat in ("mean", "std"):
            assert together.pooled[stat].shape == (3, HIDDEN)
            assert together.pooled[stat].dtype == np.float32
            np.testing.assert_allclose(together.pooled[stat], alone.pooled[stat], atol=ATOL, rtol=0)
        for name in LAYERS:
            assert together.seq[name].shape == (math.ceil(item.audio.size / 320), HIDDEN)
            np.testing.assert_allclose(together.seq[name], alone.seq[name], atol=ATOL, rtol=0)


def test_matches_direct_encoder_call(extractor: WhisperEncoderExtractor, tiny_whisper: Path) -> None:
    audio = _noise(16000, seed=3)
    model = WhisperModel.from_pretrained(tiny_whisper).eval()
    feature_extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper)
    inputs = feature_extractor(audio, sampling_rate=RATE, return_tensors="pt")
    assert inputs["input_features"].shape == (1, 80, 3000)  # always 30 s of log-mel
    with torch.no_grad():
        direct = model.encoder(inputs["input_features"], output_hidden_states=True)
    hidden = torch.stack(direct.hidden_states)[:, 0].numpy()  # (L, 1500, D)
    assert hidden.shape == (3, 1500, HIDDEN)
    features = _features(extractor.extract([Item("a", audio)], LAYERS)[0])
    for index, name in enumerate(LAYERS):
        np.testing.assert_allclose(features.seq[name], hidden[index, :50], atol=ATOL, rtol=0)
    np.testing.assert_allclose(features.pooled["mean"], hidden[:, :50].mean(axis=1), atol=ATOL, rtol=0)
    np.testing.assert_allclose(features.pooled["std"], hidden[:, :50].std(axis=1), atol=ATOL, rtol=0)
    np.testing.assert_allclose(features.seq["layer_02"], direct.last_hidden_state[0, :50].numpy(), atol=ATOL, rtol=0)
    # the padded tail is not pooled: stats over all 1500 frames are different
    assert not np.allclose(features.pooled["mean"], hidden.mean(axis=1), atol=1e-3)


def test_long_audio_is_processed_in_30s_chunks(extractor: WhisperEncoderExtractor) -> None:
    audio = _noise(31 * RATE, seed=4)
    features = _features(extractor.extract([Item("long", audio), Item("short", _noise(8000, seed=5))], LAYERS)[0])
    assert features.note is not None
    assert "processed in 2 chunks" in features.note
    assert all(features.seq[name].shape == (1550, HIDDEN) for name in LAYERS)
    halves = [Item("a", audio[: 30 * RATE]), Item("b", audio[30 * RATE :])]
    first, rest = (_features(r) for r in extractor.extract(halves, LAYERS))
    assert (first.seq["layer_00"].shape[0], rest.seq["layer_00"].shape[0]) == (1500, 50)
    for name in LAYERS:
        np.testing.assert_allclose(
            features.seq[name], np.concatenate([first.seq[name], rest.seq[name]]), atol=ATOL, rtol=0
        )
    frames = np.stack([features.seq[name] for name in LAYERS]).astype(np.float64)
    np.testing.assert_allclose(features.pooled["mean"], frames.mean(axis=1), atol=ATOL, rtol=0)
    np.testing.assert_allclose(features.pooled["std"], frames.std(axis=1), atol=ATOL, rtol=0)


def test_build_errors(tiny_whisper: Path, tiny_hubert_layer: Path) -> None:
    with pytest.raises(ExtractorError, match="accepted") as raised:
        build_extractor("whisper", "tiny", checkpoint=str(tiny_whisper), max_seconds=10)
    assert "max_seconds" in str(raised.value) and "revision" in str(raised.value)
    with pytest.raises(ExtractorError, match="not a Whisper model"):
        build_extractor("whisper", "tiny", checkpoint=str(tiny_hubert_layer))
    with pytest.raises(ExtractorError, match="--dtype"):
        build_extractor("whisper", "tiny", checkpoint=str(tiny_whisper), dtype="int8")
    with pytest.raises(UnknownNameError, match="unknown whisper preset 'huge'"):
        build_extractor("whisper", "huge", checkpoint=str(tiny_whisper))
