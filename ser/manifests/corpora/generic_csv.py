"""Any corpus described by a CSV file: one row per utterance, columns mapped by options.

Each ``*_col`` option names the CSV column that fills one [`Utterance`][ser.manifests.schema.Utterance] field; ``None``
means the corpus has no such column. Every named column must be in the header. Audio paths are relative
to ``root`` (absolute paths are kept, but stored relative when they lie below ``root``; backslashes
are read as folder separators). Columns that no option names are kept in ``extra`` as strings.

Split values are normalised: train/training -> ``train``; dev/val/valid/validation/development/
eval/evaluation -> ``validation``; test/testing -> ``test``; anything else is kept, lower-cased
(``test2``). Gender values f/female and m/male (any case) become ``F`` and ``M``; others are kept.
Labels are kept exactly as written (stripped); map them with a label set.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from ser.manifests.corpora.base import CorpusScan, require_dir
from ser.manifests.schema import ID_FIX, ManifestError, Utterance, id_problem

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "dev": "validation",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "development": "validation",
    "eval": "validation",
    "evaluation": "validation",
    "test": "test",
    "testing": "test",
}
GENDER_ALIASES = {"f": "F", "female": "F", "m": "M", "male": "M"}
UNNAMED_PREFIX = "column"
"""A blank header cell (e.g. from a trailing delimiter) is named ``column<N>``, N counted from 1."""


def normalise_split(value: str) -> str:
    """Map a split name onto ``train``/``validation``/``test``; other names come back lower-cased."""
    lowered = value.strip().lower()
    return SPLIT_ALIASES.get(lowered, lowered)


DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
"""Spellings of delimiters that are awkward to type in a shell (``--delimiter tab``)."""


def check_delimiter(delimiter: str) -> str:
    """The one-character field delimiter meant by ``delimiter`` (``tab`` and ``\\t`` mean TAB)."""
    chosen = DELIMITER_NAMES.get(delimiter.lower(), delimiter) if isinstance(delimiter, str) else delimiter
    if not isinstance(chosen, str) or len(chosen) != 1 or chosen in '\r\n"':
        raise ManifestError(
            f"CSV delimiter {delimiter!r} is not usable: it must be one character other than a "
            "quote or a line break, e.g. --delimiter ';' or --delimiter tab"
        )
    return chosen


def check_encoding(encoding: str) -> None:
    """Refuse a name that is not a text encoding Python knows, naming common ones."""
    try:
        "".encode(encoding)
    except (LookupError, TypeError):
        raise ManifestError(
            f"unknown CSV encoding {encoding!r}; use a Python codec name such as utf-8, "
            "utf-8-sig, utf-16, latin-1, cp1252 or gb18030"
        ) from None


def scan(
    root: Path,
    *,
    csv_path: Path,
    id_col: str | None = None,
    audio_col: str = "audio",
    label_col: str | None = "label",
    speaker_col: str | None = "speaker",
    text_col: str | None = "text",
    split_col: str | None = None,
    session_col: str | None = None,
    dialog_col: str | None = None,
    start_col: str | None = None,
    end_col: str | None = None,
    gender_col: str | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> CorpusScan:
    """Read one utterance per row of ``csv_path`` (absolute, or relative to ``root`` or the cwd).

    Raises [`ManifestError`][ser.manifests.schema.ManifestError] for a column option naming no header column, a row
    without an id or audio path, an unparsable start/end, ``end < start``, an id used twice or an id holding
    invisible characters (see [`id_problem`][ser.manifests.schema.id_problem]; all naming the file and line).
    """
    require_dir(root, "corpus root", "Pass the folder that the CSV's audio paths are relative to.")
    delimiter = check_delimiter(delimiter)
    check_encoding(encoding)
    source = _locate_csv(root, Path(csv_path))
    options = {
        "id_col": id_col,
        "audio_col": audio_col,
        "label_col": label_col,
        "speaker_col": speaker_col,
        "text_col": text_col,
        "split_col": split_col,
        "session_col": session_col,
        "dialog_col": dialog_col,
        "start_col": start_col,
        "end_col": end_col,
        "gender_col": gender_col,
    }
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # tolerate a byte-order mark written by spreadsheet programs
    result = CorpusScan(utterances=[])
    first_line: dict[str, int] = {}
    try:
        with source.open(encoding=encoding, newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            columns, unnamed = _header(reader, source)
            _check_columns(options, columns, source)
            mapped = {column for column in options.values() if column is not None}
            for row in reader:
                where = f"{source}:{reader.line_num}"
                if None in row:
                    raise ManifestError(
                        f"{where}: row has more fields than the header ({len(columns)} "
                        f"columns); quote values that contain {delimiter!r}"
                    )
                values = {key: (value or "").strip() for key, value in row.items()}
                if not any(values.values()):
                    result.skip("blank row")
                    continue
                utt = _utterance(values, options, root, where)
                unseen = id_problem(utt.id)
                if unseen:
                    raise ManifestError(f"{where}: id {utt.id!r} {unseen}; {ID_FIX}")
                if utt.id in first_line:
                    raise ManifestError(
                        f"{where}: id {utt.id!r} already used on line {first_line[utt.id]}; ids must be unique"
                    )
                first_line[utt.id] = reader.line_num
                utt.extra = {
                    key: values[key] for key in columns if key not in mapped and (values[key] or key not in unnamed)
                }
                result.utterances.append(utt)
    except UnicodeDecodeError as err:
        raise ManifestError(
            f"{source}: not readable as {encoding} ({err.reason} at byte {err.start}); "
            "pass the file's encoding (e.g. encoding='latin-1')"
        ) from err
    except csv.Error as err:
        raise ManifestError(f"{source}: malformed CSV ({err})") from err
    return result


def _locate_csv(root: Path, csv_path: Path) -> Path:
    """An absolute path as is; a relative one below ``root`` first, then from the working folder."""
    candidates = [csv_path] if csv_path.is_absolute() else [root / csv_path, csv_path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in candidates)
    raise ManifestError(
        f"CSV file not found (looked for {tried}); pass --csv (csv_path= in Python) as an "
        "absolute path or relative to ROOT"
    )


def _header(reader: csv.DictReader[str], source: Path) -> tuple[list[str], set[str]]:
    """The stripped column names and the subset that were blank (named ``column<N>``).

    Refuses an empty file and a name used twice.
    """
    if reader.fieldnames is None:
        raise ManifestError(f"{source}: empty CSV, expected a header line naming the columns")
    original = list(reader.fieldnames)
    columns = [name.strip() or f"{UNNAMED_PREFIX}{index}" for index, name in enumerate(original, start=1)]
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise ManifestError(
            f"{source}:1: column name(s) {', '.join(map(repr, repeated))} occur more than "
            "once in the header; rename them so that each column can be told apart"
        )
    reader.fieldnames = columns
    unnamed = {name for name, raw in zip(columns, original, strict=True) if not raw.strip()}
    return columns, unnamed


def _check_columns(options: dict[str, str | None], columns: list[str], source: Path) -> None:
    """Every column an option names must be in the header."""
    for option, column in options.items():
        if column is None or column in columns:
            continue
        flag = "--" + option.replace("_", "-")
        fix = f"pass {flag} <one of those columns>"
        if option != "audio_col":
            fix += f", or {flag} '' if the CSV has no such column"
        raise ManifestError(
            f"{source}: no column {column!r} (named by {flag}; {option}= in Python); columns "
            f"present: {', '.join(columns)}. {fix}"
        )


def _optional(values: dict[str, str], column: str | None) -> str | None:
    """The stripped value of ``column``, or None when the option is unset or the cell is empty."""
    if column is None:
        return None
    return values.get(column) or None


def _seconds(values: dict[str, str], column: str | None, where: str) -> float | None:
    text = _optional(values, column)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ManifestError(f"{where}: column {column!r} holds {text!r}, not a number of seconds") from None


def _audio_path(value: str, root: Path) -> str:
    """Portable audio path: relative POSIX below ``root``, absolute (POSIX form) elsewhere."""
    path = PurePosixPath(value.replace("\\", "/"))
    if not path.is_absolute():
        return path.as_posix()
    for base in (root, root.resolve()):
        try:
            return path.relative_to(PurePosixPath(base.as_posix())).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def _utterance(values: dict[str, str], options: dict[str, str | None], root: Path, where: str) -> Utterance:
    audio_value = values[options["audio_col"] or "audio"]
    if not audio_value:
        raise ManifestError(f"{where}: empty audio path (column {options['audio_col']!r}); every row needs one")
    audio = _audio_path(audio_value, root)
    id_col = options["id_col"]
    if id_col is None:
        uid = str(PurePosixPath(audio).with_suffix(""))
    else:
        uid = values[id_col]
        if not uid:
            raise ManifestError(f"{where}: empty id (column {id_col!r}); every row needs a unique id")
    start = _seconds(values, options["start_col"], where)
    end = _seconds(values, options["end_col"], where)
    if start is not None and end is not None and end < start:
        raise ManifestError(f"{where}: segment ends ({end}) before it starts ({start})")
    split = _optional(values, options["split_col"])
    gender = _optional(values, options["gender_col"])
    return Utterance(
        id=uid,
        audio=audio,
        start=start,
        end=end,
        text=_optional(values, options["text_col"]),
        label=_optional(values, options["label_col"]),
        speaker=_optional(values, options["speaker_col"]),
        gender=GENDER_ALIASES.get(gender.lower(), gender) if gender else None,
        session=_optional(values, options["session_col"]),
        dialog=_optional(values, options["dialog_col"]),
        split=normalise_split(split) if split else None,
    )
