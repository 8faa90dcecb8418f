"""The manifest: one JSON object per utterance, preceded by one header line.

A manifest file looks like this::

    {"ser_manifest": 1, "corpus": "ravdess", "root": "/data/ravdess16k", "label_set": null}
    {"id": "03-01-01-01-01-01-01", "audio": "Actor_01/03-01-01-01-01-01-01.flac", ...}
    ...

The header carries what every row shares (the corpus name and the folder that ``audio`` paths are
relative to). It is deterministic, so rebuilding a manifest from the same corpus gives the same
bytes and the same sha256. Rows are [`Utterance`][ser.manifests.schema.Utterance] records; unknown keys in a row are
kept in ``extra`` so that hand-edited manifests round-trip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ser.atomic_files import atomic_open
from ser.errors import UserError

MANIFEST_VERSION = 1
HEADER_KEY = "ser_manifest"


class ManifestError(UserError, ValueError):
    """A manifest (or the corpus behind it) is malformed; the message names the rows and the fix."""


@dataclass(kw_only=True)
class Utterance:
    """One utterance of a corpus.

    Only ``id`` is required. Every other field is ``None`` when the corpus does not have it.
    """

    id: str
    """Unique, stable identifier (used as the cache key)."""
    audio: str | None = None
    """Audio path relative to the manifest root (absolute paths are allowed); None = no audio."""
    start: float | None = None
    """Segment start in seconds inside ``audio``; None = from the beginning."""
    end: float | None = None
    """Segment end in seconds inside ``audio``; None = to the end."""
    text: str | None = None
    """Transcript, cleaned of non-speech tokens (the raw form, if different, is in ``extra``)."""
    label: str | None = None
    """The corpus' own categorical label, before any label-set mapping."""
    speaker: str | None = None
    """Speaker identifier, unique within the corpus."""
    gender: str | None = None
    """"F" or "M" where the corpus documents it."""
    session: str | None = None
    """Recording session (IEMOCAP ``Ses01`` ...)."""
    dialog: str | None = None
    """Dialogue or conversation identifier."""
    script: str | None = None
    """Script (text) identifier for acted, scripted material; None for improvised speech."""
    split: str | None = None
    """Official split: ``train``, ``validation``, ``test`` (or extra test sets such as ``test2``)."""
    duration: float | None = None
    """Duration in seconds of the utterance (of the segment when start/end are set)."""
    lang: str | None = None
    """Language code (``en``, ``zh``, ``de``)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Corpus-specific fields (IEMOCAP V/A/D, motion-capture paths, intensity, ...)."""

    def to_json(self) -> str:
        """Serialise to one JSON line; ``None`` fields and an empty ``extra`` are omitted."""
        record = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if not record.get("extra"):
            record.pop("extra", None)
        return json.dumps(record, ensure_ascii=False, sort_keys=False)

    def fingerprint(self) -> str:
        """Short hash of what features are computed from: audio path, segment and text.

        Caches store it per row; a reader compares it with the current manifest row, so labels and
        splits can change freely but a changed audio path, segment or transcript is caught.
        """
        key = json.dumps([self.audio, self.start, self.end, self.text], ensure_ascii=False)
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Utterance:
        """Build from a parsed JSON object; unknown keys are moved into ``extra``."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in record.items() if k in known}
        unknown = {k: v for k, v in record.items() if k not in known}
        if unknown:
            kwargs["extra"] = {**kwargs.get("extra", {}), **unknown}
        return cls(**kwargs)


UTTERANCE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Utterance))
TEXT_FIELDS: tuple[str, ...] = (
    "audio",
    "text",
    "label",
    "speaker",
    "gender",
    "session",
    "dialog",
    "script",
    "split",
    "lang",
)
"""Fields that hold a string (or null)."""
SECONDS_FIELDS: tuple[str, ...] = ("start", "end", "duration")
"""Fields that hold a finite number of seconds (or null)."""


def field_type_error(record: dict[str, Any]) -> str | None:
    """Why a row's known fields have the wrong JSON type (what to write instead), or None when they are fine."""
    for name in TEXT_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            return (
                f"field {name!r} is {json.dumps(value, ensure_ascii=False)} ({_json_type(value)}); it must be "
                f"a string or null, e.g. {json.dumps(str(value), ensure_ascii=False)}"
            )
    for name in SECONDS_FIELDS:
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return (
                f"field {name!r} is {json.dumps(value, ensure_ascii=False)} ({_json_type(value)}); it must be "
                "a number of seconds (e.g. 1.25) or null"
            )
    extra = record.get("extra")
    if extra is not None and not isinstance(extra, dict):
        return f"field 'extra' is {_json_type(extra)}; it must be a JSON object of corpus-specific fields"
    return None


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number" if math.isfinite(value) else "not a finite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass(kw_only=True)
class ManifestHeader:
    """What all rows of a manifest share."""

    corpus: str
    """Adapter name that built the manifest (``ravdess``, ``iemocap``, ``csv`` ...)."""
    root: str
    """Folder that relative ``audio`` paths are resolved against."""
    label_set: str | None = None
    """Label set the rows were filtered to at build time, if any."""
    roots: dict[str, str] | None = None
    """Joined manifests (``ser manifest join``) only: corpus -> the folder that relative ``audio`` paths of
    that corpus' rows (``extra["corpus"]``) are resolved against. Rows keep their ``audio`` strings
    unchanged, so stores extracted from the separate manifests still match the joined rows."""

    def to_json(self) -> str:
        record = {HEADER_KEY: MANIFEST_VERSION, **dataclasses.asdict(self)}
        if record["roots"] is None:  # single-corpus headers keep their historical bytes
            del record["roots"]
        return json.dumps(record, ensure_ascii=False)


