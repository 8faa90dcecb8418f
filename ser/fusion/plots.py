"""Pictures of results (matplotlib, imported lazily and optional): the figure helpers every picture
shares, and the titled confusion matrix of a fit.

Figures are built as ``matplotlib.figure.Figure`` objects with ``constrained`` layout (no pyplot
state), so every label, title and legend is laid out inside the figure, and saved with the Agg canvas.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser.metrics import unweighted_accuracy
from ser.views import join_view, split_view

logger = logging.getLogger(__name__)

DPI = 120
TITLE_CHARS_PER_INCH = 13
"""About how many characters of a 9-point title fit in one inch (where titles wrap)."""
TITLE_LINE_INCHES = 0.17
"""Height of one line of a 9-point title."""
MAX_WIDTH = 11.0
"""Widest figure (inches); longer title words are broken."""
MAX_TITLE_CHARS = int(TITLE_CHARS_PER_INCH * (MAX_WIDTH - 0.4))


def matplotlib_ready(path: Path) -> bool:
    """True when matplotlib can be imported; otherwise False, with a warning that ``path`` is not written."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'serkit[plots]'); %s not written", path.name)
        return False
    return True


def new_figure(width: float, height: float) -> Any:
    """An empty ``width`` x ``height`` inch figure with constrained layout (labels kept inside)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG at ``DPI`` (the figure's own size: nothing is cropped or added)."""
    fig.savefig(path, dpi=DPI)


def wrap_lines(lines: Sequence[str], width: int) -> str:
    """Each line wrapped at ``width`` characters, joined by newlines: breaks at spaces, then inside a word
    longer than a line after ``:``, ``,``, ``/``, ``=`` or ``-`` (store and view texts), then anywhere."""
    return "\n".join(row for line in lines for row in _wrap(line, max(width, 1)))


def _wrap(line: str, width: int) -> list[str]:
    """One line's rows (see ``wrap_lines``)."""
    rows: list[str] = []
    row = ""
    for word in line.split(" "):
        if not row or len(row) + 1 + len(word) > width:
            if row:
                rows.append(row)
            row = ""
            if len(word) <= width:
                row = word
                continue
            for piece in re.split(r"(?<=[:,/=-])", word):
                while len(piece) > width:  # no break point: cut it
                    if row:
                        rows.append(row)
                        row = ""
                    rows.append(piece[:width])
                    piece = piece[width:]
                if len(row) + len(piece) > width:
                    rows.append(row)
                    row = ""
                row += piece
        else:
            row += " " + word
    rows.append(row)
    return rows


def short_view(text: str) -> str:
    """A view text with its store reduced to the file name: ``/data/rav.h5:stat=mean`` -> ``rav.h5:stat=mean``."""
    store, options = split_view(text)
    return join_view(Path(store).name or store, options)


def confusion_title(
    confusion: np.ndarray,
    *,
    head: str | None = None,
    recipe: str | None = None,
    corpus: str | None = None,
    protocol: str | None = None,
    inputs: Mapping[str, str] | None = None,
    ua: float | None = None,
) -> list[str]:
    """The title lines of a confusion matrix: what was fitted (head, recipe, corpus, protocol), what it read
    (one ``modality: view`` line per input, stores as file names), and how well (UA in %, n test predictions).

    :param confusion: ``(C, C)`` counts, rows = true class (gives n, and UA when ``ua`` is None).
    :param ua: UA in ``[0, 1]``; None computes it from ``confusion`` (mean recall of the classes present).
    """
    fitted = " · ".join(
        part
        for part in (
            f"{head} ({recipe})" if head and recipe else head or (f"recipe {recipe}" if recipe else None),
            corpus,
            protocol,
        )
        if part
    )
    read = [f"{modality}:\N{NO-BREAK SPACE}{short_view(view)}" for modality, view in (inputs or {}).items()]
    n = int(confusion.sum())
    score = ua if ua is not None else (unweighted_accuracy(confusion) if n else None)
    scored = f"UA {100 * score:.1f} % · pooled test, n = {n}" if score is not None else f"n = {n}"
    return [line for line in (fitted, *read, scored) if line]


def confusion_figure(
    confusion: list[list[int]] | np.ndarray,
    classes: Sequence[str],
    *,
    head: str | None = None,
    recipe: str | None = None,
    corpus: str | None = None,
    protocol: str | None = None,
    inputs: Mapping[str, str] | None = None,
    ua: float | None = None,
) -> Any:
    """Row-normalised confusion matrix with counts in the cells, rows = true class, titled by
    ``confusion_title`` (same keywords).

    :param confusion: ``(C, C)`` counts, rows = true class, columns = predicted class.
    :param classes: the C class names, in the matrix's order.
    :return: the ``matplotlib.figure.Figure``.
    """
    counts = np.asarray(confusion, dtype=np.float64)
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion must be {len(classes)}x{len(classes)} (one row per class), got {counts.shape}")
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = len(classes)
    lines = confusion_title(counts, head=head, recipe=recipe, corpus=corpus, protocol=protocol, inputs=inputs, ua=ua)
    label_room = 0.3 + 0.08 * max(map(len, classes), default=1)  # tick labels and axis label
    side = min(0.55 * size + 0.4, MAX_WIDTH - label_room - 1.3)  # the square matrix, inches
    longest_word = max((len(word) for line in lines for word in line.split(" ")), default=1)
    width = min(MAX_WIDTH, max(5.2, side + label_room + 1.3, longest_word / TITLE_CHARS_PER_INCH + 0.4))
    title = wrap_lines(lines, max(int(TITLE_CHARS_PER_INCH * (width - 0.4)), min(longest_word, MAX_TITLE_CHARS)))
    height = side + label_room + 0.5 + TITLE_LINE_INCHES * (title.count("\n") + 1)
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if max(map(len, classes), default=0) > 3:
        ax.set_xticks(range(size), classes, rotation=45, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticks(range(size), classes)
    ax.set_yticks(range(size), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fontsize = 8 if size <= 10 else 6
    for i in range(size):
        for j in range(size):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=fontsize,
            )
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class (row)")
    fig.suptitle(title, fontsize=9)
    return fig


def plot_confusion(
    path: Path,
    confusion: list[list[int]],
    classes: list[str],
    *,
    head: str | None = None,
    recipe: str | None = None,
    corpus: str | None = None,
    protocol: str | None = None,
    inputs: Mapping[str, str] | None = None,
    ua: float | None = None,
) -> None:
    """Write ``confusion_figure`` to ``path`` (skipped, with a warning, without matplotlib)."""
    if not matplotlib_ready(path):
        return
    fig = confusion_figure(
        confusion, classes, head=head, recipe=recipe, corpus=corpus, protocol=protocol, inputs=inputs, ua=ua
    )
    save_figure(fig, path)
