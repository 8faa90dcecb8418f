"""ESD (Emotional Speech Dataset): ``Emotion Speech Dataset/{spk}/{Emotion}/{split}/{spk}_{NNNNNN}.wav``.

Speakers 0001-0010 speak Mandarin, 0011-0020 English. Each speaker folder holds the emotion folders
``Angry Happy Neutral Sad Surprise`` (the folder is the authoritative label) with the official
``train``/``evaluation``/``test`` sub-folders, plus a transcript ``{spk}.txt`` whose lines are
``utt_id<TAB>text<TAB>emotion``. The transcript encoding differs from speaker to speaker (GB2312,
UTF-16 with a byte-order mark, UTF-8, Latin-1), so each file is decoded on its own.
"""

from __future__ import annotations

import re
from pathlib import Path

from ser.manifests.corpora.base import AUDIO_SUFFIXES, CorpusScan, audio_files, decode_text, relative_audio
from ser.manifests.schema import ManifestError, Utterance

DATASET_FOLDER = "Emotion Speech Dataset"

EMOTIONS = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad", "surprise": "surprise"}
"""Emotion folder name (lowercased) -> raw label."""

ZH_EMOTIONS = {
    "中立": "neutral",
    "生气": "angry",
    "快乐": "happy",
    "伤心": "sad",
    "惊喜": "surprise",
    "中性": "neutral",
    "平静": "neutral",
    "愤怒": "angry",
    "高兴": "happy",
    "开心": "happy",
    "悲伤": "sad",
    "难过": "sad",
    "惊讶": "surprise",
}
"""Chinese emotion words of the Mandarin transcripts (the first five are the ones ESD is reported to
use; the rest are accepted so that a re-typed transcript still parses). Only used to recognise the
emotion field when a line has to be split on whitespace."""

SPLITS = {"train": "train", "evaluation": "validation", "test": "test"}
"""Official sub-folder name -> normalised split."""

GENDERS = {
    "0001": "F",
    "0002": "F",
    "0003": "F",
    "0004": "M",
    "0005": "M",
    "0006": "M",
    "0007": "F",
    "0008": "M",
    "0009": "F",
    "0010": "M",
    "0011": "M",
    "0012": "M",
    "0013": "M",
    "0014": "M",
    "0015": "F",
    "0016": "F",
    "0017": "F",
    "0018": "F",
    "0019": "F",
    "0020": "M",
}

LANGUAGES = ("zh", "en")
TRANSCRIPT_ENCODINGS = {"zh": ("utf-8", "gb18030"), "en": ("utf-8", "cp1252", "latin-1")}
"""Encodings tried, in order, after byte-order-mark sniffing (gb18030 is a superset of gb2312)."""

_SPEAKER_DIR = re.compile(r"\d{4}")
_UTT_ID = re.compile(r"\d{4}_\d+")


def speaker_language(speaker: str) -> str:
    """``zh`` for speakers 0001-0010, ``en`` for 0011-0020."""
    return "zh" if int(speaker) <= 10 else "en"


def find_dataset_folder(root: Path) -> Path:
    """The folder holding the speaker folders: ``root`` itself or its ``Emotion Speech Dataset`` child.

    Raises [`ManifestError`][ser.manifests.schema.ManifestError] when neither holds a speaker folder.
    """
    if not root.is_dir():
        raise ManifestError(f"{root}: ESD root not found. Pass the '{DATASET_FOLDER}' folder (or its parent).")
    for candidate in (root / DATASET_FOLDER, root):
        if candidate.is_dir() and any(_is_speaker_dir(p) for p in candidate.iterdir()):
            return candidate
    raise ManifestError(
        f"{root}: no ESD speaker folders (0001 ... 0020) found. Pass the "
        f"'{DATASET_FOLDER}' folder or the folder that contains it."
    )


def _is_speaker_dir(path: Path) -> bool:
    return path.is_dir() and _SPEAKER_DIR.fullmatch(path.name) is not None and 1 <= int(path.name) <= 20


def _emotion_word(token: str) -> str | None:
    """Raw label of an English or Chinese emotion word, or None when it is not one."""
    return EMOTIONS.get(token.strip().lower()) or ZH_EMOTIONS.get(token.strip())


def _decode_transcript(data: bytes, encodings: tuple[str, ...], source: Path) -> str:
    """Decode a transcript; UTF-16 without a byte-order mark is recognised by its NUL bytes."""
    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        odd_nuls = data[1::2].count(0)
        even_nuls = data[0::2].count(0)
        encodings = ("utf-16-le" if odd_nuls >= even_nuls else "utf-16-be", *encodings)
    return decode_text(data, encodings, source)


