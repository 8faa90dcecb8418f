"""IEMOCAP full release: ``SessionN/dialog/...`` annotations, ``SessionN/sentences/...`` per-turn files.

``root`` is the ``IEMOCAP_full_release`` folder. Each session folder (``Session1`` ... ``Session5``;
any subset is accepted) holds, per dialog (``Ses01F_impro01``, ``Ses01M_script01_1``, ...):

* ``dialog/EmoEvaluation/<dialog>.txt``: a ``%`` header, then one block per turn. A block opens with
  a TAB-separated summary line ``[start - end]  turn_id  code  [V, A, D]`` (times in seconds inside
  the whole-dialog wav, consensus category code, mean valence/arousal/dominance on a 1-5 scale),
  followed by per-annotator ``C-..:`` (category) and ``A-..:`` (dimension) lines, which are ignored.
* ``dialog/transcriptions/<dialog>.txt``: lines ``<turn_id> [start-end]: text``; the text may hold
  bracketed non-speech tokens (``[LAUGHTER]``), which are removed from ``text``.
* ``sentences/wav/<dialog>/<turn_id>.wav``: the turn's own audio (the manifest's ``audio``).
* ``sentences/MOCAP_{rotated,head,hand}/<dialog>/<turn_id>.txt``: per-turn motion capture.

The letter after ``Ses0N`` in a dialog name tells which actor wore the markers; the speaker of a
turn is given by the letter before the turn number (``Ses01F_impro01_M000`` is spoken by the male
actor of session 1, speaker ``Ses01M``). Raw labels are the consensus codes, ``xxx`` (no majority)
and ``oth`` included; label sets decide which ones to keep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ser.manifests.corpora.base import CorpusScan, decode_text, relative_audio, require_dir
from ser.manifests.schema import ManifestError, Utterance

CODES = ("neu", "hap", "exc", "sad", "ang", "fru", "fea", "sur", "dis", "oth", "xxx")
"""Consensus category codes of the EmoEvaluation summary lines."""
MOCAP_KINDS = ("rotated", "head", "hand")

SESSION_DIR = re.compile(r"^Session(\d+)$")
DIALOG_NAME = re.compile(r"^(?P<session>Ses\d\d)[FM]_(?P<part>impro\w*|script(?P<family>\d\d)\w*)$")
TURN_ID = re.compile(r"_(?P<gender>[FM])\d{3}$")
SUMMARY_LINE = re.compile(
    r"^\[\s*(?P<start>\d+(?:\.\d*)?)\s*-\s*(?P<end>\d+(?:\.\d*)?)\s*\]\s+(?P<id>\S+)"
    r"\s+(?P<code>\S+)\s+\[(?P<vad>[^\]]*)\]\s*$"
)
TRANSCRIPT_LINE = re.compile(
    r"^(?P<id>\S+)\s+\[(?P<start>\d+(?:\.\d*)?)-(?P<end>\d+(?:\.\d*)?)\]:"
    r"\s?(?P<text>.*)$"
)
NON_SPEECH = re.compile(r"\[[^\[\]]*\]")

SKIP_MISSING_WAV = "missing sentence wav"
SKIP_NO_TRANSCRIPT = "no transcript line"
SKIP_UNNUMBERED_TURN = "transcript turn without a turn number (e.g. FXX0)"
SKIP_BAD_TRANSCRIPT_LINE = "transcript line not '<id> [start-end]: text'"
SKIP_UNEVALUATED_TURN = "transcript turn without EmoEvaluation entry (use include_unlabelled)"
SKIP_BAD_SUMMARY = "malformed EmoEvaluation summary line"
SKIP_BAD_DIALOG = "EmoEvaluation file name is not a dialog name"
SKIP_NO_EVALUATION_DIR = "session without dialog/EmoEvaluation"


@dataclass
class _Turn:
    """One turn as read from an EmoEvaluation summary line or a transcript line."""

    id: str
    start: float
    end: float
    gender: str
    """``F`` or ``M``, from the id's ``_F000`` / ``_M000`` suffix."""
    label: str | None = None
    vad: tuple[float, float, float] | None = None


@dataclass
class _TranscriptLine:
    """One parsed transcript line."""

    turn: _Turn
    text: str


def scan(root: Path, *, include_unlabelled: bool = False) -> CorpusScan:
    """Find every evaluated IEMOCAP turn below ``root`` (the ``IEMOCAP_full_release`` folder).

    One row per EmoEvaluation summary line whose sentence wav exists. With ``include_unlabelled``,
    turns that have a transcript line and a sentence wav but no EmoEvaluation entry are kept too,
    with ``label`` None.
    """
    hint = "Pass the IEMOCAP_full_release folder, the one that contains Session1 ... Session5."
    require_dir(root, "IEMOCAP release root", hint)
    numbered = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := SESSION_DIR.match(p.name))]
    sessions = [p for _, p in sorted(numbered)]
    if not sessions:
        raise ManifestError(f"{root}: no Session1 ... Session5 folder found. {hint}")
    result = CorpusScan(utterances=[])
    for session_dir in sessions:
        evaluation_dir = session_dir / "dialog" / "EmoEvaluation"
        if not evaluation_dir.is_dir():
            result.skip(SKIP_NO_EVALUATION_DIR, session_dir.name)
            continue
        for evaluation in sorted(evaluation_dir.glob("*.txt")):
            if evaluation.name.startswith(".") or not evaluation.is_file():
                continue
            _scan_dialog(root, session_dir, evaluation, result, include_unlabelled)
    return result


