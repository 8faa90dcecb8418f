"""Berlin EmoDB: ``wav/SSTTTEV.wav``, for example ``wav/03a01Fa.wav``.

Fields of the file name: speaker SS (two digits), text code TTT (``a01`` ... ``b10``), emotion letter
E (German initial: W Ärger, L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral) and
version V (``a``, ``b``, ...). Raw labels are the English emotion names. The speakers' genders and
the ten German sentences come from the corpus documentation.

The original archive also ships ``erkennung.txt``: the listening-test result for every recording
(percentage recognised and percentage judged natural). When present, both are added to ``extra``;
``selected_only`` keeps the recordings that pass the corpus' selection rule (recognised by at least
80 % and judged natural by at least 60 %), the 535-utterance set usually reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ser.manifests.corpora.base import CorpusScan, audio_files, relative_audio, require_dir
from ser.manifests.schema import ManifestError, Utterance

EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral"}
SPEAKER_GENDERS = {
    "03": "M",
    "08": "F",
    "09": "F",
    "10": "M",
    "11": "M",
    "12": "M",
    "13": "F",
    "14": "F",
    "15": "M",
    "16": "F",
}
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}

MIN_RECOGNITION = 80.0
"""Selection rule: at least this percentage of listeners recognised the intended emotion."""
MIN_NATURALNESS = 60.0
"""Selection rule: at least this percentage of listeners judged the recording natural."""

ERKENNUNG = "erkennung.txt"
_NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[a-z]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])$")


@dataclass(frozen=True)
class Rating:
    """One row of ``erkennung.txt``: percentages recognised and judged natural."""

    recognition: float
    """Percent of listeners who recognised the intended emotion."""
    naturalness: float
    """Percent of listeners who judged the utterance natural."""


def scan(root: Path, *, selected_only: bool = False) -> CorpusScan:
    """Find every EmoDB recording in ``root/wav`` (or directly in ``root`` when it has no ``wav``).

    With ``selected_only`` only the recordings passing the selection rule of ``erkennung.txt`` are
    kept (that file must then be in ``root``); the others are counted as skipped.
    """
    require_dir(root, "EmoDB root", "Pass the folder that contains wav/ (or the .wav files themselves).")
    wav_dir = root / "wav" if (root / "wav").is_dir() else root
    ratings_path = root / ERKENNUNG
    ratings: dict[str, Rating] | None = None
    result = CorpusScan(utterances=[])
    if ratings_path.is_file():
        ratings, unparsed = read_erkennung(ratings_path)
        if unparsed:
            result.notes.append(
                f"{ratings_path.name}: {unparsed} line(s) not of the form 'Nr. Satz erkannt natuerlich' were ignored"
            )
    elif selected_only:
        raise ManifestError(
            f"{ratings_path}: not found, but selected_only needs it to apply the selection "
            "rule; copy erkennung.txt from the EmoDB archive into ROOT or drop selected_only"
        )
    for path in audio_files(wav_dir):
        match = _NAME.match(path.stem)
        if match is None:
            result.skip("file name is not SSTTTEV (speaker, text, emotion, version)", relative_audio(path, root))
            continue
        speaker, text, emotion, version = match.group("speaker", "text", "emotion", "version")
        if speaker not in SPEAKER_GENDERS or text not in TEXTS or emotion not in EMOTIONS:
            result.skip("unknown code in file name", relative_audio(path, root))
            continue
        extra: dict[str, object] = {"version": version}
        rating = ratings.get(path.stem) if ratings is not None else None
        if rating is not None:
            extra["recognition"] = rating.recognition
            extra["naturalness"] = rating.naturalness
        if selected_only:
            if rating is None:
                result.skip(f"not listed in {ERKENNUNG}", relative_audio(path, root))
                continue
            if rating.recognition < MIN_RECOGNITION or rating.naturalness < MIN_NATURALNESS:
                result.skip(f"not selected (recognition < {MIN_RECOGNITION:g} or naturalness < {MIN_NATURALNESS:g})")
                continue
        result.utterances.append(
            Utterance(
                id=path.stem,
                audio=relative_audio(path, root),
                text=TEXTS[text],
                label=EMOTIONS[emotion],
                speaker=speaker,
                gender=SPEAKER_GENDERS[speaker],
                script=text,
                lang="de",
                extra=extra,
            )
        )
    return result


def read_erkennung(path: Path) -> tuple[dict[str, Rating], int]:
    """Parse ``erkennung.txt`` into file stem -> [`Rating`][ser.manifests.corpora.emodb.Rating], plus the number of
    lines ignored.

    The file is latin-1, TAB-separated (``Nr. Satz erkannt natuerlich``), uses decimal commas and pads
    fields with no-break spaces. Fields are split on any whitespace (no-break spaces included), so
    padding and stray spaces around the tabs do not matter. The header line, blank lines and lines
    whose second field is not a file name are ignored and counted; a file row whose percentages are
    not numbers raises [`ManifestError`][ser.manifests.schema.ManifestError] naming the line.
    """
    ratings: dict[str, Rating] = {}
    ignored = 0
    text = path.read_bytes().decode("latin-1")
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4 or not _NAME.match(Path(fields[1]).stem):
            if not fields[0].lower().startswith("nr"):
                ignored += 1
            continue
        try:
            recognition, naturalness = (float(value.replace(",", ".")) for value in fields[2:])
        except ValueError as err:
            raise ManifestError(
                f"{path}:{line_no}: expected two percentages with decimal commas after "
                f"{fields[1]}, got {fields[2]!r} and {fields[3]!r}"
            ) from err
        ratings.setdefault(Path(fields[1]).stem, Rating(recognition, naturalness))
    return ratings, ignored
