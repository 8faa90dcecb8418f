"""A miniature MELD tree: the three annotation CSVs in the real column layout plus a few clips."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.fakes import write_tone

HEADER = [
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
]

ROWS: dict[str, list[list[str]]] = {
    "train_sent_emo.csv": [
        [
            "1",
            "So I’m the one who booked the whole trip.",
            "Chandler",
            "neutral",
            "neutral",
            "0",
            "0",
            "8",
            "21",
            "00:16:16,059",
            "00:16:21,731",
        ],
        [
            "2",
            'Wait, you said "never", right?',
            " Monica ",
            "surprise",
            "positive",
            "0",
            "1",
            "8",
            "21",
            "00:16:21,940",
            "00:16:23,442",
        ],
        ["3", "That’s it, I’m done!", "Ross", "anger", "negative", "1", "0", "2", "5", "0:05:01,100", "0:05:02,900"],
        ["4", "Oh, that is so great!", "Rachel", "joy", "positive", "1", "1", "2", "5", "0:05:03,000", "0:05:04,250"],
    ],
    "dev_sent_emo.csv": [
        [
            "1",
            "I don’t want to talk about it.",
            "Phoebe",
            "sadness",
            "negative",
            "0",
            "0",
            "3",
            "7",
            "00:01:10,000",
            "00:01:12,500",
        ],
        ["2", "Ew. Gross.", "Joey", "Disgust", "Negative", "0", "1", "3", "7", "00:01:12,600", "00:01:13,400"],
    ],
    "test_sent_emo.csv": [
        ["1", "What was that noise?", "Monica", "fear", "negative", "0", "0", "5", "2", "00:20:00,000", "00:20:01,500"],
        ["2", "Okay.", "Chandler", "neutral", "neutral", "0", "1", "5", "2", "00:20:01,600", "00:20:02,000"],
    ],
}
"""Rows per CSV. ``dia0_utt0`` occurs in every split, as in the real corpus."""

CLIPS: tuple[str, ...] = (
    "train_splits/dia0_utt0.wav",
    "train_splits/dia0_utt1.wav",
    "train_splits/dia1_utt1.wav",
    "dev_splits_complete/dia0_utt0.wav",
    "dev_splits_complete/dia0_utt1.wav",
    "MELD.Raw/output_repeated_splits_test/dia0_utt0.wav",
    "MELD.Raw/output_repeated_splits_test/dia0_utt1.wav",
)
"""Clips written with ``with_clips``; train ``dia1_utt0`` is deliberately missing."""


def write_meld_csv(path: Path, rows: list[list[str]]) -> Path:
    """Write one MELD annotation CSV (UTF-8, CRLF, fields quoted only where needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def make_meld_tree(root: Path, with_clips: bool = True) -> Path:
    """Build the fake MELD tree under ``root`` and return ``root``.

    Train has 4 rows, dev 2 and test 2. With ``with_clips`` the clips in :data:`CLIPS` are written
    as short wav tones (train and dev folders directly in the root, test under ``MELD.Raw/``).
    """
    for name, rows in ROWS.items():
        write_meld_csv(root / name, rows)
    if with_clips:
        for index, relative in enumerate(CLIPS):
            write_tone(root / relative, seconds=0.1, frequency=200.0 + 20 * index)
    return root