@dataclass
class Manifest:
    """A header plus the utterances, in file order."""

    header: ManifestHeader
    """The header line: the corpus, its folder and the label set."""
    utterances: list[Utterance]
    """One record per utterance, in file order."""
    path: Path | None = None
    """Where it was read from (None for a manifest built in memory)."""
    line_numbers: list[int] | None = None
    """File line number of each utterance (for error messages), when read from a file."""

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    @property
    def root(self) -> Path:
        """The audio root; a relative root is taken relative to the manifest's folder."""
        return self._resolve_root(self.header.root)

    def _resolve_root(self, text: str) -> Path:
        root = Path(text)
        if not root.is_absolute() and self.path is not None:
            root = self.path.parent / root
        return root

    def root_of(self, utterance: Utterance) -> Path:
        """The folder ``utterance``'s relative audio path is resolved against: its corpus' root in a joined
        manifest (``header.roots``), else the manifest root."""
        if self.header.roots:
            corpus = utterance.extra.get("corpus")
            if isinstance(corpus, str) and corpus in self.header.roots:
                return self._resolve_root(self.header.roots[corpus])
        return self.root

    def audio_path(self, utterance: Utterance) -> Path | None:
        """Absolute path of an utterance's audio file, or None when it has none."""
        if utterance.audio is None:
            return None
        path = Path(utterance.audio)
        return path if path.is_absolute() else self.root_of(utterance) / path

    def location(self, index: int) -> str:
        """``file:line`` of the utterance at ``index`` (or ``row N`` for in-memory manifests)."""
        if self.line_numbers is not None and self.path is not None:
            return f"{self.path}:{self.line_numbers[index]}"
        return f"row {index + 1}"

    def by_id(self) -> dict[str, Utterance]:
        """Map id -> utterance (the last one wins for duplicated ids; validation refuses them)."""
        return {u.id: u for u in self.utterances}


