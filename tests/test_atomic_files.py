"""Atomic writes: the content arrives whole, and a failed write leaves the original and no temporary file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ser.atomic_files import (
    TEMP_SUFFIX,
    atomic_open,
    atomic_path,
    default_file_mode,
    write_bytes,
    write_json,
    write_text,
)


class WriterFailedError(Exception):
    """Raised by the test writers half-way through."""


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_text_bytes_and_json_store_the_content(tmp_path: Path) -> None:
    write_text(tmp_path / "a.txt", "héllo\nworld\n")
    write_bytes(tmp_path / "b.bin", b"\x00\x01\xff")
    write_json(tmp_path / "c.json", {"b": 1, "a": [1.5, None]}, sort_keys=True, indent=1)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\nworld\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01\xff"
    text = (tmp_path / "c.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"a": [1.5, None], "b": 1} and text.index('"a"') < text.index('"b"')
    assert names(tmp_path) == ["a.txt", "b.bin", "c.json"]


def test_a_rewrite_replaces_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    write_text(target, "old, and longer than the new content")
    write_text(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert names(tmp_path) == ["x.txt"]


def test_new_files_get_the_mode_open_would_give(tmp_path: Path) -> None:
    write_text(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "b.bin") as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # a writer that makes private files
        os.close(fd)
    for name in ("a.txt", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == default_file_mode()


def test_a_streaming_writer_that_raises_leaves_the_original_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "rows.csv"
    target.write_text("original\n", encoding="utf-8")
    with pytest.raises(WriterFailedError), atomic_open(target) as out:
        out.write("half of the new ")
        out.flush()
        raise WriterFailedError
    assert target.read_text(encoding="utf-8") == "original\n"
    assert names(tmp_path) == ["rows.csv"]


def test_json_that_cannot_be_encoded_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("{}", encoding="utf-8")
    with pytest.raises(TypeError):
        write_json(target, {"x": object()})
    assert target.read_text(encoding="utf-8") == "{}"
    assert names(tmp_path) == ["r.json"]


def test_atomic_open_refuses_append_and_read_modes(tmp_path: Path) -> None:
    for mode in ("a", "r", "r+"):
        with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", mode):
            pass
    assert names(tmp_path) == []


def test_a_path_writer_gets_a_fresh_temporary_name_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(TEMP_SUFFIX) and not tmp.exists()
        assert not target.exists()
        tmp.write_bytes(b"model")
    assert target.read_bytes() == b"model"
    assert names(tmp_path) == ["weights.bin"]


def test_a_path_writer_that_raises_leaves_the_original_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "store.h5"
    target.write_bytes(b"old store")
    with pytest.raises(WriterFailedError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a store")
        raise WriterFailedError
    assert target.read_bytes() == b"old store"
    assert names(tmp_path) == ["store.h5"]


def test_a_path_writer_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="created nothing"), atomic_path(tmp_path / "out.bin"):
        pass
    assert names(tmp_path) == []


def test_a_folder_writer_creates_a_complete_folder(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    with atomic_path(target) as tmp:
        (tmp / "sub").mkdir(parents=True)
        (tmp / "model.bin").write_bytes(b"weights")
        (tmp / "sub" / "config.json").write_text("{}", encoding="utf-8")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["model.bin", "sub", "sub/config.json"]
    assert names(tmp_path) == ["checkpoint"]


def test_a_folder_replaces_an_existing_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "stale.bin").write_bytes(b"from the last run")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "model.bin").write_bytes(b"new")
    assert names(target) == ["model.bin"]
    assert names(tmp_path) == ["checkpoint"]


def test_a_folder_writer_that_raises_leaves_the_old_folder_and_no_temporary_folder(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "model.bin").write_bytes(b"old")
    with pytest.raises(WriterFailedError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "model.bin").write_bytes(b"half")
        raise WriterFailedError
    assert (target / "model.bin").read_bytes() == b"old" and names(target) == ["model.bin"]
    assert names(tmp_path) == ["checkpoint"]


def test_a_named_temporary_path_is_cleared_first_and_used(tmp_path: Path) -> None:
    target = tmp_path / "seg-000001"
    leftover = tmp_path / "seg-000001.tmp"
    leftover.mkdir()
    (leftover / "ghost.npy").write_bytes(b"from a killed flush")
    with atomic_path(target, temp=leftover) as tmp:
        assert tmp == leftover and not tmp.exists()
        tmp.mkdir()
        (tmp / "rows.json").write_text("[]", encoding="utf-8")
    assert names(target) == ["rows.json"]
    assert names(tmp_path) == ["seg-000001"]


def test_a_named_temporary_path_outside_the_target_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    with (
        pytest.raises(ValueError, match="must be in the folder"),
        atomic_path(tmp_path / "out.bin", temp=tmp_path / "other" / "out.tmp"),
    ):
        pass
