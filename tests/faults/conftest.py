"""Fixtures of the fault tests: small fitted runs to predict with (built once per session in
``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tone_model(tone_mlp_run: Path, tone_corpus: Path) -> tuple[Path, Path]:
    """(run directory, one clip): eGeMAPS + mlp on the synthetic tone corpus, one fold, 3 epochs."""
    return tone_mlp_run, tone_corpus.parent / "spk0_1.wav"