def write_manifest(path: str | os.PathLike[str], header: ManifestHeader, utterances: Iterable[Utterance]) -> int:
    """Write a manifest atomically (temp file in the same folder, then rename).

    Returns the number of utterances written. A crash never leaves a half-written manifest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with atomic_open(path, newline="\n") as out:
        out.write(header.to_json() + "\n")
        for utt in utterances:
            out.write(utt.to_json() + "\n")
            count += 1
    return count


RESERVED_ID_MARK = "@aug"
"""Ids of augmented copies are ``<id>@aug<k>`` in cache stores; a manifest id may not contain it."""

UNSEEN_ID_CATEGORIES: dict[str, str] = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cs": "a lone surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
"""Unicode categories an id may not hold: they print as nothing (or break the line), so ``"X"`` and
``"X\\x00"`` or ``"X\\u200b"`` look like one id while every cache keeps them apart (and a lone surrogate
cannot even be written as UTF-8). Cc covers NUL, tabs, line breaks and DEL; Cf covers the zero-width
space, zero-width joiners, the byte-order mark, the soft hyphen and bidirectional marks."""

ID_FIX = "rename the id to visible characters only (rebuild the manifest, or rename the corpus file it comes from)"
"""The fix named for every id refused by [`id_problem`][ser.manifests.schema.id_problem]."""


def visible_escape(char: str) -> str:
    """``char`` as a Python escape that can be read on any terminal: ``\\x00``, ``\\u200b``, ``\\x20``."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def id_problem(uid: str) -> str | None:
    """Why ``uid`` cannot be an utterance id (naming the offending character as an escape), or None.

    Refused: characters of the [`UNSEEN_ID_CATEGORIES`][ser.manifests.schema.UNSEEN_ID_CATEGORIES], any
    whitespace other than the plain space (a no-break or ideographic space looks like a space), and a
    space at either end. Each makes two different ids look equal in a listing, so one utterance is
    extracted twice or a cache reports duplicate ids. A space inside an id is kept (corpus file names
    hold them); so are letters in any script, whatever their Unicode normal form.
    """
    for index, char in enumerate(uid, start=1):
        category = unicodedata.category(char)
        kind = UNSEEN_ID_CATEGORIES.get(category)
        if kind is None and char.isspace() and char != " ":
            kind = "a space other than the plain space"
        if kind is not None:
            name = unicodedata.name(char, "")
            label = f"{name}, {kind}" if name else kind
            return f"holds {visible_escape(char)} ({label}) at character {index}"
    if uid.startswith(" "):
        return f"starts with a space ({visible_escape(' ')})"
    if uid.endswith(" "):
        return f"ends with a space ({visible_escape(' ')})"
    return None


