"""A miniature ESD tree: two Mandarin and two English speakers, each transcript in its own encoding.

Per speaker and emotion there is one clip in each of ``train``/``evaluation``/``test``, numbered as
in ESD (Neutral 1-350, Angry 351-700, ... ; within an emotion train first, then evaluation, then
test). The transcripts carry the quirks the adapter must survive:

* 0001: GB2312, Chinese text and Chinese emotion words, CRLF line ends.
* 0003: UTF-16 with a byte-order mark.
* 0011: UTF-8; one unparsable line, one line whose emotion disagrees with the folder, one clip with
  no transcript line, and one extra clip lying directly in its emotion folder (no split).
* 0016: Latin-1 with an accented character; one line separated by spaces instead of TABs.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes import write_tone

DATASET_FOLDER = "Emotion Speech Dataset"
EMOTION_FOLDERS = ("Neutral", "Angry", "Happy", "Sad", "Surprise")
EMOTION_OFFSETS = {"Neutral": 0, "Angry": 350, "Happy": 700, "Sad": 1050, "Surprise": 1400}
SPLIT_NUMBERS = {"train": 1, "evaluation": 301, "test": 321}
"""Official split folder -> utterance number within the emotion (1-based)."""

ZH_EMOTION_WORDS = {"Neutral": "中立", "Angry": "生气", "Happy": "快乐", "Sad": "伤心", "Surprise": "惊喜"}
ZH_SENTENCES = {1: "今天早上下了一场大雨。", 301: "我们一起去公园散步吧。", 321: "这本书放在桌子上面。"}
EN_SENTENCES = {
    1: "The garden gate was left open.",
    301: "We walked home along the river.",
    321: "Please hand me the blue folder.",
}
LATIN1_SENTENCES = {
    1: "The café opens before noon.",
    301: "Her résumé arrived on Friday.",
    321: "Please hand me the blue folder.",
}

SPEAKERS = ("0001", "0003", "0011", "0016")
UNPARSABLE_LINE = "this garbled line has no fields at all"
DISAGREEING_ID = "0011_000701"
"""In the Happy folder, but its transcript line says Sad."""
UNTRANSCRIBED_ID = "0011_001721"
"""Surprise/test clip of 0011 with no transcript line."""
LOOSE_ID = "0011_000002"
"""Neutral clip of 0011 lying directly in the emotion folder (no split sub-folder)."""
SPACED_ID = "0016_001051"
"""Sad/train clip of 0016 whose transcript line is separated by spaces."""


def utterance_id(speaker: str, emotion: str, split: str) -> str:
    """ESD id of the fake clip of ``speaker`` in ``emotion``/``split``."""
    return f"{speaker}_{EMOTION_OFFSETS[emotion] + SPLIT_NUMBERS[split]:06d}"


def sentences(speaker: str) -> dict[int, str]:
    """Number within the emotion -> transcript text of a speaker."""
    if speaker in ("0001", "0003"):
        return ZH_SENTENCES
    return LATIN1_SENTENCES if speaker == "0016" else EN_SENTENCES


def _transcript_lines(speaker: str) -> list[str]:
    lines = []
    for emotion in EMOTION_FOLDERS:
        for split, number in SPLIT_NUMBERS.items():
            uid = utterance_id(speaker, emotion, split)
            if uid == UNTRANSCRIBED_ID:
                continue
            emotion_field = ZH_EMOTION_WORDS[emotion] if speaker in ("0001", "0003") else emotion
            if uid == DISAGREEING_ID:
                emotion_field = "Sad"
            separator = "   " if uid == SPACED_ID else "\t"
            lines.append(separator.join((uid, sentences(speaker)[number], emotion_field)))
    if speaker == "0011":
        lines.insert(3, UNPARSABLE_LINE)
        lines.append(f"{LOOSE_ID}\t{EN_SENTENCES[1]}\tNeutral")
    return lines


def make_esd_tree(root: Path) -> Path:
    """Build the fake corpus under ``root`` and return its ``Emotion Speech Dataset`` folder."""
    dataset = root / DATASET_FOLDER
    for speaker in SPEAKERS:
        folder = dataset / speaker
        for emotion in EMOTION_FOLDERS:
            for split in SPLIT_NUMBERS:
                write_tone(folder / emotion / split / f"{utterance_id(speaker, emotion, split)}.wav", seconds=0.1)
        lines = _transcript_lines(speaker)
        transcript = folder / f"{speaker}.txt"
        if speaker == "0001":
            transcript.write_bytes("\r\n".join(lines).encode("gb2312") + b"\r\n")
        elif speaker == "0003":
            transcript.write_bytes(("\n".join(lines) + "\n").encode("utf-16"))
        elif speaker == "0016":
            transcript.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
        else:
            transcript.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    write_tone(dataset / "0011" / "Neutral" / f"{LOOSE_ID}.wav", seconds=0.1)
    return dataset
