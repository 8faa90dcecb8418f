"""MELD: ``{train,dev,test}_sent_emo.csv`` plus one clip per row, ``dia{D}_utt{U}.{wav,mp4}``.

Columns of the CSVs: ``Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID,
Season, Episode, StartTime, EndTime``. Clips live in ``train_splits/``, ``dev_splits_complete/`` and
``output_repeated_splits_test/`` (directly below the root or below ``MELD.Raw/``). Dialogue and
utterance numbers restart in every split, so ids are qualified by the split: ``train_dia0_utt0``,
``validation_dia0_utt0``, ``test_dia0_utt0``. A ``.wav`` extracted next to the ``.mp4`` is preferred.
Raw labels are the Emotion column, lowercased; the Sentiment column is kept in ``extra``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ser.manifests.corpora.base import CorpusScan, read_csv_rows, relative_audio, require_dir
from ser.manifests.schema import ManifestError, Utterance


@dataclass(frozen=True)
class _Split:
    """One official MELD split: its CSV, its normalised name and the folder of its clips."""

    csv_name: str
    split: str
    official: str
    clip_folder: str


SPLITS: tuple[_Split, ...] = (
    _Split("train_sent_emo.csv", "train", "train", "train_splits"),
    _Split("dev_sent_emo.csv", "validation", "dev", "dev_splits_complete"),
    _Split("test_sent_emo.csv", "test", "test", "output_repeated_splits_test"),
)
COLUMNS: tuple[str, ...] = (
    "Sr No.",
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
)
INTEGER_COLUMNS: tuple[str, ...] = ("Sr No.", "Dialogue_ID", "Utterance_ID", "Season", "Episode")
CLIP_SUFFIXES: tuple[str, ...] = (".wav", ".mp4")
"""Clip suffixes in order of preference (audio extracted to wav beats the original video)."""
RAW_SUBFOLDER = "MELD.Raw"
MISSING_CLIP_KEPT = "no clip, kept as a text-only row"
MISSING_CLIP_DROPPED = "no clip (--require-audio)"


def scan(root: Path, *, require_audio: bool = False) -> CorpusScan:
    """Read every MELD CSV found in ``root`` and match each row with its clip.

    Rows whose clip is absent keep ``audio=None`` and are counted in ``result.kept``; with
    ``require_audio`` they are dropped instead and counted in ``result.skipped``. Raises
    [`ManifestError`][ser.manifests.schema.ManifestError] when no CSV is present, a CSV is not UTF-8, or a row cannot be
    parsed.
    """
    require_dir(
        root,
        "MELD root",
        "Pass the folder that contains train_sent_emo.csv / dev_sent_emo.csv "
        "/ test_sent_emo.csv (and optionally the clip folders).",
    )
    present = [s for s in SPLITS if (root / s.csv_name).is_file()]
    if not present:
        expected = ", ".join(s.csv_name for s in SPLITS)
        raise ManifestError(
            f"{root}: no MELD annotation CSV found; expected at least one of {expected} directly in this folder"
        )
    result = CorpusScan(utterances=[])
    for split in present:
        clip_dirs = _clip_dirs(root, split.clip_folder)
        if not clip_dirs:
            result.notes.append(
                f"{split.official}: no clip folder ({split.clip_folder}/ or "
                f"{RAW_SUBFOLDER}/{split.clip_folder}/); its rows have no audio"
            )
        _scan_split(root, split, clip_dirs, require_audio, result)
    return result


def _clip_dirs(root: Path, folder: str) -> list[tuple[Path, set[str]]]:
    """Existing clip folders for one split with the names of the files in them."""
    found = []
    for candidate in (root / folder, root / RAW_SUBFOLDER / folder):
        if candidate.is_dir():
            with os.scandir(candidate) as entries:
                names = {e.name for e in entries if not e.name.startswith(".") and e.is_file()}
            found.append((candidate, names))
    return found


def _find_clip(clip_dirs: list[tuple[Path, set[str]]], stem: str) -> Path | None:
    """The clip called ``stem`` (wav preferred over mp4, then the root folder over MELD.Raw)."""
    for suffix in CLIP_SUFFIXES:
        for folder, names in clip_dirs:
            if stem + suffix in names:
                return folder / (stem + suffix)
    return None


def _scan_split(
    root: Path, split: _Split, clip_dirs: list[tuple[Path, set[str]]], require_audio: bool, result: CorpusScan
) -> None:
    """Append the rows of one split's CSV to ``result``."""
    path = root / split.csv_name
    seen: dict[tuple[int, int], int] = {}
    for line_no, row in _read_rows(path):
        numbers = {}
        for column in INTEGER_COLUMNS:
            value = row[column].strip()
            try:
                numbers[column] = int(value)
            except ValueError:
                raise ManifestError(
                    f"{path}:{line_no}: {column} is {value!r}, not an integer; fix the "
                    "row (a comma inside an unquoted Utterance shifts the columns)"
                ) from None
        dialogue, utterance = numbers["Dialogue_ID"], numbers["Utterance_ID"]
        stem = f"dia{dialogue}_utt{utterance}"
        if (dialogue, utterance) in seen:
            result.skip(
                "duplicate dialogue/utterance row",
                f"{split.csv_name}:{line_no} repeats line {seen[(dialogue, utterance)]}",
            )
            continue
        seen[(dialogue, utterance)] = line_no
        clip = _find_clip(clip_dirs, stem)
        if clip is None and require_audio:
            result.skip(MISSING_CLIP_DROPPED, f"{split.clip_folder}/{stem}.mp4")
            continue
        if clip is None:
            result.keep(MISSING_CLIP_KEPT, f"{split.clip_folder}/{stem}.mp4")
        text = row["Utterance"].strip()
        emotion = row["Emotion"].strip().lower()
        speaker = row["Speaker"].strip()
        result.utterances.append(
            Utterance(
                id=f"{split.split}_{stem}",
                audio=relative_audio(clip, root) if clip is not None else None,
                text=text or None,
                label=emotion or None,
                speaker=speaker or None,
                dialog=f"{split.split}_dia{dialogue}",
                split=split.split,
                lang="en",
                extra={
                    "sentiment": row["Sentiment"].strip().lower(),
                    "season": numbers["Season"],
                    "episode": numbers["Episode"],
                    "start_time": row["StartTime"],
                    "end_time": row["EndTime"],
                    "official_split": split.official,
                    "sr_no": numbers["Sr No."],
                },
            )
        )


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    return read_csv_rows(path, COLUMNS)
