"""Toronto Emotional Speech Set (TESS): ``{OAF|YAF}_{emotion}/{OAF|YAF}_{word}_{emotion}.wav``.

Two actresses, OAF (the older speaker, aged 64) and YAF (the younger, aged 26), each say "Say the
word ..." for 200 target words in seven emotions. **Both speakers are female**; some READMEs and
dataset cards wrongly describe OAF as male.

Everything is parsed from the file name, because the folder names are spelled inconsistently
(``OAF_Pleasant_surprise``, ``YAF_pleasant_surprised``, ``OAF_Fear``). The search is recursive, since
downloaded archives often add one or more top-level folders. Raw labels are angry, disgust, fear,
happy, neutral, pleasant_surprise and sad; the file-name spellings ``ps``, ``pleasant_surprise`` and
``pleasant_surprised`` all become ``pleasant_surprise``, and case is ignored.
"""

from __future__ import annotations

from pathlib import Path

from ser.manifests.corpora.base import CorpusScan, audio_files, relative_audio, require_dir
from ser.manifests.schema import ManifestError, Utterance

SPEAKERS = ("OAF", "YAF")
EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "ps": "pleasant_surprise",
}
"""Single-token emotion spellings at the end of a file name -> raw label."""
TWO_TOKEN_EMOTIONS = {("pleasant", "surprise"): "pleasant_surprise", ("pleasant", "surprised"): "pleasant_surprise"}
"""Two-token spellings (``..._pleasant_surprised``) -> raw label."""


def parse_name(stem: str) -> tuple[str, str, str] | None:
    """Split a TESS file stem into (speaker, word, raw label), or None when it does not fit.

    The speaker is the first ``_``-separated token, the emotion the last one (or the last two for
    ``pleasant_surprise(d)``) and the word everything in between (a word may itself contain ``_``).
    Speaker is returned upper case, word and label lower case.
    """
    tokens = stem.split("_")
    if len(tokens) < 3 or tokens[0].upper() not in SPEAKERS:
        return None
    lowered = [token.lower() for token in tokens]
    if len(tokens) >= 4 and tuple(lowered[-2:]) in TWO_TOKEN_EMOTIONS:
        label, word_tokens = TWO_TOKEN_EMOTIONS[(lowered[-2], lowered[-1])], lowered[1:-2]
    elif lowered[-1] in EMOTIONS:
        label, word_tokens = EMOTIONS[lowered[-1]], lowered[1:-1]
    else:
        return None
    word = "_".join(word_tokens)
    if not word:
        return None
    return tokens[0].upper(), word, label


def scan(root: Path) -> CorpusScan:
    """Find every TESS clip below ``root`` (searched recursively).

    Two files with the same stem in different folders (typically a second copy of the corpus
    nested inside the first) raise [`ManifestError`][ser.manifests.schema.ManifestError] naming both paths.
    """
    require_dir(root, "TESS root", "Pass the folder that contains the OAF_* and YAF_* folders.")
    result = CorpusScan(utterances=[])
    seen: dict[str, Path] = {}
    for path in audio_files(root):
        parsed = parse_name(path.stem)
        if parsed is None:
            result.skip("file name is not {OAF|YAF}_{word}_{emotion}", relative_audio(path, root))
            continue
        if path.stem in seen:
            raise ManifestError(
                f"{root}: two files have the stem {path.stem!r}: "
                f"{relative_audio(seen[path.stem], root)} and {relative_audio(path, root)}; "
                "pass the folder holding a single copy of TESS as ROOT (or remove one)"
            )
        seen[path.stem] = path
        speaker, word, label = parsed
        result.utterances.append(
            Utterance(
                id=path.stem,
                audio=relative_audio(path, root),
                text=f"Say the word {word}",
                label=label,
                speaker=speaker,
                gender="F",
                script=word,
                lang="en",
            )
        )
    return result
