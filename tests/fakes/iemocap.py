"""A miniature IEMOCAP release: two sessions, one improvised and one scripted dialog each.

What the tree holds (the adapter tests rely on these facts):

* ``Ses01F_impro01``: F000 neu, M000 fru, F001 xxx; the transcript has a ``[LAUGHTER]`` token in
  M000, a ``[BREATHING]`` token in F001 and an unnumbered ``Ses01F_impro01_FXX0`` line. F000 has all
  three mocap files, M000 only ``MOCAP_head``.
* ``Ses01M_script01_1``: F000 hap, M000 sad, M001 exc whose sentence wav is missing.
* ``Ses02M_impro05a``: F000 ang, M000 exc (transcript is only ``[LAUGHTER]``), M001 neu with no
  transcript line.
* ``Ses02F_script01_2``: F000 exc, M000 sad, plus M001 which has a transcript line and a wav but no
  EmoEvaluation entry.

So 11 evaluated turns, 10 of them with a wav; every sentence wav is a 0.2 s tone.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes import write_tone

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"

CATEGORY_NAMES = {
    "neu": "Neutral state",
    "hap": "Happiness",
    "exc": "Excited",
    "sad": "Sadness",
    "ang": "Anger",
    "fru": "Frustration",
    "xxx": "Other",
}

# dialog -> turns: (turn suffix, start, end, consensus code, (V, A, D), transcript text or None)
DIALOGS: dict[str, list[tuple[str, float, float, str, tuple[float, float, float], str | None]]] = {
    "Ses01F_impro01": [
        ("F000", 6.2901, 8.2357, "neu", (2.5, 2.5, 2.5), "Excuse me."),
        ("M000", 7.5712, 10.4750, "fru", (2.0, 3.5, 3.5), "Do you have  your forms? [LAUGHTER]"),
        ("F001", 10.0100, 11.3925, "xxx", (2.5, 3.0, 3.0), "[BREATHING] Yeah, right here."),
    ],
    "Ses01M_script01_1": [
        ("F000", 3.1200, 5.8800, "hap", (4.0, 3.5, 3.0), "What a lovely morning this is."),
        ("M000", 6.0000, 7.4500, "sad", (1.5, 2.0, 2.0), "I suppose so."),
        ("M001", 8.1000, 9.9000, "exc", (4.5, 4.5, 3.5), "We're going tomorrow!"),
    ],
    "Ses02M_impro05a": [
        ("F000", 12.5000, 15.2500, "ang", (1.5, 4.0, 4.5), "Give it back to me right now!"),
        ("M000", 15.3000, 16.1000, "exc", (4.0, 4.5, 3.5), "[LAUGHTER]"),
        ("M001", 16.5000, 18.0000, "neu", (3.0, 2.0, 2.5), None),
    ],
    "Ses02F_script01_2": [
        ("F000", 2.0000, 4.7500, "exc", (4.5, 4.0, 3.0), "Oh, that's wonderful news!"),
        ("M000", 5.0000, 6.5000, "sad", (2.0, 1.5, 2.0), "I can't stay, though."),
    ],
}

MISSING_WAVS = {"Ses01M_script01_1_M001"}
"""Evaluated turns whose sentence wav is not written."""
TRANSCRIPT_ONLY = {"Ses02F_script01_2": ("M001", 7.0000, 8.2000, "Maybe next year.")}
"""A turn per dialog with transcript line and wav but no EmoEvaluation entry."""
UNNUMBERED = {"Ses01F_impro01": ("FXX0", 11.5000, 12.0500, "[GARBAGE] um")}
"""Transcript lines whose id has no turn number, as in the real release."""
MOCAP = {"Ses01F_impro01_F000": ("rotated", "head", "hand"), "Ses01F_impro01_M000": ("head",)}
"""Turn id -> which per-turn motion-capture files exist."""

SENTENCE_SECONDS = 0.2


def _evaluation_text(dialog: str) -> str:
    """EmoEvaluation file: header, then one block per turn (summary + annotator lines)."""
    lines = [HEADER, ""]
    for suffix, start, end, code, (v, a, d), _ in DIALOGS[dialog]:
        category = CATEGORY_NAMES[code]
        lines += [
            f"[{start:.4f} - {end:.4f}]\t{dialog}_{suffix}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]",
            f"C-E1:\t{category};\t()",
            f"C-E3:\t{category};\t()",
            f"C-F1:\t{CATEGORY_NAMES['neu'] if code == 'xxx' else category};\t(tentative)",
            f"A-E3:\tval {round(v)}; act {round(a)}; dom  {round(d)};\t()",
            f"A-F1:\tval {round(v)}; act {round(a)}; dom  {round(d)};\t()",
            "",
        ]
    return "\n".join(lines) + "\n"


def _transcript_line(turn_id: str, start: float, end: float, text: str) -> str:
    return f"{turn_id} [{start:08.4f}-{end:08.4f}]: {text}"


def _transcript_text(dialog: str) -> str:
    """Transcript file: one line per turn in time order, including the extra kinds of line."""
    entries = [
        (start, _transcript_line(f"{dialog}_{suffix}", start, end, text))
        for suffix, start, end, _, _, text in DIALOGS[dialog]
        if text is not None
    ]
    for extras in (TRANSCRIPT_ONLY, UNNUMBERED):
        if dialog in extras:
            suffix, start, end, text = extras[dialog]
            entries.append((start, _transcript_line(f"{dialog}_{suffix}", start, end, text)))
    return "\n".join(line for _, line in sorted(entries)) + "\n"


def _write_mocap(path: Path, kind: str) -> None:
    """Two header lines, then rows of frame number, time and marker values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width = {"rotated": 6, "head": 6, "hand": 4}[kind]
    header = ["Frame#", "Time"] + [f"{kind}{i}" for i in range(width)]
    rows = [" ".join(header), " ".join(["f", "s"] + ["mm"] * width)]
    for frame in range(3):
        values = [f"{frame + 1}", f"{frame / 120:.4f}"] + [f"{0.5 * i + frame:.3f}" for i in range(width)]
        rows.append(" ".join(values))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def make_iemocap_tree(root: Path) -> Path:
    """Build the miniature release below ``root`` and return ``root / "IEMOCAP_full_release"``."""
    release = root / "IEMOCAP_full_release"
    (release / "Documentation").mkdir(parents=True, exist_ok=True)
    (release / "Documentation" / "README.txt").write_text("Miniature IEMOCAP fixture.\n", encoding="utf-8")
    for dialog, turns in DIALOGS.items():
        session = release / f"Session{int(dialog[3:5])}"
        evaluation_dir = session / "dialog" / "EmoEvaluation"
        evaluation_dir.mkdir(parents=True, exist_ok=True)
        (evaluation_dir / f"{dialog}.txt").write_text(_evaluation_text(dialog), encoding="utf-8")
        categorical = evaluation_dir / "Categorical" / f"{dialog}_e2_cat.txt"
        categorical.parent.mkdir(parents=True, exist_ok=True)
        categorical.write_text("".join(f"{dialog}_{t[0]} :{CATEGORY_NAMES[t[3]]};\n" for t in turns), encoding="utf-8")
        transcript = session / "dialog" / "transcriptions" / f"{dialog}.txt"
        transcript.parent.mkdir(parents=True, exist_ok=True)
        transcript.write_text(_transcript_text(dialog), encoding="utf-8")
        write_tone(session / "dialog" / "wav" / f"{dialog}.wav", seconds=0.5)
        turn_ids = [f"{dialog}_{t[0]}" for t in turns]
        if dialog in TRANSCRIPT_ONLY:
            turn_ids.append(f"{dialog}_{TRANSCRIPT_ONLY[dialog][0]}")
        for turn_id in turn_ids:
            if turn_id not in MISSING_WAVS:
                wav = session / "sentences" / "wav" / dialog / f"{turn_id}.wav"
                write_tone(wav, seconds=SENTENCE_SECONDS)
            for kind in MOCAP.get(turn_id, ()):
                _write_mocap(session / "sentences" / f"MOCAP_{kind}" / dialog / f"{turn_id}.txt", kind)
    return release
