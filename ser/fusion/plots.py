"""Pictures of results (matplotlib, imported lazily and optional): confusion matrices."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def pyplot_or_none(path: Path) -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or None (logged) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'serkit[plots]'); %s not written", path.name)
        return None
    return plt


def plot_confusion(path: Path, confusion: list[list[int]], classes: list[str]) -> None:
    """Row-normalised confusion matrix with counts, rows = true class (skipped, with a warning,
    without matplotlib)."""
    plt = pyplot_or_none(path)
    if plt is None:
        return
    counts = np.asarray(confusion, dtype=np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.8 + 0.7 * len(classes)))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=8,
            )
    fig.colorbar(image, ax=ax, fraction=0.046, label="recall share")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
