"""Atomic writes: a reader of the final path sees the old content or the complete new one, never a
half-written file, and a failed write (full disk, an exception in the writer, Ctrl-C) leaves neither
a temporary file nor a changed original behind.

Every write goes the same way: write under a temporary name in the target's folder (same file
system, so the rename is atomic), ``fsync`` what was written, rename it over the final name, then
``fsync`` the folder so the rename itself survives a power cut. On any exception the temporary
file or folder is removed and the exception propagates unchanged.

* [`write_text`][ser.atomic_files.write_text], [`write_bytes`][ser.atomic_files.write_bytes],
  [`write_json`][ser.atomic_files.write_json]: a whole content at once.
* [`atomic_open`][ser.atomic_files.atomic_open]: an open text or binary file for writers that stream (CSV rows, manifest
  lines).
* [`atomic_path`][ser.atomic_files.atomic_path]: a path for writers that need one (``np.save``, ``torch.save``, h5py,
  zarr, ``save_pretrained``); they may create a file or a folder there.

Standard library only: every layer may import this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
"""Every temporary name this module makes ends with this."""


def output_file(path: str | os.PathLike[str], flag: str = "-o") -> Path:
    """The file an output option names, checked before anything is computed: a new file, or an
    existing regular file (a symbolic link counts as the file it points to, which is what gets written).
    A folder, a device, a FIFO or a socket is refused in one line: replacing it by a file (an atomic
    write renames over it) would destroy it, and writing into it is not a file's content."""
    import stat

    from ser.errors import UserError

    given = Path(path)
    target = given.resolve() if given.is_symlink() else given
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as err:
        raise UserError(f"{flag} {given}: cannot be checked ({err.strerror}); give a file path") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{flag} {given}: this is a folder; give a file path (e.g. {given / 'predictions.csv'})")
    if not stat.S_ISREG(mode):
        raise UserError(
            f"{flag} {given}: not a regular file (a device, FIFO or socket); give a file path, or leave "
            f"{flag} out to write to standard output"
        )
    return target


def temp_sibling(path: Path) -> Path:
    """A fresh hidden name beside ``path`` (``.<name>.<random>.tmp``): two processes writing the same
    file never share a temporary file."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def fsync_path(path: Path) -> None:
    """Flush one file or folder entry (a folder: its list of names) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush ``path`` to the disk: a file, or a folder with every file and folder below it."""
    if path.is_dir():
        for below in sorted(path.rglob("*")):
            if below.is_file() or below.is_dir():
                fsync_path(below)
    fsync_path(path)


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree; nothing happens when ``path`` does not exist."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def default_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """``with atomic_open(path) as out: out.write(...)``: the file appears at ``path`` complete, on leaving
    the block without an exception; otherwise ``path`` is untouched and the temporary file removed.

    ``mode`` is ``"w"`` (text, with ``encoding`` and ``newline`` as in `open`) or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole new file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    tmp = temp_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        if mode == "wb":
            out: IO[Any] = os.fdopen(fd, "wb")
        else:
            out = os.fdopen(fd, "w", encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", newline: str | None = None) -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring)."""
    with atomic_open(path, "w", encoding=encoding, newline=newline) as out:
        out.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_open(path, "wb", encoding=None) as out:
        out.write(data)


def write_json(
    path: str | os.PathLike[str],
    record: Any,
    *,
    indent: int | None = None,
    sort_keys: bool = False,
    default: Any = None,
) -> None:
    """Write ``record`` as JSON to ``path`` atomically; ``indent``, ``sort_keys`` and ``default`` as in
    `json.dumps`. A record JSON cannot encode raises before anything is written."""
    write_text(path, json.dumps(record, indent=indent, sort_keys=sort_keys, default=default))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, temp: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """``with atomic_path(final) as tmp: writer(tmp)``: the writer creates a file or a folder at ``tmp``
    (which does not exist yet); on leaving the block without an exception it is flushed to the disk and
    moved to ``final``, replacing a file or a folder there; otherwise ``tmp`` is removed and ``final``
    is untouched.

    ``temp`` names the temporary path instead of a fresh random one, for callers that find and clear
    the leftovers of a killed process by name; whatever is there when the block starts is removed.
    A file the writer made gets the mode ``open()`` would give it (some writers make ``0600`` files).
    A folder replacing a folder is swapped in with two renames; only between them (a crash there) is
    neither at ``final``.
    """
    path = Path(path)
    tmp = Path(temp) if temp is not None else temp_sibling(path)
    if tmp.parent.resolve() != path.parent.resolve():
        raise ValueError(f"the temporary path {tmp} must be in the folder of {path} (the rename must stay atomic)")
    remove_path(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer created nothing at {tmp} (meant for {path})")
        if tmp.is_file():
            os.chmod(tmp, default_file_mode())
        fsync_tree(tmp)
        _move_into_place(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise
    fsync_path(path.parent)


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; a folder at ``path`` (which a rename cannot replace) is moved aside
    first and removed after."""
    if not (path.is_dir() and not path.is_symlink()):
        os.replace(tmp, path)
        return
    aside = temp_sibling(path)
    os.replace(path, aside)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(aside, path)  # the old folder back under its name
        raise
    shutil.rmtree(aside)
