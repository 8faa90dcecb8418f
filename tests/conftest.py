"""Shared fixtures: the real data beside the repository (``../shared/data``), skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$SER_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    return Path(os.environ.get("SER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def ravdess_root() -> Path:
    """The real 16 kHz RAVDESS subset (actors 01-20); tests using it skip when it is absent."""
    root = shared_data_dir() / "ravdess16k"
    if not root.is_dir():
        pytest.skip(f"real RAVDESS data not found at {root}")
    return root


@pytest.fixture(scope="session")
def meld_root() -> Path:
    """The real MELD train/dev CSVs; tests using them skip when absent."""
    root = shared_data_dir() / "meld"
    if not root.is_dir():
        pytest.skip(f"real MELD data not found at {root}")
    return root


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """Small test models run fastest on one thread (and the CI machine has two cores)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
