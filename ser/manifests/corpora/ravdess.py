"""RAVDESS: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.{wav,flac}``.

Fields of the file name: modality MM (01 audio-video, 02 video-only, 03 audio-only), vocal channel
VV (01 speech, 02 song), emotion EE, intensity II (01 normal, 02 strong), statement SS, repetition
RR, actor AA (odd = male, even = female). Raw labels are the documented emotion names.
"""

from __future__ import annotations

from pathlib import Path

from ser.manifests.corpora.base import CorpusScan, audio_files, relative_audio, require_dir
from ser.manifests.schema import Utterance

EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}


def scan(root: Path, *, include_song: bool = False) -> CorpusScan:
    """Find every RAVDESS clip below ``root`` (the folder holding ``Actor_NN``).

    Song clips (vocal channel 02) are skipped unless ``include_song``; video-only clips are skipped.
    """
    require_dir(root, "RAVDESS root", "Pass the folder that contains Actor_01 ... Actor_24.")
    result = CorpusScan(utterances=[])
    for path in audio_files(root):
        fields = path.stem.split("-")
        if len(fields) != 7 or not all(f.isdigit() and len(f) == 2 for f in fields):
            result.skip("file name is not MM-VV-EE-II-SS-RR-AA", relative_audio(path, root))
            continue
        modality, channel, emotion, intensity, statement, repetition, actor = fields
        if modality == "02":
            result.skip("video-only clip", relative_audio(path, root))
            continue
        if channel == "02" and not include_song:
            result.skip("song clip (use --include-song)")
            continue
        if emotion not in EMOTIONS or statement not in STATEMENTS or channel not in VOCAL_CHANNELS:
            result.skip("unknown code in file name", relative_audio(path, root))
            continue
        result.utterances.append(
            Utterance(
                id=path.stem,
                audio=relative_audio(path, root),
                text=STATEMENTS[statement],
                label=EMOTIONS[emotion],
                speaker=f"Actor_{actor}",
                gender="M" if int(actor) % 2 else "F",
                script=f"statement{statement}",
                lang="en",
                extra={
                    "intensity": INTENSITIES.get(intensity, intensity),
                    "repetition": int(repetition),
                    "vocal_channel": VOCAL_CHANNELS[channel],
                },
            )
        )
    return result
