"""Log-mel extractor: frame counts, tone placement, silence floor, pooled statistics, both presets."""

from __future__ import annotations

import numpy as np
import pytest

from ser.errors import UnknownNameError
from ser.extract.base import ExtractorError, Features, Item, ItemRejected
from ser.extract.logmel import LogMelExtractor, build
from ser.extract.registry import build_extractor

pytest.importorskip("transformers")

SR = 16000
HOPS = {"64": 160, "librosa": 512}


def tone(seconds: float, freq: float = 1000.0, amplitude: float = 0.5) -> np.ndarray:
    """(samples,) float32 sine."""
    t = np.arange(round(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module", params=["64", "librosa"])
def extractor(request: pytest.FixtureRequest) -> LogMelExtractor:
    return build(request.param)


def one(extractor: LogMelExtractor, audio: np.ndarray, seq: tuple[str, ...] = ("logmel",)) -> Features:
    [result] = extractor.extract([Item(id="x", audio=audio)], seq)
    assert isinstance(result, Features), result
    return result


def test_spec(extractor: LogMelExtractor) -> None:
    spec = extractor.spec
    preset = spec.preset
    assert (spec.name, spec.modality, spec.sample_rate) == ("logmel", "audio", SR)
    assert spec.frame_rate == {"64": 100.0, "librosa": 31.25}[preset]
    assert spec.pooled == {"mean": (1, 64), "std": (1, 64)} and spec.seq_layers == {"logmel": 64}
    assert spec.min_samples == {"64": 400, "librosa": 2048}[preset]
    assert extractor.config()["preset"] == preset and extractor.upstream()["transformers"]


@pytest.mark.parametrize("n", [2048, 2049, 16000, 16159, 16160, 24000, 33333])
def test_frame_count(extractor: LogMelExtractor, n: int) -> None:
    frames = one(extractor, tone(n / SR)).seq["logmel"]
    assert frames.shape == (1 + n // HOPS[extractor.spec.preset], 64) and frames.dtype == np.float32


def test_frame_count_examples() -> None:
    assert one(build("64"), tone(1.5)).seq["logmel"].shape == (151, 64)
    assert one(build("librosa"), tone(1.5)).seq["logmel"].shape == (47, 64)


def test_1khz_tone_peaks_in_the_band_holding_1khz(extractor: LogMelExtractor) -> None:
    centres = extractor.band_centres()
    assert centres.shape == (64,) and np.all(np.diff(centres) > 0)
    expected = int(np.argmin(np.abs(centres - 1000.0)))
    assert centres[expected - 1] < 1000.0 < centres[expected + 1]
    # every band is the strongest filter at its own peak bin
    np.testing.assert_array_equal(
        np.argmax(extractor.mel_filters, axis=1)[np.argmax(extractor.mel_filters, axis=0)], np.arange(64)
    )
    frames = one(extractor, tone(1.0)).seq["logmel"]
    assert np.all(np.argmax(frames[2:-2], axis=1) == expected)
    assert int(np.argmax(frames.mean(axis=0))) == expected


def test_digital_silence_inside_a_clip_stays_finite(extractor: LogMelExtractor) -> None:
    audio = tone(1.0)
    audio[SR // 2 :] = 0.0
    frames = one(extractor, audio).seq["logmel"]
    assert np.isfinite(frames).all()
    silent = frames[-2:]  # the last frames see zeros only
    if extractor.spec.preset == "64":
        np.testing.assert_allclose(silent, np.log(1e-6), rtol=1e-6)
        assert frames.min() == pytest.approx(np.log(1e-6))  # silence is the floor, never "loud"
    else:
        np.testing.assert_allclose(silent, -80.0)
        assert frames.max() == 0.0


def test_pooled_are_numpy_mean_and_std_of_the_sequence(extractor: LogMelExtractor) -> None:
    rng = np.random.default_rng(0)
    audio = (tone(1.3, freq=440.0) + 0.05 * rng.standard_normal(round(1.3 * SR))).astype(np.float32)
    features = one(extractor, audio)
    frames = features.seq["logmel"]
    assert features.pooled["mean"].shape == features.pooled["std"].shape == (1, 64)
    np.testing.assert_allclose(features.pooled["mean"][0], frames.mean(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features.pooled["std"][0], frames.std(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-5)
    assert one(extractor, audio, seq=()).seq == {}


def test_librosa_preset_is_db_re_max() -> None:
    rng = np.random.default_rng(1)
    audio = (tone(2.0, freq=300.0, amplitude=0.1) + 0.01 * rng.standard_normal(2 * SR)).astype(np.float32)
    extractor = build("librosa")
    frames = one(extractor, audio).seq["logmel"]
    assert frames.max() == 0.0 and frames.min() >= -80.0
    # ref = max makes the level irrelevant (peak normalisation aside)
    np.testing.assert_allclose(one(extractor, 5 * audio).seq["logmel"], frames, atol=1e-4)
    [rejected] = extractor.extract([Item(id="z", audio=np.zeros(SR, dtype=np.float32))], ["logmel"])
    assert isinstance(rejected, ItemRejected) and "silence" in str(rejected)


def test_preset_64_is_an_absolute_natural_log() -> None:
    extractor = build("64")
    quiet = one(extractor, tone(1.0, amplitude=0.1)).seq["logmel"]
    loud = one(extractor, tone(1.0, amplitude=0.2)).seq["logmel"]
    band = int(np.argmax(quiet.mean(axis=0)))
    np.testing.assert_allclose(loud[:, band] - quiet[:, band], np.log(4.0), atol=1e-3)  # power doubles twice


def test_preset_64_frame_matches_a_direct_fft() -> None:
    """Frame t is centred on sample 160 t: 400-sample Hann centred in a 512-point frame, power, mel, log."""
    extractor = build("64")
    rng = np.random.default_rng(2)
    audio = rng.standard_normal(SR).astype(np.float32) * 0.1
    frames = one(extractor, audio).seq["logmel"]
    t = 20
    segment = audio[t * 160 - 256 : t * 160 + 256].astype(np.float64)
    power = np.abs(np.fft.rfft(segment * extractor.window)) ** 2
    expected = np.log(power @ extractor.mel_filters + 1e-6)
    np.testing.assert_allclose(frames[t], expected, rtol=1e-5, atol=1e-5)
    assert np.count_nonzero(extractor.window) == 399  # periodic Hann of 400 (first sample 0), zero-padded to 512


def test_short_audio_is_padded_with_a_note(extractor: LogMelExtractor) -> None:
    features = one(extractor, tone(0.01))  # 160 samples
    assert features.note is not None and f"to {extractor.spec.min_samples} samples" in features.note
    assert features.seq["logmel"].shape[0] == 1 + extractor.spec.min_samples // HOPS[extractor.spec.preset]
    assert np.isfinite(features.seq["logmel"]).all()


def test_build_options() -> None:
    assert build_extractor("logmel").spec.preset == "64"
    assert build_extractor("logmel", "librosa").spec.frame_rate == 31.25
    assert build("64", n_mels=40).spec.seq_layers == {"logmel": 40}
    with pytest.raises(ExtractorError, match="checkpoint"):
        build("64", checkpoint="/x")
    with pytest.raises(ExtractorError, match="unknown options"):
        build("64", layers=3)
    with pytest.raises(UnknownNameError, match="unknown logmel preset '128'; choose one of 64, librosa"):
        build("128")
    with pytest.raises(ExtractorError, match="no sequence layer"):
        build("64").extract([Item(id="x", audio=tone(0.5))], ["lld"])
