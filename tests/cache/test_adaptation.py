"""read_provenance: a checkpoint's fine-tuning record, or a clear error for a file that is not one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.cache.adaptation import PROVENANCE_NAME, AdaptationError, read_provenance


def test_no_provenance_file_means_an_unadapted_checkpoint(tmp_path: Path) -> None:
    assert read_provenance(tmp_path) is None


def test_provenance_object_is_returned(tmp_path: Path) -> None:
    (tmp_path / PROVENANCE_NAME).write_text('{"mode": "lora", "fold": "Session1"}', encoding="utf-8")
    assert read_provenance(tmp_path) == {"mode": "lora", "fold": "Session1"}


@pytest.mark.parametrize(("text", "match"), [("[1, 2]", "not a JSON object"), ("{oops", "unreadable")])
def test_provenance_that_is_no_json_object_is_refused(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / PROVENANCE_NAME).write_text(text, encoding="utf-8")
    with pytest.raises(AdaptationError, match=match):
        read_provenance(tmp_path)