def parse_transcript_line(line: str) -> tuple[str, str, str] | None:
    """Split one transcript line into ``(utt_id, text, emotion)``, or None when it does not parse.

    The documented form is three TAB-separated fields. Lines that are not are split on runs of
    whitespace instead, provided the first token looks like an utterance id and the last one is an
    emotion word; the tokens in between are the text.
    """
    fields = [f.strip() for f in line.strip().split("\t")]
    if len(fields) == 3 and _UTT_ID.fullmatch(fields[0]) and fields[1]:
        return fields[0], fields[1], fields[2]
    tokens = line.split()
    if len(tokens) >= 3 and _UTT_ID.fullmatch(tokens[0]) and _emotion_word(tokens[-1]) is not None:
        return tokens[0], " ".join(tokens[1:-1]), tokens[-1]
    return None


def read_transcript(path: Path, lang: str, result: CorpusScan) -> dict[str, tuple[str, str]] | None:
    """Read ``{spk}.txt`` into ``utt_id -> (text, emotion field)``.

    A missing or undecodable file is counted in ``result`` and gives None; unparsable lines are
    counted and skipped.
    """
    if not path.is_file():
        result.skip("transcript file missing (text left empty)", str(path.name))
        return None
    try:
        content = _decode_transcript(path.read_bytes(), TRANSCRIPT_ENCODINGS[lang], path)
    except ManifestError as err:
        result.skip("transcript file undecodable (text left empty)", str(err))
        return None
    entries: dict[str, tuple[str, str]] = {}
    for line in content.splitlines():
        line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        parsed = parse_transcript_line(line)
        if parsed is None:
            result.skip("unparsable transcript line", f"{path.name}: {line.strip()[:80]!r}")
            continue
        utt_id, text, emotion = parsed
        if utt_id in entries:
            result.skip("duplicate transcript line (first kept)", f"{path.name}: {utt_id}")
            continue
        entries[utt_id] = (text, emotion)
    return entries


def scan(root: Path, *, languages: tuple[str, ...] = LANGUAGES) -> CorpusScan:
    """Find every ESD clip below ``root`` (``Emotion Speech Dataset/`` or the folder containing it).

    ``languages`` keeps the Mandarin (``zh``, speakers 0001-0010) and/or English (``en``, 0011-0020)
    speakers; a comma-separated string is accepted too. Audio paths are relative to ``root``.
    """
    if isinstance(languages, str):
        languages = tuple(part.strip() for part in languages.split(",") if part.strip())
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown or not languages:
        raise ManifestError(f"ESD languages {list(languages)} are not valid; choose from {', '.join(LANGUAGES)}")
    dataset = find_dataset_folder(root)
    result = CorpusScan(utterances=[])
    for speaker_dir in sorted(p for p in dataset.iterdir() if _is_speaker_dir(p)):
        speaker = speaker_dir.name
        lang = speaker_language(speaker)
        if lang not in languages:
            result.skip(f"speaker folder of a language not selected ({lang})")
            continue
        transcript = read_transcript(speaker_dir / f"{speaker}.txt", lang, result)
        for path in audio_files(speaker_dir, AUDIO_SUFFIXES):
            utterance = _utterance(path, speaker, lang, root, speaker_dir, transcript, result)
            if utterance is not None:
                result.utterances.append(utterance)
    return result


def _utterance(
    path: Path,
    speaker: str,
    lang: str,
    root: Path,
    speaker_dir: Path,
    transcript: dict[str, tuple[str, str]] | None,
    result: CorpusScan,
) -> Utterance | None:
    """The record of one clip, or None (counted in ``result``) when its place or name is wrong."""
    parts = path.relative_to(speaker_dir).parts
    label = EMOTIONS.get(parts[0].lower()) if len(parts) > 1 else None
    if label is None:
        result.skip("audio file outside an emotion folder", relative_audio(path, root))
        return None
    official_split: str | None = None
    if len(parts) == 3 and parts[1].lower() in SPLITS:
        official_split = parts[1].lower()
    elif len(parts) != 2:
        result.skip("audio file in an unknown sub-folder", relative_audio(path, root))
        return None
    if not path.stem.startswith(f"{speaker}_"):
        result.skip("file name is not {spk}_NNNNNN", relative_audio(path, root))
        return None
    text: str | None = None
    if transcript is not None:
        entry = transcript.get(path.stem)
        if entry is None:
            result.skip("no transcript line for utterance (text left empty)", path.stem)
        else:
            text = entry[0] or None
            if lang == "en" and entry[1].lower() != label:
                result.skip(
                    "transcript emotion disagrees with folder", f"{path.stem}: folder {label}, transcript {entry[1]}"
                )
    extra = {"official_split": official_split} if official_split else {}
    return Utterance(
        id=path.stem,
        audio=relative_audio(path, root),
        text=text,
        label=label,
        speaker=speaker,
        gender=GENDERS[speaker],
        split=SPLITS[official_split] if official_split else None,
        lang=lang,
        extra=extra,
    )
