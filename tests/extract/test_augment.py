"""Waveform augmentation and corruption: policy parsing, the numbers each transform promises (SNR,
pitch, length, decay), determinism under a seed, and row ids linked to their source."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from ser.extract.augment import (
    AugmentError,
    apply_chain,
    augmented_id,
    describe_corruption,
    load_policy,
    parse_corruption,
    parse_policy,
    parse_transform,
    row_seed,
    source_of,
    synthetic_room_response,
)

pytest.importorskip("audiomentations")
RATE = 16000


def sine(freq: float = 220.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy - clean
    return float(10 * np.log10(np.mean(clean**2) / np.mean(noise**2)))


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_coloured_noise_lands_at_the_requested_snr(color: str, snr: float) -> None:
    clean = sine()
    noisy = apply_chain((parse_corruption(f"{color}@{snr:g}dB"),), clean, RATE, seed=3)
    assert noisy.shape == clean.shape
    assert snr_db(clean, noisy) == pytest.approx(snr, abs=0.3)


def test_noise_files_from_a_folder_at_the_requested_snr(tmp_path: Path) -> None:
    import soundfile

    folder = tmp_path / "noises"
    folder.mkdir()
    rng = np.random.default_rng(0)
    soundfile.write(folder / "hum.wav", (0.1 * rng.standard_normal(3 * RATE)).astype(np.float32), RATE)
    clean = sine(seconds=2.0)
    noisy = apply_chain((parse_corruption(f"{folder}@5dB"),), clean, RATE, seed=1)
    assert snr_db(clean, noisy) == pytest.approx(5.0, abs=0.5)
    assert describe_corruption(parse_corruption(f"{folder}@5dB")) == {"type": "noises", "snr_db": 5.0}


def test_pitch_shift_moves_the_pitch_by_the_semitones() -> None:
    shifted = apply_chain((parse_transform({"pitch_shift": {"semitones": 12}}, "t"),), sine(220.0), RATE, seed=0)
    assert peak_hz(shifted) == pytest.approx(440.0, rel=0.03)
    down = apply_chain((parse_transform({"pitch_shift": {"semitones": -5}}, "t"),), sine(440.0), RATE, seed=0)
    assert peak_hz(down) == pytest.approx(440.0 * 2 ** (-5 / 12), rel=0.03)


@pytest.mark.parametrize("rate", [0.5, 0.8, 1.25, 2.0])
def test_time_stretch_changes_the_length_by_the_rate(rate: float) -> None:
    stretched = apply_chain((parse_transform({"time_stretch": {"rate": rate}}, "t"),), sine(seconds=2.0), RATE, 0)
    assert len(stretched) == pytest.approx(2 * RATE / rate, rel=0.03)
    assert peak_hz(stretched) == pytest.approx(220.0, rel=0.03)  # the pitch stays


def test_synthetic_reverb_decays_60_db_over_rt60_and_keeps_loudness() -> None:
    rt60 = 0.5
    response = synthetic_room_response(rt60, RATE, np.random.default_rng(0))
    assert response[0] == 1.0 and len(response) == int(1.5 * rt60 * RATE)
    window = int(0.02 * RATE)
    start = np.mean(response[1 : 1 + window] ** 2)
    at_rt60 = np.mean(response[int(rt60 * RATE) - window : int(rt60 * RATE)] ** 2)
    assert 10 * np.log10(start / at_rt60) == pytest.approx(60.0, abs=4.0)
    clean = sine()
    wet = apply_chain((parse_corruption("reverb@0.5s"),), clean, RATE, seed=2)
    assert wet.shape == clean.shape
    assert np.sqrt(np.mean(wet**2)) == pytest.approx(np.sqrt(np.mean(clean**2)), rel=1e-3)
    assert not np.allclose(wet, clean)


def test_chains_are_deterministic_per_seed_and_leave_global_random_state_alone() -> None:
    chain = (
        parse_transform({"pitch_shift": {"semitones": [-3, 3]}}, "t"),
        parse_transform({"noise": {"color": "white", "snr_db": [5, 30]}}, "t"),
    )
    clean = sine()
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    a = apply_chain(chain, clean, RATE, seed=7)
    assert (random.random(), np.random.random()) == before
    b = apply_chain(chain, clean, RATE, seed=7)
    c = apply_chain(chain, clean, RATE, seed=8)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_probability_zero_never_applies_and_one_always_does() -> None:
    never = (parse_transform({"gain": {"db": 6}, "p": 0.0}, "t"),)
    always = (parse_transform({"gain": {"db": 6}, "p": 1.0}, "t"),)
    clean = sine()
    assert np.array_equal(apply_chain(never, clean, RATE, 0), clean)
    assert np.allclose(apply_chain(always, clean, RATE, 0), clean * 10 ** (6 / 20), atol=1e-5)


def test_row_seeds_and_augmented_ids() -> None:
    assert row_seed(0, "a", 0) == row_seed(0, "a", 0)
    assert len({row_seed(0, "a", 0), row_seed(0, "a", 1), row_seed(1, "a", 0), row_seed(0, "b", 0)}) == 4
    assert augmented_id("Ses01F_impro01_F000", 2) == "Ses01F_impro01_F000@aug2"
    assert source_of("Ses01F_impro01_F000@aug2") == "Ses01F_impro01_F000"
    assert source_of("Ses01F_impro01_F000") is None and source_of("x@augment") is None


def test_policies_choose_a_chain_per_class(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "seed: 4\nlabel_set: iemocap4\n"
        "default: {copies: 1, chain: [{noise: {color: white, snr_db: [20, 30]}}]}\n"
        "classes:\n  sad: {copies: 2, chain: [{time_stretch: {rate: [0.7, 0.9]}}]}\n"
        "  hap: [{pitch_shift: {semitones: [-4, 4]}, p: 0.5}]\n"
    )
    policy = load_policy(path)
    assert policy.seed == 4 and policy.label_set == "iemocap4"
    assert policy.chain_for("sad").copies == 2 and policy.chain_for("sad").transforms[0].kind == "time_stretch"
    assert policy.chain_for("hap").transforms[0].p == 0.5
    assert policy.chain_for("ang") is policy.default and policy.chain_for(None) is policy.default
    assert parse_policy({"classes": {"sad": [{"gain": {"db": 1}}]}}).chain_for("ang") is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"classes": {"sad": [{"warp": {"x": 1}}]}}, "unknown transform 'warp'"),
        ({"classes": {"sad": [{"pitch_shift": {"semitones": [3, -3]}}]}}, "reversed"),
        ({"classes": {"sad": [{"pitch_shift": {}}]}}, "needs semitones"),
        ({"classes": {"sad": [{"noise": {"snr_db": 5}}]}}, "exactly one of color"),
        ({"classes": {"sad": [{"noise": {"color": "green", "snr_db": 5}}]}}, "noise color must be"),
        ({"classes": {"sad": [{"noise": {"folder": "/no/such/dir", "snr_db": 5}}]}}, "is not a folder"),
        ({"classes": {"sad": {"copies": 0, "chain": [{"gain": {"db": 1}}]}}}, "positive integer"),
        ({"classes": {"sad": [{"gain": {"db": 1}, "p": 2}]}}, "probability"),
        ({"classes": {"sad": [{"gain": {"db": 1}, "pitch_shift": {"semitones": 1}}]}}, "one transform per"),
        ({"seed": 0}, "augments nothing"),
        ({"policy": {}}, "unknown keys"),
    ],
)
def test_malformed_policies_are_refused_by_name(record: dict, message: str) -> None:
    with pytest.raises(AugmentError, match=message):
        parse_policy(record)


@pytest.mark.parametrize("spec", ["white", "white@10", "white@10Hz", "reverb@10dB", "pink@0.5s", "@3dB"])
def test_malformed_corruptions_are_refused(spec: str) -> None:
    with pytest.raises(AugmentError, match="--corrupt"):
        parse_corruption(spec)


def test_corruption_descriptions() -> None:
    assert describe_corruption(parse_corruption("white@10dB")) == {"type": "white", "snr_db": 10.0}
    assert describe_corruption(parse_corruption("pink@-5dB")) == {"type": "pink", "snr_db": -5.0}
    assert describe_corruption(parse_corruption("reverb@0.6s")) == {"type": "reverb", "rt60": 0.6}
