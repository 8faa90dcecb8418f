"""Audio input: decode, down-mix, resample, cut segments, and refuse unusable audio with a reason.

soundfile decodes wav/flac/ogg/mp3 (reading only the segment asked for); PyAV decodes containers
such as MELD's mp4 clips; soxr resamples to the model's rate. Absurdly long audio is refused from
the file header, before any sample is decoded (and, for containers whose header states no
duration, as soon as the decoded samples pass the limit), so one stray podcast cannot exhaust memory.
A damaged file (a WAV whose header states more samples than the file holds, or fewer samples decoded than
the header promised) is refused as damaged rather than analysed as if it were complete.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np

from ser.manifests.audio_info import wav_damage

logger = logging.getLogger(__name__)

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf"}
SILENCE_PEAK = 1e-5
"""Peak absolute amplitude below which a clip counts as silent (digital silence or a dead channel)."""
DEFAULT_MAX_SECONDS = 3 * 3600.0


class AudioError(Exception):
    """Audio that cannot be used; ``str(err)`` is the reason written to the rejects list."""


def _too_long(seconds: float, max_seconds: float) -> AudioError:
    return AudioError(f"too long: {seconds:.0f} s > {max_seconds:.0f} s (raise --max-total-seconds if it is intended)")


SEGMENT_TOLERANCE = 0.1
"""Seconds a segment's end may pass the end of its file (rounding in corpus annotations)."""


def _past_end(end: float, total: float) -> AudioError:
    return AudioError(f"segment end {end} s is past the end of the file ({total:.2f} s); fix the row's start/end")


def _segment_seconds(total: float, start: float | None, end: float | None) -> float:
    """Length of the ``start``..``end`` part of ``total`` seconds."""
    return max(0.0, min(total, end if end is not None else total) - (start or 0.0))


def _read_soundfile(path: Path, start: float | None, end: float | None, max_seconds: float) -> tuple[np.ndarray, int]:
    import soundfile

    damage = wav_damage(path)
    if damage is not None:
        raise AudioError(damage)
    try:
        info = soundfile.info(str(path))
        if info.samplerate and _segment_seconds(info.frames / info.samplerate, start, end) > max_seconds:
            raise _too_long(_segment_seconds(info.frames / info.samplerate, start, end), max_seconds)
        if end is not None and info.samplerate and end > info.frames / info.samplerate + SEGMENT_TOLERANCE:
            raise _past_end(end, info.frames / info.samplerate)
        first = round((start or 0.0) * info.samplerate)
        last = round(end * info.samplerate) if end is not None else -1
        data, rate = soundfile.read(
            str(path), start=first, stop=None if last < 0 else last, dtype="float32", always_2d=True
        )
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise AudioError(f"unreadable audio ({err})") from err
    expected = (info.frames if last < 0 else min(last, info.frames)) - first
    if len(data) < expected:  # the header promised samples the file does not hold
        raise AudioError(
            f"damaged audio: the header states {expected} frames but only {len(data)} could be decoded "
            "(truncated or corrupt file); replace the file"
        )
    return data, rate


def container_seconds(stream: object, container: object) -> float | None:
    """Duration a container's header states for ``stream`` (None when it states none)."""
    duration, time_base = getattr(stream, "duration", None), getattr(stream, "time_base", None)
    if duration is not None and time_base is not None:
        return float(duration * time_base)
    total = getattr(container, "duration", None)
    return total / 1_000_000 if total is not None else None


def _read_container(path: Path, start: float | None, end: float | None, max_seconds: float) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError:
        raise AudioError(f"{path.suffix} files need PyAV (pip install 'serkit[audio]')") from None
    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio
            if not streams:
                raise AudioError("no audio stream in the container")
            stream = streams[0]
            stated = container_seconds(stream, container)
            if stated is not None and _segment_seconds(stated, start, end) > max_seconds:
                raise _too_long(_segment_seconds(stated, start, end), max_seconds)
            rate = stream.codec_context.sample_rate
            stop_after = round((end if end is not None else (start or 0.0) + max_seconds) * rate) + 1
            chunks: list[np.ndarray] = []
            decoded = 0
            for frame in container.decode(stream):
                array = frame.to_ndarray()
                if frame.format.is_planar:
                    chunks.append(array.T)
                else:
                    chunks.append(array.reshape(-1, len(frame.layout.channels)))
                decoded += len(chunks[-1])
                if decoded > stop_after:  # past the segment's end, or past the limit: no need for more
                    break
            if not chunks:
                raise AudioError("the audio stream holds no samples")
            if end is None and decoded > stop_after:
                raise _too_long(decoded / rate - (start or 0.0), max_seconds)
            data = np.concatenate(chunks).astype(np.float32)
    except av.error.FFmpegError as err:
        raise AudioError(f"unreadable audio ({err})") from err
    if np.issubdtype(chunks[0].dtype, np.unsignedinteger):  # e.g. u8 PCM: zero sits at mid-range
        middle = (float(np.iinfo(chunks[0].dtype).max) + 1) / 2
        data = (data - middle) / middle
    elif np.issubdtype(chunks[0].dtype, np.integer):
        data /= float(np.iinfo(chunks[0].dtype).max) + 1
    if end is not None and end > len(data) / rate + SEGMENT_TOLERANCE:
        raise _past_end(end, len(data) / rate)
    first = round((start or 0.0) * rate)
    last = round(end * rate) if end is not None else len(data)
    return data[first:last], rate


