"""Provenance recorded in every store: library versions and the code version that wrote it."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from ser import __version__

TRACKED_PACKAGES = ("numpy", "h5py", "zarr", "torch", "transformers", "opensmile", "torchvggish")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    """Commit of the ser source tree when it runs from a git checkout, else None."""
    source = Path(__file__).resolve().parents[2]
    if not (source / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, str | None]:
    """Versions of Python, ser and the numeric libraries (read from metadata; nothing is imported)."""
    env: dict[str, str | None] = {
        "ser": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "git": git_revision(),
    }
    env.update({package: _version(package) for package in TRACKED_PACKAGES})
    return env


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
