"""eGeMAPS extractor with the real openSMILE on generated audio and on one real RAVDESS clip."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from ser.errors import UnknownNameError
from ser.extract.audio import load_audio
from ser.extract.base import ExtractorError, Features, Item, ItemRejected
from ser.extract.egemaps import MIN_SAMPLES, EgemapsExtractor, build, lld_frame_count
from ser.extract.registry import build_extractor

opensmile = pytest.importorskip("opensmile")

SR = 16000


def voice_like(seconds: float, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """(samples,) float32: a 180 Hz harmonic tone (5 partials, slight vibrato) plus faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    phase = 2 * np.pi * (180.0 * t + 2.0 * np.sin(2 * np.pi * 5.0 * t))
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    signal = amplitude * tone / np.max(np.abs(tone)) + 0.005 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


@pytest.fixture(scope="module")
def extractor() -> EgemapsExtractor:
    return build("v02")


def one(extractor: EgemapsExtractor, audio: np.ndarray, seq: tuple[str, ...] = ("lld",)) -> Features:
    [result] = extractor.extract([Item(id="x", audio=audio)], seq)
    assert isinstance(result, Features), result
    return result


def test_spec_and_names(extractor: EgemapsExtractor) -> None:
    spec = extractor.spec
    assert (spec.name, spec.preset, spec.modality) == ("egemaps", "v02", "audio")
    assert spec.sample_rate == SR and spec.frame_rate == 100.0
    assert spec.pooled == {"functionals": (1, 88), "lld_mean": (1, 25), "lld_std": (1, 25)}
    assert spec.seq_layers == {"lld": 25}
    assert spec.min_samples == MIN_SAMPLES == 960 and spec.supports_padding
    upstream = extractor.upstream()
    assert upstream["model"] == "openSMILE eGeMAPSv02" and upstream["opensmile"]
    assert len(upstream["functional_names"]) == 88 and len(set(upstream["functional_names"])) == 88
    assert len(upstream["lld_names"]) == 25 and upstream["lld_names"][0] == "Loudness_sma3"
    assert "loudness_sma3_amean" in upstream["functional_names"]
    config = extractor.config()
    assert config["feature_set"] == "eGeMAPSv02" and config["opensmile"] == upstream["opensmile"]


