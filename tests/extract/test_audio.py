"""Audio input: decoding (soundfile and PyAV), down-mix, resampling, segments, rejects, padding and chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("soxr")

import soundfile as sf

from ser.extract.audio import AudioError, load_audio, pad_to_minimum, split_chunks

RATE = 16000


def _sine(freq: float, seconds: float, rate: int, amplitude: float) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _noise(n_samples: int, seed: int, amplitude: float = 0.1) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(n_samples)).astype(np.float32)


# ---------------------------------------------------------------------- soundfile formats


def test_int16_stereo_48k_wav_is_downmixed_and_resampled(tmp_path: Path) -> None:
    left, right = _sine(440, 0.5, 48000, 0.6), _sine(440, 0.5, 48000, 0.2)
    path = tmp_path / "stereo48k.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="PCM_16")
    assert sf.info(str(path)).channels == 2
    audio = load_audio(path, sample_rate=RATE)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert audio.size == 8000  # 0.5 s at 16 kHz
    expected = _sine(440, 0.5, RATE, 0.4)  # the mean of the two channels, at the new rate
    interior = slice(200, -200)  # away from the resampler's edge transients
    assert np.max(np.abs(audio[interior])) == pytest.approx(0.4, rel=0.01)
    np.testing.assert_allclose(audio[interior], expected[interior], atol=0.01, rtol=0)


def test_flac_at_16k_is_read_unchanged(tmp_path: Path) -> None:
    samples = _noise(12345, seed=1)
    path = tmp_path / "clip.flac"
    sf.write(path, samples, RATE, subtype="PCM_16")
    audio = load_audio(path, sample_rate=RATE)
    native, rate = sf.read(str(path), dtype="float32")
    assert rate == RATE
    np.testing.assert_array_equal(audio, native)
    np.testing.assert_allclose(audio, samples, atol=1 / 32768, rtol=0)


def test_flac_at_22050_is_resampled(tmp_path: Path) -> None:
    path = tmp_path / "clip22k.flac"
    sf.write(path, _sine(300, 1.0, 22050, 0.5), 22050)
    audio = load_audio(path, sample_rate=RATE)
    assert audio.size == RATE
    assert np.max(np.abs(audio[200:-200])) == pytest.approx(0.5, rel=0.01)


@pytest.mark.parametrize(
    ("start", "end", "first", "last"),
    [(0.25, 0.75, 4000, 12000), (0.5, None, 8000, 16000), (None, 0.1, 0, 1600), (0.3125, 0.3126, 5000, 5002)],
    ids=["start-end", "start-only", "end-only", "two-samples"],
)
def test_segment_returns_exactly_those_samples(
    tmp_path: Path, start: float | None, end: float | None, first: int, last: int
) -> None:
    samples = _noise(RATE, seed=2)
    path = tmp_path / "source16k.wav"
    sf.write(path, samples, RATE, subtype="FLOAT")  # float WAV: bit-exact round trip, no resampling at 16 kHz
    audio = load_audio(path, sample_rate=RATE, start=start, end=end)
    np.testing.assert_array_equal(audio, samples[first:last])


def test_uppercase_suffix_uses_soundfile(tmp_path: Path) -> None:
    samples = _noise(1600, seed=3)
    path = tmp_path / "LOUD.WAV"
    sf.write(path, samples, RATE, subtype="FLOAT", format="WAV")
    np.testing.assert_array_equal(load_audio(path, sample_rate=RATE), samples)


# ---------------------------------------------------------------------- PyAV containers


def _write_container(path: Path, container_format: str, codec: str, channels: np.ndarray, rate: int) -> None:
    """Encode (C, N) float samples with PyAV in the codec's first sample format."""
    av = pytest.importorskip("av")
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV has no {codec} encoder here")
    layout = "mono" if channels.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        sample_format = stream.codec_context.codec.audio_formats[0]
        data: np.ndarray = channels
        if sample_format.name.startswith("s16"):
            data = np.round(channels * 32767).astype(np.int16)
        if not sample_format.is_planar:
            data = data.T.reshape(1, -1)  # interleaved
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=sample_format.name, layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_aac_in_mp4_container_decodes_with_pyav(tmp_path: Path) -> None:
    path = tmp_path / "clip.m4a"  # a suffix soundfile is never asked to read
    _write_container(path, "mp4", "aac", _sine(440, 1.0, RATE, 0.5)[None], RATE)
    audio = load_audio(path, sample_rate=RATE)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert 0.95 * RATE <= audio.size <= 1.1 * RATE  # AAC adds encoder priming / frame padding
    assert np.max(np.abs(audio)) == pytest.approx(0.5, rel=0.1)


