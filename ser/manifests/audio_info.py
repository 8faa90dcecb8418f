"""Cheap audio metadata (duration) read from file headers, without decoding samples."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


class AudioInfoError(RuntimeError):
    """An audio file's header could not be read."""


def probe_duration(path: Path) -> float:
    """Duration in seconds of an audio file.

    soundfile reads wav/flac/ogg/mp3 headers; containers it does not know (mp4, m4a) are probed
    with PyAV when it is installed. Raises [`AudioInfoError`][ser.manifests.audio_info.AudioInfoError] naming the file
    otherwise.
    """
    import soundfile

    try:
        info = soundfile.info(str(path))
        return float(info.frames / info.samplerate)
    except (RuntimeError, soundfile.LibsndfileError) as sf_error:
        soundfile_reason = str(sf_error)
    try:
        import av
    except ImportError:
        raise AudioInfoError(
            f"{path}: soundfile cannot read it ({soundfile_reason}) and PyAV is not installed (pip install av)"
        ) from None
    try:
        with av.open(str(path)) as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise AudioInfoError(f"{path}: no audio stream in the container")
            stream = streams[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / 1_000_000
            raise AudioInfoError(f"{path}: the container does not state a duration")
    except av.error.FFmpegError as err:
        raise AudioInfoError(f"{path}: unreadable ({soundfile_reason}; PyAV: {err})") from err
