"""A miniature MSP-Podcast tree: a consensus label file, ``Audios/`` and ``Transcripts/``."""

from __future__ import annotations

from pathlib import Path

from tests.fakes import write_tone

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"

ROWS: tuple[str, ...] = (
    "MSP-PODCAST_0002_0001.wav,A,5.5,2.0,5.25,12,Female,Train",
    "MSP-PODCAST_0002_0002.wav,H,4.8,6.2,4.4,12,Female,Train",
    "MSP-PODCAST_0003_0001.wav,S,2.4,2.2,3.0,Unknown,Unknown,Development",
    "MSP-PODCAST_0004_0001.wav,N,3.777778,4.0,3.5,27,Male,Test1",
    "MSP-PODCAST_0005_0001.wav,X,4.0,4.0,4.0,31,Male,Test2",
    "MSP-PODCAST_0006_0001.wav,U,5.0,4.5,4.0,44,Female,Test3",
    "MSP-PODCAST_0007_0001.wav,C,3.0,3.0,5.0,52,Male,Train",
)
"""Label rows; the audio of ``0007_0001`` is deliberately missing."""

MISSING_AUDIO = "MSP-PODCAST_0007_0001"
NO_TRANSCRIPT = "MSP-PODCAST_0006_0001"
TRANSCRIPTS: dict[str, str] = {
    "MSP-PODCAST_0002_0001": "  I told you that already, twice!\n",
    "MSP-PODCAST_0002_0002": "That’s wonderful news.\n",
    "MSP-PODCAST_0003_0001": "I guess it just didn't work out.\n",
    "MSP-PODCAST_0004_0001": "The show starts at nine.\n",
    "MSP-PODCAST_0005_0001": "Well, we'll see what happens.\n",
}


def make_msp_tree(root: Path, old_spelling: bool = False) -> Path:
    """Build the fake MSP-Podcast tree under ``root`` and return ``root``.

    The label file is ``Labels/labels_consensus.csv``, or ``Labels/labels_concensus.csv`` with
    ``old_spelling`` (the name used by older releases).
    """
    name = "labels_concensus.csv" if old_spelling else "labels_consensus.csv"
    labels = root / "Labels" / name
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("\n".join((HEADER, *ROWS)) + "\n", encoding="utf-8")
    for index, row in enumerate(ROWS):
        stem = Path(row.split(",", 1)[0]).stem
        if stem != MISSING_AUDIO:
            write_tone(root / "Audios" / f"{stem}.wav", seconds=0.1, frequency=180.0 + 15 * index)
    for stem, text in TRANSCRIPTS.items():
        path = root / "Transcripts" / f"{stem}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
