"""Audio arrays given to the Python API are read as a sound file would be (integer PCM scaled,
channels on the shorter axis) or refused in one line (a rate of 0, a bad dtype, too many axes);
``batch_size`` and ``max_seconds`` are checked when a model is loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from ser.errors import UserError
from ser.predict.model import Request, load_model
from ser.predict.samples import MAX_CHANNELS, as_samples, check_sample_rate


def test_integer_pcm_is_scaled_to_full_scale_as_soundfile_reads_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pcm = (rng.uniform(-0.5, 0.5, 800) * 32767).astype(np.int16)
    path = tmp_path / "pcm.wav"
    soundfile.write(path, pcm, 16000, subtype="PCM_16")
    read, _ = soundfile.read(path, dtype="float32")
    np.testing.assert_allclose(as_samples(pcm), read, atol=1e-7)
    np.testing.assert_allclose(as_samples(np.array([-(2**31), 0, 2**30], dtype=np.int32)), [-1.0, 0.0, 0.5])
    np.testing.assert_allclose(as_samples(np.array([0, 128, 192], dtype=np.uint8)), [-1.0, 0.0, 0.5])
    floats = np.array([0.25, -0.5], dtype=np.float64)
    assert as_samples(floats).dtype == np.float32 and as_samples(floats).tolist() == [0.25, -0.5]


def test_channels_are_the_shorter_axis_whichever_way_round() -> None:
    stereo = np.stack([np.linspace(-1, 1, 500), np.zeros(500)], axis=1).astype(np.float32)  # (500, 2)
    np.testing.assert_array_equal(as_samples(stereo.T), stereo)  # (2, 500) is stereo too
    assert as_samples(stereo).shape == (500, 2)
    with pytest.raises(UserError, match=rf"{MAX_CHANNELS + 6} channels on its shorter axis"):
        as_samples(np.zeros((MAX_CHANNELS + 6, 4000)))
    with pytest.raises(UserError, match=r"one axis \(samples,\) or two"):
        as_samples(np.zeros((2, 3, 400)))
    for bad in (np.zeros(10, dtype=bool), np.zeros(10, dtype=complex), np.array(["a", "b"])):
        with pytest.raises(UserError, match="samples must be real numbers"):
            as_samples(bad)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16000", None, True, 10**9])
def test_a_rate_that_is_not_whole_hz_in_range_is_refused(rate: object) -> None:
    with pytest.raises(UserError, match="sample_rate must be"):
        check_sample_rate(rate)
    with pytest.raises(UserError, match="input 'x': sample_rate must be"):
        Request(id="x", samples=np.ones(16000), sample_rate=rate)  # type: ignore[arg-type]
    assert check_sample_rate(16000.0) == 16000 and check_sample_rate(np.int64(8000)) == 8000


def test_an_int16_array_and_a_channels_first_array_answer_as_the_file_does(tone_model) -> None:
    run, clip = tone_model
    model = load_model(run, device="cpu")
    samples, rate = soundfile.read(clip, dtype="float32")
    reference = model.predict(clip).probabilities
    pcm = np.round(samples * 32767).astype(np.int16)
    as_int = model.predict(pcm, sample_rate=rate).probabilities
    assert as_int.keys() == reference.keys()
    np.testing.assert_allclose(list(as_int.values()), list(reference.values()), atol=2e-3)
    stereo_first = np.stack([samples, samples])  # (2, n)
    as_stereo = model.predict(stereo_first, sample_rate=rate).probabilities
    np.testing.assert_allclose(list(as_stereo.values()), list(reference.values()), atol=1e-5)
    with pytest.raises(UserError, match="sample_rate must be from"):
        model.predict(samples, sample_rate=0)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("batch_size", 0, "batch_size must be a whole number >= 1"),
    ("batch_size", -1, "batch_size must be a whole number >= 1"),
    ("batch_size", 2.5, "batch_size must be a whole number >= 1"),
    ("max_seconds", 0.0, "max_seconds must be a finite number > 0"),
    ("max_seconds", float("nan"), "max_seconds must be a finite number > 0"),
])  # fmt: skip
def test_batch_size_and_max_seconds_are_checked_on_load(tone_model, option: str, value: object, message: str) -> None:
    from ser.predict.model import SerModel

    run, _ = tone_model
    with pytest.raises(UserError, match=message):
        SerModel(run, device="cpu", **{option: value})  # type: ignore[arg-type]