def load_audio(
    path: str | Path,
    *,
    sample_rate: int,
    start: float | None = None,
    end: float | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> np.ndarray:
    """(samples,) float32 mono audio of ``path`` (or its ``start``..``end`` segment) at ``sample_rate``.

    Raises [`AudioError`][ser.extract.audio.AudioError] for a missing, unreadable, empty, silent, non-finite or absurdly
    long input, with the reason as message.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"missing audio file {path}")
    if (start is not None and start < 0) or (end is not None and end <= (start or 0.0)):
        raise AudioError(f"impossible segment start {start} s, end {end} s (start must be >= 0 and end > start)")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        data, rate = _read_soundfile(path, start, end, max_seconds)
    else:
        data, rate = _read_container(path, start, end, max_seconds)
    return prepare_signal(data, rate, sample_rate=sample_rate, max_seconds=max_seconds)


def prepare_signal(
    data: np.ndarray, rate: int, *, sample_rate: int, max_seconds: float = DEFAULT_MAX_SECONDS
) -> np.ndarray:
    """(samples,) float32 mono at ``sample_rate`` from decoded ``data``: (samples,) or (samples, channels)
    at ``rate``. Raises [`AudioError`][ser.extract.audio.AudioError] for empty, absurdly long, non-finite or silent
    audio."""
    data = np.asarray(data, dtype=np.float32)
    mono = data.mean(axis=1) if data.ndim == 2 else data
    if data.ndim == 2 and data.shape[1] > 1 and mono.size:
        mono = _unless_cancelled(data, mono)
    if mono.ndim != 1:
        raise AudioError(f"audio must be (samples,) or (samples, channels), not shape {data.shape}")
    if mono.size == 0:
        raise AudioError("empty audio (no samples in the file or segment)")
    if mono.size / rate > max_seconds:  # a header that understated the length
        raise _too_long(mono.size / rate, max_seconds)
    if not np.isfinite(mono).all():
        raise AudioError("audio holds NaN or Inf samples")
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise AudioError("silent audio (peak amplitude below 1e-5)")
    if rate != sample_rate:
        import soxr

        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


ANTI_PHASE_RATIO = 0.1
"""A down-mix whose RMS is below this share of its channels' RMS cancelled itself (channels in anti-phase)."""


def _unless_cancelled(data: np.ndarray, mono: np.ndarray) -> np.ndarray:
    """The down-mix ``mono`` of (samples, channels) ``data``, or its loudest channel when the channels are in
    anti-phase (a wiring fault in some recordings): averaging them would leave near silence, or a
    thin residue that is not the speech, and the row would be rejected as silent or analysed wrongly."""
    channel_rms = np.sqrt(np.mean(np.square(data, dtype=np.float64), axis=0))
    mix_rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
    if channel_rms.max() > 0 and mix_rms < ANTI_PHASE_RATIO * float(channel_rms.mean()):
        logger.warning(
            "the channels cancel each other when averaged (down-mix RMS %.2g against %.2g per channel; "
            "anti-phase stereo?): using the loudest channel alone",
            mix_rms,
            float(channel_rms.mean()),
        )
        return np.ascontiguousarray(data[:, int(np.argmax(channel_rms))])
    return mono


def pad_to_minimum(audio: np.ndarray, min_samples: int) -> tuple[np.ndarray, str | None]:
    """Zero-pad audio shorter than ``min_samples`` (centred); return it with a note saying so."""
    if audio.size >= min_samples:
        return audio, None
    missing = min_samples - audio.size
    padded = np.pad(audio, (missing // 2, missing - missing // 2))
    return padded, f"padded from {audio.size} to {min_samples} samples (shorter than the receptive field)"


def split_chunks(audio: np.ndarray, max_samples: int, min_samples: int) -> list[np.ndarray]:
    """Cut audio longer than ``max_samples`` into consecutive chunks of at most that length.

    A last chunk shorter than ``min_samples`` is merged into the previous one, so every chunk is
    long enough for the model.
    """
    if max_samples <= 0 or audio.size <= max_samples:
        return [audio]
    bounds = [*list(range(0, audio.size, max_samples)), audio.size]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < max(min_samples, 1):
        bounds.pop(-2)
    return [audio[a:b] for a, b in itertools.pairwise(bounds)]
