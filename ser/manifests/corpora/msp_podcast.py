"""MSP-Podcast: ``Labels/labels_consensus.csv`` plus ``Audios/MSP-PODCAST_XXXX_YYYY.wav``.

Columns of the label file: ``FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set``.
Older releases spell the file ``labels_concensus.csv``; both are read. EmoClass is a one-letter code
decoded to an English word (``X`` = the annotators did not agree); EmoAct/EmoVal/EmoDom are the
1-7 arousal, valence and dominance scores. ``Transcripts/<stem>.txt`` supplies the text when present.
"""

from __future__ import annotations

import re
from pathlib import Path

from ser.manifests.corpora.base import CorpusScan, decode_text, read_csv_rows, relative_audio, require_dir
from ser.manifests.schema import ManifestError, Utterance

LABEL_FILES: tuple[str, ...] = ("Labels/labels_consensus.csv", "Labels/labels_concensus.csv")
"""Label file names, newest spelling first."""
AUDIO_FOLDERS: tuple[str, ...] = ("Audios", "Audio")
TRANSCRIPT_FOLDER = "Transcripts"
COLUMNS: tuple[str, ...] = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
EMOTIONS = {
    "A": "anger",
    "H": "happiness",
    "S": "sadness",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
    "X": "no_agreement",
}
GENDERS = {"female": "F", "male": "M"}
SPLITS = {"train": "train", "development": "validation", "test1": "test"}
_EXTRA_TEST = re.compile(r"test([2-9]|[1-9]\d+)")
SCORES = {"EmoAct": "arousal", "EmoVal": "valence", "EmoDom": "dominance"}


def scan(root: Path) -> CorpusScan:
    """Read the MSP-Podcast consensus labels below ``root`` and match each row with its audio.

    Rows whose audio file is absent are skipped and counted as ``missing audio``. Raises
    [`ManifestError`][ser.manifests.schema.ManifestError] when the label file or the audio folder is missing or a row is
    malformed.
    """
    require_dir(root, "MSP-Podcast root", "Pass the folder that contains Labels/ and Audios/.")
    result = CorpusScan(utterances=[])
    labels = [root / name for name in LABEL_FILES if (root / name).is_file()]
    if not labels:
        raise ManifestError(f"{root}: no label file; expected {' or '.join(LABEL_FILES)}")
    if len(labels) > 1:
        result.notes.append(f"both {LABEL_FILES[0]} and {LABEL_FILES[1]} exist; read {LABEL_FILES[0]}")
    label_file = labels[0]
    audio_dirs = [root / name for name in AUDIO_FOLDERS if (root / name).is_dir()]
    if not audio_dirs:
        raise ManifestError(
            f"{root}: no audio folder; expected {'/ or '.join(AUDIO_FOLDERS)}/ holding MSP-PODCAST_XXXX_YYYY.wav"
        )
    audio_dir = audio_dirs[0]
    if len(audio_dirs) > 1:
        result.notes.append(f"both {AUDIO_FOLDERS[0]}/ and {AUDIO_FOLDERS[1]}/ exist; read {AUDIO_FOLDERS[0]}/")
    transcripts = root / TRANSCRIPT_FOLDER
    has_transcripts = transcripts.is_dir()
    without_text = 0
    seen: set[str] = set()
    for line_no, row in _read_rows(label_file):
        file_name = row["FileName"].strip()
        stem = Path(file_name).stem
        if not stem:
            raise ManifestError(f"{label_file}:{line_no}: empty FileName; fill it in or remove the row")
        if stem in seen:
            result.skip("duplicate FileName", f"{file_name} (line {line_no})")
            continue
        seen.add(stem)
        code = row["EmoClass"].strip().upper()
        if code not in EMOTIONS:
            result.skip("unknown EmoClass code", f"{code!r} (line {line_no})")
            continue
        split = _split(row["Split_Set"].strip())
        if split is None:
            result.skip("unknown Split_Set value", f"{row['Split_Set']!r} (line {line_no})")
            continue
        scores = {name: _score(row[column], label_file, line_no, column) for column, name in SCORES.items()}
        audio = audio_dir / (file_name if Path(file_name).suffix else f"{file_name}.wav")
        if not audio.is_file():
            result.skip("missing audio", relative_audio(audio, root))
            continue
        speaker_raw = row["SpkrID"].strip()
        speaker = None if speaker_raw.lower() in ("", "unknown") else f"msp{speaker_raw}"
        text = None
        if has_transcripts:
            text = _transcript(transcripts / f"{stem}.txt")
            without_text += text is None
        result.utterances.append(
            Utterance(
                id=stem,
                audio=relative_audio(audio, root),
                text=text,
                label=EMOTIONS[code],
                speaker=speaker,
                gender=GENDERS.get(row["Gender"].strip().lower()),
                split=split,
                lang="en",
                extra={**scores, "official_split": row["Split_Set"].strip(), "speaker_raw": speaker_raw},
            )
        )
    if without_text:
        result.notes.append(f"{without_text} utterances have no (or an empty) file in {TRANSCRIPT_FOLDER}/")
    return result


def _split(official: str) -> str | None:
    """Normalised split name: Train, Development, Test1 -> train, validation, test; TestN -> testN."""
    lowered = official.lower()
    if lowered in SPLITS:
        return SPLITS[lowered]
    return lowered if _EXTRA_TEST.fullmatch(lowered) else None


def _score(value: str, path: Path, line_no: int, column: str) -> float | None:
    """Parse a dimensional score; an empty cell gives None."""
    value = value.strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ManifestError(f"{path}:{line_no}: {column} is {value!r}, not a number; fix the row") from None


def _transcript(path: Path) -> str | None:
    """Stripped text of a transcript file, or None when it is absent or empty."""
    if not path.is_file():
        return None
    return decode_text(path.read_bytes(), ("utf-8",), path).strip() or None


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    return read_csv_rows(path, COLUMNS)
