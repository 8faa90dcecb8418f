"""--checkpoint values that were meant as folders but do not exist: "no such folder", not a hub lookup."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from ser.extract.base import ExtractorError
from ser.extract.hf import looks_like_path
from ser.extract.registry import build_extractor


@pytest.mark.parametrize(
    ("name", "path_like"),
    [
        ("facebook/hubert-base-ls960", False),
        ("bert-base-uncased", False),
        ("microsoft/wavlm-base-plus", False),
        ("/models/hubert", True),
        ("./hubert", True),
        ("../models/hubert", True),
        ("~/models/hubert", True),
        ("models/large/hubert", True),
        ("C:\\models\\hubert", True),
        ("my model", True),
        ("owner/name/", True),
    ],
)
def test_looks_like_path(name: str, path_like: bool) -> None:
    assert looks_like_path(name) is path_like


def test_a_name_whose_parent_folder_exists_is_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "checkpoints").mkdir()
    monkeypatch.chdir(tmp_path)
    assert looks_like_path("checkpoints/hubert-typo")
    assert not looks_like_path("facebook/hubert-base-ls960")


@pytest.mark.parametrize("family", ["hubert", "whisper", "bert"])
@pytest.mark.parametrize("name", ["/no/such/model", "./typo-model", "a/b/c"])
def test_missing_checkpoint_folder_says_so(family: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(ExtractorError) as raised:
        build_extractor(family, checkpoint=name)
    assert time.monotonic() - start < 5.0
    message = str(raised.value)
    assert message.startswith(f"--checkpoint {name}: no such folder (")
    assert os.path.abspath(os.path.expanduser(name)) in message or str(Path(name).absolute()) in message
    assert "hub" not in message.split(";")[0] and "HF_HOME" not in message