def test_int16_stereo_flac_in_matroska_is_downmixed_and_scaled(tmp_path: Path) -> None:
    """Packed (interleaved) integer samples: channels split correctly, scaled to [-1, 1]."""
    left, right = _sine(440, 1.0, RATE, 0.6), _sine(1000, 1.0, RATE, 0.2)
    path = tmp_path / "clip.mkv"
    _write_container(path, "matroska", "flac", np.stack([left, right]), RATE)
    audio = load_audio(path, sample_rate=RATE)
    assert audio.size == RATE  # FLAC is lossless and sample-exact
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-4, rtol=0)
    segment = load_audio(path, sample_rate=RATE, start=0.25, end=0.5)
    np.testing.assert_array_equal(segment, audio[4000:8000])


def test_container_at_another_rate_is_resampled(tmp_path: Path) -> None:
    path = tmp_path / "clip48k.mka"
    _write_container(path, "matroska", "flac", _sine(440, 0.5, 48000, 0.5)[None], 48000)
    audio = load_audio(path, sample_rate=RATE)
    assert audio.size == 8000
    np.testing.assert_allclose(audio[200:-200], _sine(440, 0.5, RATE, 0.5)[200:-200], atol=0.01, rtol=0)


def test_int32_pcm_in_a_container_is_scaled(tmp_path: Path) -> None:
    path = tmp_path / "s32.mka"
    av = pytest.importorskip("av")
    if "pcm_s32le" not in av.codecs_available:
        pytest.skip("PyAV has no pcm_s32le encoder here")
    samples = _sine(440, 0.25, RATE, 0.5)
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("pcm_s32le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.round(samples.astype(np.float64) * (2**31 - 1)).astype(np.int32)[None], format="s32", layout="mono"
        )
        frame.sample_rate, frame.pts = RATE, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    np.testing.assert_allclose(load_audio(path, sample_rate=RATE), samples, atol=1e-6, rtol=0)


def test_unsigned_8bit_pcm_in_a_container_is_centred(tmp_path: Path) -> None:
    path = tmp_path / "u8.mka"
    av = pytest.importorskip("av")
    if "pcm_u8" not in av.codecs_available:
        pytest.skip("PyAV has no pcm_u8 encoder here")
    samples = _sine(440, 0.25, RATE, 0.5)
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("pcm_u8", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.round(samples * 127 + 128).astype(np.uint8)[None], format="u8", layout="mono"
        )
        frame.sample_rate, frame.pts = RATE, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    audio = load_audio(path, sample_rate=RATE)
    assert abs(float(audio.mean())) < 0.01
    np.testing.assert_allclose(audio, samples, atol=0.01, rtol=0)


def test_container_without_audio_stream(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    if "mpeg4" not in av.codecs_available:
        pytest.skip("PyAV has no mpeg4 video encoder here")
    path = tmp_path / "video_only.mkv"
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(AudioError, match=r"^no audio stream in the container$"):
        load_audio(path, sample_rate=RATE)


# ---------------------------------------------------------------------- rejects with a reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"^missing audio file .*nowhere\.wav$"):
        load_audio(tmp_path / "nowhere.wav", sample_rate=RATE)
    with pytest.raises(AudioError, match=r"^missing audio file"):
        load_audio(tmp_path, sample_rate=RATE)  # a folder is not a file


def test_empty_file_and_empty_segment(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), dtype=np.float32), RATE)
    with pytest.raises(AudioError, match=r"^empty audio \(no samples in the file or segment\)$"):
        load_audio(empty, sample_rate=RATE)
    one_second = tmp_path / "one.wav"
    sf.write(one_second, _noise(RATE, seed=4), RATE)
    with pytest.raises(AudioError, match=r"^segment end 3.0 s is past the end of the file \(1.00 s\)"):
        load_audio(one_second, sample_rate=RATE, start=2.0, end=3.0)  # segment beyond the end
    with pytest.raises(AudioError, match=r"^empty audio"):
        load_audio(one_second, sample_rate=RATE, start=2.0)  # starts after the end
    with pytest.raises(AudioError, match=r"^impossible segment"):
        load_audio(one_second, sample_rate=RATE, start=0.5, end=0.5)
    with pytest.raises(AudioError, match=r"^impossible segment start -0.5 s"):
        load_audio(one_second, sample_rate=RATE, start=-0.5, end=0.5)  # it used to read the file's end
    assert load_audio(one_second, sample_rate=RATE, start=0.5, end=1.05).size == RATE // 2  # rounding slack