def read_manifest(path: str | os.PathLike[str], *, strict: bool = True) -> Manifest:
    """Read a manifest written by [`write_manifest`][ser.manifests.schema.write_manifest] (or a hand-made JSONL file).

    A file without a header line is accepted; its root is then the file's folder and its corpus
    ``unknown``. Blank lines are skipped. Malformed JSON raises [`ManifestError`][ser.manifests.schema.ManifestError]
    naming the line and the parse error. ``strict`` (every command but ``ser manifest validate``, which lists
    such rows itself) also refuses duplicate ids, ids holding the reserved ``@aug`` mark or invisible characters
    (see [`id_problem`][ser.manifests.schema.id_problem]) and impossible
    segments (negative start, end not after start), naming the lines.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file; build one with `ser manifest CORPUS ROOT -o {path}`")
    header: ManifestHeader | None = None
    utterances: list[Utterance] = []
    line_numbers: list[int] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 text ({err}); manifests are UTF-8 JSONL") from err
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ManifestError(
                f"{path}:{line_no}: not valid JSON ({err.msg}, column {err.colno}); fix or remove that line"
            ) from err
        if not isinstance(record, dict):
            raise ManifestError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
        if HEADER_KEY in record:
            if header is not None or utterances:
                raise ManifestError(f"{path}:{line_no}: a header line may only be the first line")
            header = _parse_header(record, path, line_no)
            continue
        if "id" not in record or not isinstance(record["id"], str) or not record["id"]:
            raise ManifestError(f"{path}:{line_no}: row has no string 'id'; every row needs a unique id")
        problem = field_type_error(record)
        if problem:
            raise ManifestError(f"{path}:{line_no}: row {record['id']!r}: {problem}; fix that line")
        utterances.append(Utterance.from_dict(record))
        line_numbers.append(line_no)
    if header is None:
        header = ManifestHeader(corpus="unknown", root=".")
    if strict:
        _check_rows(path, utterances, line_numbers)
    return Manifest(header=header, utterances=utterances, path=path, line_numbers=line_numbers)


def _check_rows(path: Path, utterances: list[Utterance], line_numbers: list[int]) -> None:
    """Refuse rows every stage would misread (see [`read_manifest`][ser.manifests.schema.read_manifest]), listing up to
    five of each."""
    first: dict[str, int] = {}
    problems: dict[str, list[str]] = {
        "duplicate ids": [],
        "ids holding the reserved mark '@aug'": [],
        "ids holding invisible characters": [],
        "impossible segments": [],
    }
    for utterance, line_no in zip(utterances, line_numbers, strict=True):
        if utterance.id in first:
            problems["duplicate ids"].append(f"line {line_no} {utterance.id!r} (first at line {first[utterance.id]})")
        first.setdefault(utterance.id, line_no)
        if RESERVED_ID_MARK in utterance.id:
            problems["ids holding the reserved mark '@aug'"].append(f"line {line_no} {utterance.id!r}")
        unseen = id_problem(utterance.id)
        if unseen:
            problems["ids holding invisible characters"].append(f"line {line_no} {utterance.id!r} ({unseen})")
        start, end = utterance.start, utterance.end
        if (start is not None and start < 0) or (end is not None and end <= (start or 0.0)):
            problems["impossible segments"].append(f"line {line_no} {utterance.id!r} (start {start}, end {end})")
    fixes = {
        "duplicate ids": "make every id unique (two copies of one file?)",
        "ids holding the reserved mark '@aug'": "rename them: '<id>@aug<k>' names augmented copies in caches",
        "ids holding invisible characters": ID_FIX,
        "impossible segments": "start must be >= 0 and end > start",
    }
    found = [
        f"{len(rows)} {kind} ({'; '.join(rows[:5])}{' ...' if len(rows) > 5 else ''}): {fixes[kind]}"
        for kind, rows in problems.items()
        if rows
    ]
    if found:
        raise ManifestError(f"{path}: " + "; ".join(found) + f". `ser manifest validate {path}` lists every problem")


def _parse_header(record: dict[str, Any], path: Path, line_no: int) -> ManifestHeader:
    version = record.get(HEADER_KEY)
    if version != MANIFEST_VERSION:
        raise ManifestError(
            f"{path}:{line_no}: manifest format version {version!r} is not supported "
            f"(this ser reads version {MANIFEST_VERSION}); rebuild it with `ser manifest`"
        )
    for key in ("corpus", "root", "label_set"):
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            raise ManifestError(
                f"{path}:{line_no}: header field {key!r} is {json.dumps(value)}; it must be a "
                "string (rebuild the manifest with `ser manifest`, or fix the header line)"
            )
    roots = record.get("roots")
    if roots is not None and (
        not isinstance(roots, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in roots.items())
    ):
        raise ManifestError(
            f"{path}:{line_no}: header field 'roots' is {json.dumps(roots)}; it must map corpus names to "
            "folders (rebuild the joined manifest with `ser manifest join`)"
        )
    return ManifestHeader(
        corpus=record.get("corpus") or "unknown",
        root=record.get("root") or ".",
        label_set=record.get("label_set"),
        roots=dict(roots) if roots is not None else None,
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (used to tie caches to the manifest they were built from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
