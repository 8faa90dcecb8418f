"""What every corpus adapter returns, and small helpers they share."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ser.manifests.schema import ManifestError, Utterance

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".mp4", ".m4a", ".opus")


@dataclass
class CorpusScan:
    """The rows an adapter found plus what it skipped, so nothing is dropped silently."""

    utterances: list[Utterance]
    """The rows found, in scan order."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Reason -> count of things the adapter skipped or could not use (e.g. ``missing clip``)."""
    notes: list[str] = field(default_factory=list)
    """Human-readable remarks for the build summary (first examples of skipped files, ...)."""
    kept: Counter[str] = field(default_factory=Counter)
    """Reason -> count of rows written although something is missing (e.g. MELD rows without a clip,
    kept as text-only rows). Unlike ``skipped``, these rows are in the manifest."""

    def skip(self, reason: str, example: str | None = None, max_examples: int = 3) -> None:
        """Count one skipped item; remember the first few examples of each reason."""
        self.skipped[reason] += 1
        if example is not None and self.skipped[reason] <= max_examples:
            self.notes.append(f"{reason}: {example}")

    def keep(self, reason: str, example: str | None = None, max_examples: int = 3) -> None:
        """Count one row kept despite ``reason``; remember the first few examples."""
        self.kept[reason] += 1
        if example is not None and self.kept[reason] <= max_examples:
            self.notes.append(f"{reason}: {example}")


def require_dir(path: Path, what: str, hint: str) -> Path:
    """Return ``path`` if it is a folder, else raise a [`ManifestError`][ser.manifests.schema.ManifestError] with
    ``hint``."""
    if not path.is_dir():
        raise ManifestError(f"{path}: {what} not found. {hint}")
    return path


def relative_audio(path: Path, root: Path) -> str:
    """POSIX path of ``path`` relative to ``root`` (manifests store portable relative paths)."""
    return path.relative_to(root).as_posix()


def audio_files(folder: Path, suffixes: tuple[str, ...] = AUDIO_SUFFIXES) -> list[Path]:
    """All audio files below ``folder`` (recursive), sorted for a deterministic manifest order.

    Hidden files and macOS resource forks (``._x.wav``) are ignored.
    """
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
    )


def decode_text(data: bytes, encodings: tuple[str, ...], source: Path) -> str:
    """Decode bytes with the first encoding that fits, honouring a UTF-8/UTF-16 byte-order mark.

    Raises [`ManifestError`][ser.manifests.schema.ManifestError] naming the file and the encodings tried when none fits.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig")
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ManifestError(
        f"{source}: unreadable transcript, not decodable as any of {', '.join(encodings)}; re-save it as UTF-8"
    )


def read_csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Parse a UTF-8 CSV into ``(first line number, row)`` pairs; blank lines are skipped.

    Raises [`ManifestError`][ser.manifests.schema.ManifestError] naming the file and line for a missing column,
    unparsable quoting, or a row whose field count differs from the header's.
    """
    import csv
    import io

    text = decode_text(path.read_bytes(), ("utf-8",), path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise ManifestError(f"{path}: the file is empty; expected the header {','.join(required)}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(
            f"{path}:1: missing column(s) {', '.join(missing)}; the header must contain {','.join(required)}"
        )
    rows = []
    while True:
        line_no = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise ManifestError(f"{path}:{line_no}: unparsable CSV ({err}); fix the quoting of that row") from err
        if not fields or not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise ManifestError(
                f"{path}:{line_no}: {len(fields)} fields but the header has {len(header)}; "
                "quote fields that contain commas and fill in missing values"
            )
        rows.append((line_no, dict(zip(header, fields, strict=True))))
    return rows
