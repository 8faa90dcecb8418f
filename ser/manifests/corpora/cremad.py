"""CREMA-D: ``AudioWAV/{ActorID}_{Sentence}_{Emotion}_{Level}.wav`` plus optional metadata tables.

Every actor (1001-1091) reads 12 fixed sentences with one of six intended emotions; the intended
emotion in the file name is the raw label. ``VideoDemographics.csv`` (actor age, sex, race,
ethnicity) and ``summaryTable.csv`` (the crowd-sourced perceived emotion per clip) are joined in
when they sit in the root folder.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ser.manifests.corpora.base import CorpusScan, audio_files, relative_audio
from ser.manifests.schema import ManifestError, Utterance

EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
VOTES = {"A": "anger", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad", **EMOTIONS}
"""Perceived-emotion codes of ``summaryTable.csv`` (single letters; three-letter codes accepted too)."""

SEXES = {"male": "M", "female": "F"}
DEMOGRAPHICS_FILE = "VideoDemographics.csv"
SUMMARY_FILE = "summaryTable.csv"


def find_audio(root: Path) -> tuple[Path, tuple[str, ...]]:
    """The folder to search and the suffix to look for: ``AudioWAV/``, wavs in ``root``, else ``AudioMP3/``.

    Raises [`ManifestError`][ser.manifests.schema.ManifestError] when none of them holds audio.
    """
    if not root.is_dir():
        raise ManifestError(f"{root}: CREMA-D root not found. Pass the folder that contains AudioWAV/.")
    if (root / "AudioWAV").is_dir():
        return root / "AudioWAV", (".wav",)
    if audio_files(root, (".wav",)):
        return root, (".wav",)
    if (root / "AudioMP3").is_dir():
        return root / "AudioMP3", (".mp3",)
    raise ManifestError(
        f"{root}: no CREMA-D audio found (no AudioWAV/, no .wav files, no AudioMP3/). "
        "Pass the folder that contains AudioWAV/."
    )


def decode_vote(code: str) -> str | None:
    """``"N"`` -> ``"neutral"``, ``"A:N"`` -> ``"anger:neutral"``; None when a code is unknown."""
    words = [VOTES.get(part.strip().upper()) for part in code.split(":")]
    if not code.strip() or any(word is None for word in words):
        return None
    return ":".join(word for word in words if word is not None)


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file with a header line, keys and values stripped."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]


def read_demographics(path: Path) -> dict[str, dict[str, str]]:
    """``VideoDemographics.csv`` as ActorID -> row."""
    return {row["ActorID"]: row for row in _read_csv(path) if row.get("ActorID")}


def read_summary(path: Path) -> dict[str, dict[str, str]]:
    """``summaryTable.csv`` as FileName (the clip stem) -> row."""
    return {row["FileName"]: row for row in _read_csv(path) if row.get("FileName")}


def _demographic_fields(row: dict[str, str]) -> tuple[str | None, dict[str, Any]]:
    """Gender and the extra fields (age, race, ethnicity) of one demographics row."""
    age_text = row.get("Age", "")
    extra: dict[str, Any] = {
        "age": int(age_text) if age_text.isdigit() else (age_text or None),
        "race": row.get("Race") or None,
        "ethnicity": row.get("Ethnicity") or None,
    }
    return SEXES.get(row.get("Sex", "").lower()), {k: v for k, v in extra.items() if v is not None}


def _vote_fields(row: dict[str, str], stem: str, result: CorpusScan) -> dict[str, Any]:
    """``voice_vote`` and ``voice_level`` of one summary row (bad values counted and left out)."""
    extra: dict[str, Any] = {}
    vote = decode_vote(row.get("VoiceVote", ""))
    if vote is None:
        result.skip(f"unknown VoiceVote in {SUMMARY_FILE} (left out)", f"{stem}: {row.get('VoiceVote')!r}")
    else:
        extra["voice_vote"] = vote
    try:
        extra["voice_level"] = float(row.get("VoiceLevel", ""))
    except ValueError:
        result.skip(f"unreadable VoiceLevel in {SUMMARY_FILE} (left out)", f"{stem}: {row.get('VoiceLevel')!r}")
    return extra


def scan(root: Path) -> CorpusScan:
    """Find every CREMA-D clip below ``root`` (the folder holding ``AudioWAV/``, or the wavs themselves).

    MP3s (``AudioMP3/``) are used only when there is no wav. Audio paths are relative to ``root``.
    """
    folder, suffixes = find_audio(root)
    demographics_path, summary_path = root / DEMOGRAPHICS_FILE, root / SUMMARY_FILE
    demographics = read_demographics(demographics_path) if demographics_path.is_file() else None
    summary = read_summary(summary_path) if summary_path.is_file() else None
    result = CorpusScan(utterances=[])
    if demographics is None:
        result.notes.append(f"no {DEMOGRAPHICS_FILE} in the root: gender, age, race, ethnicity left empty")
    if summary is None:
        result.notes.append(f"no {SUMMARY_FILE} in the root: voice_vote, voice_level left empty")
    for path in audio_files(folder, suffixes):
        fields = path.stem.split("_")
        if len(fields) != 4 or not (fields[0].isdigit() and len(fields[0]) == 4):
            result.skip("file name is not ActorID_Sentence_Emotion_Level", relative_audio(path, root))
            continue
        actor, sentence, emotion, level = fields
        if sentence not in SENTENCES or emotion not in EMOTIONS or level not in LEVELS:
            result.skip("unknown code in file name", relative_audio(path, root))
            continue
        gender: str | None = None
        extra: dict[str, Any] = {"level": LEVELS[level], "sentence": sentence}
        if demographics is not None:
            if actor in demographics:
                gender, person = _demographic_fields(demographics[actor])
                extra.update(person)
            else:
                result.skip(f"actor not in {DEMOGRAPHICS_FILE}", actor)
        if summary is not None:
            if path.stem in summary:
                extra.update(_vote_fields(summary[path.stem], path.stem, result))
            else:
                result.skip(f"clip not in {SUMMARY_FILE}", path.stem)
        result.utterances.append(
            Utterance(
                id=path.stem,
                audio=relative_audio(path, root),
                text=SENTENCES[sentence],
                label=EMOTIONS[emotion],
                speaker=actor,
                gender=gender,
                script=sentence,
                lang="en",
                extra=extra,
            )
        )
    return result
