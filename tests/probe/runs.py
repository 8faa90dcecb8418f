"""What the probe tests read back from a run directory."""

from __future__ import annotations

import json
from pathlib import Path


def ua_by_member(run_dir: Path) -> dict[tuple[str, int], float]:
    """(fold, seed) -> test UA of every member of a finished run."""
    runs = json.loads((run_dir / "metrics.json").read_text())["runs"]
    return {(r["fold"], r["seed"]): r["test"]["ua"] for r in runs}