@pytest.mark.parametrize("peak", [0.0, 5e-6], ids=["digital-zero", "below-threshold"])
def test_silent_audio(tmp_path: Path, peak: float) -> None:
    path = tmp_path / "silent.wav"
    sf.write(path, np.full(RATE, peak, dtype=np.float32), RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"^silent audio \(peak amplitude below 1e-5\)$"):
        load_audio(path, sample_rate=RATE)


def test_quiet_but_not_silent_audio_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    samples = np.full(RATE, 2e-5, dtype=np.float32)
    sf.write(path, samples, RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, sample_rate=RATE), samples)


def test_too_long(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, _noise(2 * RATE, seed=5), RATE)
    with pytest.raises(AudioError, match=r"^too long: 2 s > 1 s \(raise --max-total-seconds"):
        load_audio(path, sample_rate=RATE, max_seconds=1.0)
    assert load_audio(path, sample_rate=RATE, max_seconds=2.0).size == 2 * RATE
    # the limit applies to the segment asked for, not the whole file
    assert load_audio(path, sample_rate=RATE, start=0.0, end=0.5, max_seconds=1.0).size == RATE // 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    samples = _noise(RATE, seed=6)
    samples[1234] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, samples, RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"^audio holds NaN or Inf samples$"):
        load_audio(path, sample_rate=RATE)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp4"])
def test_unreadable_bytes(tmp_path: Path, suffix: str) -> None:
    if suffix == ".mp4":
        pytest.importorskip("av")
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(b"this is not audio at all\x00\x01\x02" * 64)
    with pytest.raises(AudioError, match=r"^unreadable audio \("):
        load_audio(path, sample_rate=RATE)


# ---------------------------------------------------------------------- padding and chunking


def test_pad_to_minimum() -> None:
    short = np.arange(1, 201, dtype=np.float32)
    padded, note = pad_to_minimum(short, 400)
    assert padded.shape == (400,)
    assert padded.dtype == np.float32
    np.testing.assert_array_equal(padded[100:300], short)  # centred
    assert not padded[:100].any() and not padded[300:].any()
    assert note == "padded from 200 to 400 samples (shorter than the receptive field)"
    odd, _ = pad_to_minimum(np.ones(399, dtype=np.float32), 400)  # one missing sample goes at the end
    assert odd.size == 400 and odd[0] == 1.0 and odd[-1] == 0.0
    exact = np.ones(400, dtype=np.float32)
    same, none = pad_to_minimum(exact, 400)
    assert same is exact and none is None
    longer = np.ones(1000, dtype=np.float32)
    assert pad_to_minimum(longer, 400) == (longer, None)
    assert pad_to_minimum(longer, 0)[1] is None


def _sizes(chunks: list[np.ndarray]) -> list[int]:
    return [chunk.size for chunk in chunks]


@pytest.mark.parametrize(
    ("n_samples", "max_samples", "min_samples", "sizes"),
    [
        (32000, 16000, 400, [16000, 16000]),  # exact multiple: no empty tail
        (48000, 16000, 400, [16000, 16000, 16000]),
        (40000, 16000, 400, [16000, 16000, 8000]),
        (32500, 16000, 400, [16000, 16000, 500]),  # tail long enough for the model: kept
        (32400, 16000, 400, [16000, 16000, 400]),  # tail exactly the minimum: kept
        (32399, 16000, 400, [16000, 16399]),  # tail too short: merged into the previous chunk
        (16100, 16000, 400, [16100]),  # merging can leave one chunk a bit over the maximum
        (32001, 16000, 0, [16000, 16000, 1]),  # no minimum: any non-empty tail stands
        (16000, 16000, 400, [16000]),  # exactly the maximum: not cut
        (100, 16000, 400, [100]),
        (50000, 0, 400, [50000]),  # max_samples <= 0: no chunking
        (50000, -1, 400, [50000]),
    ],
)
def test_split_chunks(n_samples: int, max_samples: int, min_samples: int, sizes: list[int]) -> None:
    audio = np.arange(n_samples, dtype=np.float32)
    chunks = split_chunks(audio, max_samples, min_samples)
    assert _sizes(chunks) == sizes
    np.testing.assert_array_equal(np.concatenate(chunks), audio)  # consecutive, nothing lost or repeated