def _scan_dialog(root: Path, session_dir: Path, evaluation: Path, result: CorpusScan, include_unlabelled: bool) -> None:
    """Append the rows of one dialog (named by its EmoEvaluation file) to ``result``."""
    dialog = evaluation.stem
    name = DIALOG_NAME.match(dialog)
    if name is None:
        result.skip(SKIP_BAD_DIALOG, relative_audio(evaluation, root))
        return
    turns = _read_evaluation(evaluation, root, result)
    transcript = _read_transcript(session_dir / "dialog" / "transcriptions" / f"{dialog}.txt", root, result)
    part = name.group("part")
    improvised = part.startswith("impro")
    session = name.group("session")
    script = None if improvised else f"script{name.group('family')}"
    evaluated = {turn.id for turn in turns}
    extra_turns = [line.turn for turn_id, line in transcript.items() if turn_id not in evaluated]
    if include_unlabelled:
        turns = turns + extra_turns
    else:
        for turn in extra_turns:
            result.skip(SKIP_UNEVALUATED_TURN, turn.id)
    for turn in turns:
        wav = session_dir / "sentences" / "wav" / dialog / f"{turn.id}.wav"
        if not wav.is_file():
            result.skip(SKIP_MISSING_WAV, relative_audio(wav, root))
            continue
        extra: dict[str, Any] = {}
        if turn.vad is not None:
            extra.update(valence=turn.vad[0], arousal=turn.vad[1], dominance=turn.vad[2])
        extra.update(dialog_start=turn.start, dialog_end=turn.end, improvised=improvised)
        if improvised:
            extra["scenario"] = part
        text: str | None = None
        line = transcript.get(turn.id)
        if line is None:
            result.skip(SKIP_NO_TRANSCRIPT, turn.id)
        else:
            text, raw = clean_text(line.text)
            if raw is not None:
                extra["text_raw"] = raw
        mocap_files = {
            kind: session_dir / "sentences" / f"MOCAP_{kind}" / dialog / f"{turn.id}.txt" for kind in MOCAP_KINDS
        }
        mocap = {kind: relative_audio(path, root) for kind, path in mocap_files.items() if path.is_file()}
        if mocap:
            extra["mocap"] = mocap
        result.utterances.append(
            Utterance(
                id=turn.id,
                audio=relative_audio(wav, root),
                text=text,
                label=turn.label,
                speaker=f"{session}{turn.gender}",
                gender=turn.gender,
                session=session,
                dialog=dialog,
                script=script,
                lang="en",
                extra=extra,
            )
        )


def clean_text(raw: str) -> tuple[str | None, str | None]:
    """Remove bracketed non-speech tokens and collapse whitespace.

    Returns ``(text, raw)``: ``text`` is None when nothing but non-speech is left; ``raw`` is the
    stripped original when tokens were removed, else None (whitespace changes alone do not count).
    """
    collapsed = " ".join(raw.split())
    cleaned = " ".join(NON_SPEECH.sub(" ", raw).split())
    return (cleaned or None), (raw.strip() if cleaned != collapsed else None)


def _read_evaluation(path: Path, root: Path, result: CorpusScan) -> list[_Turn]:
    """Summary lines of one EmoEvaluation file, in file order (annotator lines are ignored)."""
    data = path.read_bytes()
    try:
        text = decode_text(data, ("utf-8",), path)
    except (ManifestError, UnicodeDecodeError) as err:
        raise ManifestError(
            f"{path}: unreadable EmoEvaluation file (not UTF-8/ASCII text); restore it from the IEMOCAP release"
        ) from err
    turns: list[_Turn] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("["):
            continue  # header (%), annotator lines (C-.., A-..), blank lines
        match = SUMMARY_LINE.match(line.strip())
        vad = _parse_vad(match.group("vad")) if match else None
        numbered = TURN_ID.search(match.group("id")) if match else None
        if match is None or vad is None or numbered is None:
            result.skip(SKIP_BAD_SUMMARY, f"{relative_audio(path, root)}:{line_no}")
            continue
        turns.append(
            _Turn(
                id=match.group("id"),
                start=float(match.group("start")),
                end=float(match.group("end")),
                gender=numbered.group("gender"),
                label=match.group("code"),
                vad=vad,
            )
        )
    return turns


def _parse_vad(text: str) -> tuple[float, float, float] | None:
    """``"2.5000, 3.0000, 3.5000"`` -> (2.5, 3.0, 3.5); None when it is not three numbers."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        return None
    try:
        valence, arousal, dominance = (float(p) for p in parts)
    except ValueError:
        return None
    return valence, arousal, dominance


def _read_transcript(path: Path, root: Path, result: CorpusScan) -> dict[str, _TranscriptLine]:
    """Turn id -> transcript line of one dialog; empty when the file is missing.

    Lines whose id has no turn number (``..._FXX0``) or that do not have the expected form are
    counted as skipped.
    """
    if not path.is_file():
        return {}
    text = decode_text(path.read_bytes(), ("utf-8", "cp1252"), path)
    lines: dict[str, _TranscriptLine] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = TRANSCRIPT_LINE.match(line.strip())
        if match is None:
            result.skip(SKIP_BAD_TRANSCRIPT_LINE, f"{relative_audio(path, root)}:{line_no}")
            continue
        turn_id = match.group("id")
        numbered = TURN_ID.search(turn_id)
        if numbered is None:
            result.skip(SKIP_UNNUMBERED_TURN, turn_id)
            continue
        turn = _Turn(
            id=turn_id,
            start=float(match.group("start")),
            end=float(match.group("end")),
            gender=numbered.group("gender"),
        )
        lines.setdefault(turn_id, _TranscriptLine(turn=turn, text=match.group("text")))
    return lines
