"""The tiny synthetic corpus every ablate test runs its grids on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.caches import tiny_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    return tiny_corpus(tmp_path)