def test_features_of_a_tone(extractor: EgemapsExtractor) -> None:
    audio = voice_like(1.5)
    features = one(extractor, audio)
    functionals = features.pooled["functionals"]
    assert functionals.shape == (1, 88) and functionals.dtype == np.float32
    assert np.isfinite(functionals).all()
    lld = features.seq["lld"]
    assert lld.shape == (lld_frame_count(audio.size), 25) == (146, 25)  # (24000 - 800) // 160 + 1
    assert abs(lld.shape[0] - audio.size / SR * 100) <= 5
    assert np.isfinite(lld).all() and features.note is None
    np.testing.assert_allclose(
        features.pooled["lld_mean"][0], lld.astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(features.pooled["lld_std"][0], lld.astype(np.float64).std(axis=0), rtol=1e-5, atol=1e-6)
    # the F0 functional finds the 180 Hz fundamental: semitones above 27.5 Hz
    names = extractor.upstream()["functional_names"]
    f0 = functionals[0, names.index("F0semitoneFrom27.5Hz_sma3nz_amean")]
    assert f0 == pytest.approx(12 * np.log2(180 / 27.5), abs=1.0)


@pytest.mark.parametrize("n", [960, 961, 1119, 1120, 4000, 16159, 16160, 33333])
def test_lld_frame_count_formula(extractor: EgemapsExtractor, n: int) -> None:
    features = one(extractor, voice_like(n / SR, seed=n))
    assert features.seq["lld"].shape[0] == lld_frame_count(n) == (n - 800) // 160 + 1


def test_louder_signal_has_higher_loudness(extractor: EgemapsExtractor) -> None:
    column = extractor.upstream()["functional_names"].index("loudness_sma3_amean")
    quiet = one(extractor, voice_like(1.5, amplitude=0.05)).pooled["functionals"][0, column]
    loud = one(extractor, voice_like(1.5, amplitude=0.5)).pooled["functionals"][0, column]
    assert loud > quiet > 0


def test_too_short_audio_is_padded_with_a_note(extractor: EgemapsExtractor) -> None:
    features = one(extractor, voice_like(0.02))  # 320 samples
    assert features.note is not None and "padded from 320 to 960" in features.note
    assert np.isfinite(features.pooled["functionals"]).all()
    assert features.seq["lld"].shape == (lld_frame_count(960), 25) == (2, 25)


def test_openSMILE_minimum_is_960_samples() -> None:  # noqa: N802
    """The measured minimum behind MIN_SAMPLES: 959 samples give NaN, 960 give finite features."""
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Segment too short, filling with NaN."
        assert np.isnan(smile.process_signal(voice_like(959 / SR), SR).to_numpy()).all()
    assert np.isfinite(smile.process_signal(voice_like(960 / SR), SR).to_numpy()).all()


def test_nan_output_rejects_the_item(extractor: EgemapsExtractor) -> None:
    unpadded = EgemapsExtractor()
    unpadded.spec = dataclasses.replace(unpadded.spec, min_samples=0)  # let a too-short signal through
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        short, fine = unpadded.extract(
            [Item(id="s", audio=voice_like(0.03)), Item(id="f", audio=voice_like(0.5))], ["lld"]
        )
    assert isinstance(short, ItemRejected) and "non-finite" in str(short)
    assert isinstance(fine, Features)


def test_deterministic_and_seq_only_on_request(extractor: EgemapsExtractor) -> None:
    audio = voice_like(1.2, seed=3)
    first, second = extractor.extract([Item(id="a", audio=audio), Item(id="b", audio=audio.copy())], ["lld"])
    assert isinstance(first, Features) and isinstance(second, Features)
    for key in first.pooled:
        np.testing.assert_array_equal(first.pooled[key], second.pooled[key])
    np.testing.assert_array_equal(first.seq["lld"], second.seq["lld"])
    again = one(extractor, audio, seq=())
    assert again.seq == {}
    np.testing.assert_array_equal(again.pooled["functionals"], first.pooled["functionals"])


def test_build_options() -> None:
    assert build_extractor("egemaps").spec.name == "egemaps"
    with pytest.raises(ExtractorError, match="checkpoint"):
        build("v02", checkpoint="/some/path")
    with pytest.raises(ExtractorError, match="unknown options"):
        build("v02", n_mels=3)
    with pytest.raises(ExtractorError, match="at least 960"):
        build("v02", min_samples=100)
    with pytest.raises(UnknownNameError, match="unknown egemaps preset 'v01'; choose one of v02"):
        build("v01")
    with pytest.raises(ExtractorError, match="no sequence layer"):
        build("v02").extract([Item(id="x", audio=voice_like(0.5))], ["logmel"])


def test_real_ravdess_clip(extractor: EgemapsExtractor, ravdess_root: Path) -> None:
    clips = sorted(ravdess_root.glob("Actor_*/*.flac")) + sorted(ravdess_root.glob("Actor_*/*.wav"))
    if not clips:
        pytest.skip(f"no audio files under {ravdess_root}")
    audio = load_audio(clips[0], sample_rate=SR)
    features = one(extractor, audio)
    assert np.isfinite(features.pooled["functionals"]).all()
    assert np.isfinite(features.pooled["lld_mean"]).all() and np.isfinite(features.pooled["lld_std"]).all()
    frames = features.seq["lld"].shape[0]
    assert frames == lld_frame_count(audio.size)
    assert abs(frames - audio.size / SR * 100) <= 5


# ---------------------------------------------------------------------- one openSMILE run for both levels


def _two_passes(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    levels = (opensmile.FeatureLevel.Functionals, opensmile.FeatureLevel.LowLevelDescriptors)
    functionals, lld = (
        opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=level)
        .process_signal(audio, SR)
        .to_numpy(dtype=np.float32)
        for level in levels
    )
    return functionals.reshape(-1), lld


@pytest.mark.parametrize(
    ("name", "audio"),
    [
        ("voice 2.5 s", voice_like(2.5, seed=7)),
        ("minimum 960", voice_like(MIN_SAMPLES / SR, seed=8)),
        ("noise", (0.05 * np.random.default_rng(9).standard_normal(SR)).astype(np.float32)),
        ("loud clipped", np.clip(3 * voice_like(1.0, seed=10), -1.0, 0.99997)),
    ],
)
def test_one_pass_equals_two_smile_passes_bit_for_bit(
    extractor: EgemapsExtractor, name: str, audio: np.ndarray
) -> None:
    assert extractor._one_pass is not None  # openSMILE 2.6 supports it; the fallback is tested below
    got_functionals, got_lld = extractor._one_pass(audio)
    want_functionals, want_lld = _two_passes(audio)
    assert got_functionals.shape == (88,) and got_lld.shape == (lld_frame_count(audio.size), 25)
    np.testing.assert_array_equal(got_functionals, want_functionals, err_msg=name)
    np.testing.assert_array_equal(got_lld, want_lld, err_msg=name)


def test_one_pass_gives_nan_functionals_for_a_too_short_signal(extractor: EgemapsExtractor) -> None:
    assert extractor._one_pass is not None
    functionals, lld = extractor._one_pass(voice_like(0.03))
    assert functionals.shape == (88,) and np.isnan(functionals).all() and lld.shape[0] == 0


def test_two_pass_fallback_gives_the_same_features(monkeypatch: pytest.MonkeyPatch) -> None:
    import ser.extract.smile_pass as smile_pass

    class Broken:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AttributeError("Smile has no attribute '_options'")  # as if opensmile-python changed

    monkeypatch.setattr(smile_pass, "OnePass", Broken)
    fallback = build("v02")
    assert fallback._one_pass is None
    monkeypatch.undo()
    single = build("v02")
    assert single._one_pass is not None
    audio = voice_like(1.7, seed=11)
    a, b = one(fallback, audio), one(single, audio)
    for key in a.pooled:
        np.testing.assert_array_equal(a.pooled[key], b.pooled[key])
    np.testing.assert_array_equal(a.seq["lld"], b.seq["lld"])
    assert fallback.config() == single.config()  # the same features: stores stay interchangeable


def test_audio_above_full_scale_is_clipped_not_wrapped(extractor: EgemapsExtractor) -> None:
    loud = voice_like(1.0, amplitude=1.6)
    clipped = np.clip(loud, -1.0, 32767 / 32768)
    over = int(np.count_nonzero(np.abs(loud) >= 32767 / 32768))
    got, reference = one(extractor, loud), one(extractor, clipped)
    assert got.note is not None and got.note.startswith(f"clipped {over} samples above full scale")
    assert reference.note is None  # the clipped signal itself needs nothing
    np.testing.assert_array_equal(got.pooled["functionals"], reference.pooled["functionals"])
    np.testing.assert_array_equal(got.seq["lld"], reference.seq["lld"])
    wrapped = ((loud * 32768).astype(np.int64).astype(np.int16) / 32768).astype(np.float32)  # the old conversion
    assert not np.allclose(one(extractor, wrapped).pooled["lld_mean"], got.pooled["lld_mean"], rtol=0.05)
    assert extractor.config()["pcm"].startswith("float audio clipped")  # old stores hash differently
