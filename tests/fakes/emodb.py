"""A miniature Berlin EmoDB tree: ``wav/SSTTTEV.wav`` plus an ``erkennung.txt`` like the original."""

from __future__ import annotations

from pathlib import Path

from tests.fakes import write_tone

NBSP = "\xa0"

RATINGS: dict[str, tuple[float, float] | None] = {
    "03a01Fa": (90.0, 75.0),  # selected
    "08b01Wa": (100.0, 60.0),  # selected: naturalness exactly at the threshold
    "09a04Lc": (79.5, 90.0),  # not selected: recognition below 80
    "10b02Ea": (85.0, 59.9),  # not selected: naturalness below 60
    "13a07Ab": (80.0, 80.0),  # selected: recognition exactly at the threshold
    "16b10Ta": (95.5, 70.25),  # selected
    "11b09Na": None,  # a recording missing from erkennung.txt
}
"""Recordings written to ``wav/`` -> (percent recognised, percent natural) in erkennung.txt."""

LISTED_WITHOUT_AUDIO = {"12a05Fa": (88.0, 66.0)}
"""Rows of erkennung.txt with no wav (the real file lists ~816 recordings for 535 wavs)."""

SELECTED = ["03a01Fa", "08b01Wa", "13a07Ab", "16b10Ta"]


def _percent(value: float) -> str:
    """German decimal comma, padded with no-break spaces as in the original file."""
    return f"{value:.2f}".replace(".", ",") + NBSP * 5


def make_emodb_tree(root: Path, with_erkennung: bool = True) -> Path:
    """Build the fake corpus in ``root/emodb`` and return that folder.

    ``wav/`` holds the recordings of :data:`RATINGS` plus one file whose name is not EmoDB's; the
    ``silb/`` folder holds a non-audio file that adapters must ignore.
    """
    corpus = root / "emodb"
    for stem in RATINGS:
        write_tone(corpus / "wav" / f"{stem}.wav")
    write_tone(corpus / "wav" / "take2.wav")
    (corpus / "silb").mkdir(parents=True, exist_ok=True)
    (corpus / "silb" / "03a01Fa.silb").write_bytes("0.080080\tder\n0.244195\tla\n".encode("latin-1"))
    if with_erkennung:
        lines = [f"Nr.{NBSP}\tSatz\terkannt\tnatuerlich"]
        rated = {**{k: v for k, v in RATINGS.items() if v is not None}, **LISTED_WITHOUT_AUDIO}
        for number, (stem, (recognition, naturalness)) in enumerate(sorted(rated.items()), start=3):
            lines.append(f"{number}{NBSP * 2}\t{stem}.wav\t{_percent(recognition)}\t{_percent(naturalness)}")
        (corpus / "erkennung.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    return corpus
