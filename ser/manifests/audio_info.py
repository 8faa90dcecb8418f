"""Cheap audio metadata (duration) read from file headers, without decoding samples."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

logger = logging.getLogger(__name__)


class AudioInfoError(RuntimeError):
    """An audio file's header could not be read."""


UNKNOWN_DATA_SIZES = {0, 0xFFFFFFFF}
"""``data`` chunk sizes that streaming writers leave when they cannot seek back: the length is unknown, not wrong."""


def wav_damage(path: os.PathLike[str] | str) -> str | None:
    """Why a RIFF/WAVE file is damaged, or None (also for files that are not RIFF/WAVE).

    The ``data`` chunk's size in the header is compared with the bytes the file really holds: a file cut
    short (a third of it copied) or a header that claims hours the file does not hold is damaged. Decoders
    quietly read what is there, so without this check such a file is analysed as if it were complete.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            riff = handle.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
                return None
            block_align = 1
            while True:
                header = handle.read(8)
                if len(header) < 8:
                    return None  # no data chunk: the decoder says why it cannot read the file
                chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk_id == b"fmt " and chunk_size >= 14:
                    block_align = max(1, struct.unpack("<H", handle.read(14)[12:14])[0])
                    handle.seek(chunk_size - 14 + (chunk_size & 1), os.SEEK_CUR)
                elif chunk_id == b"data":
                    if chunk_size in UNKNOWN_DATA_SIZES:
                        return None
                    held = size - handle.tell()
                    if chunk_size - held >= block_align:
                        return (
                            f"damaged audio: the WAV header states {chunk_size} bytes of samples but the file holds "
                            f"only {max(held, 0)} (truncated copy or corrupt header); replace the file"
                        )
                    return None
                else:
                    handle.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)
    except OSError as err:
        return f"unreadable audio ({err})"


def probe_duration(path: Path) -> float:
    """Duration in seconds of an audio file.

    soundfile reads wav/flac/ogg/mp3 headers; containers it does not know (mp4, m4a) are probed
    with PyAV when it is installed. Raises [`AudioInfoError`][ser.manifests.audio_info.AudioInfoError] naming the file
    otherwise, and for a damaged WAV file ([`wav_damage`][ser.manifests.audio_info.wav_damage]).
    """
    import soundfile

    damage = wav_damage(path)
    if damage is not None:
        raise AudioInfoError(f"{path}: {damage}")

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