# ---------------------------------------------------------------------- length from the header, mp3 and ogg


def test_too_long_is_refused_from_the_header_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, _noise(3 * RATE, seed=11), RATE)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(sf, "read", no_decoding)
    with pytest.raises(AudioError, match=r"^too long: 3 s > 2 s"):
        load_audio(path, sample_rate=RATE, max_seconds=2.0)
    with pytest.raises(AudioError, match=r"^too long: 2 s > 1 s"):  # the segment's length counts, from the header
        load_audio(path, sample_rate=RATE, start=1.0, max_seconds=1.0)
    with pytest.raises(AssertionError, match="decoded"):  # within the limit it does decode
        load_audio(path, sample_rate=RATE, max_seconds=3.0)


def test_too_long_container_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("av")
    import av

    path = tmp_path / "long.mkv"
    _write_container(path, "matroska", "flac", _sine(300, 3.0, RATE, 0.5)[None], RATE)
    opened = av.open

    class NoDecode:
        """A container whose header is read normally but whose samples must not be decoded."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            self._inner = opened(*args, **kwargs)

        def __enter__(self) -> NoDecode:
            return self

        def __exit__(self, *exc: object) -> None:
            self._inner.close()

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

        def decode(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("samples were decoded")

    monkeypatch.setattr(av, "open", NoDecode)
    with pytest.raises(AudioError, match=r"^too long: 3 s > 2 s"):
        load_audio(path, sample_rate=RATE, max_seconds=2.0)
    monkeypatch.setattr(av, "open", opened)
    assert load_audio(path, sample_rate=RATE, max_seconds=3.5).size == 3 * RATE


def test_container_segment_returns_exactly_those_samples(tmp_path: Path) -> None:
    pytest.importorskip("av")
    path = tmp_path / "clip.mkv"
    samples = _noise(2 * RATE, seed=12)
    _write_container(path, "matroska", "flac", samples[None], RATE)
    audio = load_audio(path, sample_rate=RATE, start=0.5, end=1.0)
    assert audio.size == RATE // 2
    np.testing.assert_allclose(audio, samples[RATE // 2 : RATE], atol=1 / 32768 + 1e-7, rtol=0)


@pytest.mark.parametrize(("suffix", "fmt", "subtype"), [(".ogg", "OGG", "VORBIS"), (".mp3", "MP3", "MPEG_LAYER_III")])
def test_lossy_soundfile_formats_decode(tmp_path: Path, suffix: str, fmt: str, subtype: str) -> None:
    """libsndfile reads (and writes) Ogg Vorbis and MP3: a 44.1 kHz stereo tone comes back as 16 kHz mono."""
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile has no {fmt}/{subtype}")
    left, right = _sine(440, 1.0, 44100, 0.5), _sine(440, 1.0, 44100, 0.3)
    path = tmp_path / f"tone{suffix}"
    sf.write(path, np.stack([left, right], axis=1), 44100, format=fmt, subtype=subtype)
    audio = load_audio(path, sample_rate=RATE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - RATE) <= 0.06 * RATE  # MP3 adds encoder delay / padding frames
    interior = audio[2000:-2000]
    assert np.sqrt(np.mean(np.square(interior))) == pytest.approx(0.4 / np.sqrt(2), rel=0.05)  # mean of channels
    spectrum = np.abs(np.fft.rfft(interior * np.hanning(interior.size)))
    assert np.fft.rfftfreq(interior.size, 1 / RATE)[np.argmax(spectrum)] == pytest.approx(440, abs=3)
    segment = load_audio(path, sample_rate=RATE, start=0.25, end=0.75)
    assert abs(segment.size - RATE // 2) <= 2
    with pytest.raises(AudioError, match="too long"):
        load_audio(path, sample_rate=RATE, max_seconds=0.5)


def test_anti_phase_stereo_keeps_one_channel_instead_of_cancelling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    voice = _noise(RATE, seed=7)
    path = tmp_path / "anti.wav"
    sf.write(path, np.stack([voice, -voice], axis=1), RATE, subtype="FLOAT")
    with caplog.at_level("WARNING"):
        mono = load_audio(path, sample_rate=RATE)
    np.testing.assert_allclose(mono, voice, atol=1e-6)  # not silence, not rejected
    assert "anti-phase" in caplog.text
    ordinary = tmp_path / "stereo.wav"
    sf.write(ordinary, np.stack([voice, 0.5 * voice], axis=1), RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(ordinary, sample_rate=RATE), 0.75 * voice, atol=1e-6)
