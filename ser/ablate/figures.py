"""Report pictures: metric bars with error bars per cell, learned layer-weight curves and UA against
SNR, each laid out so that its labels fit inside the figure, with UA's chance level drawn where UA is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser.ablate.tables import Matrix
from ser.fusion.plots import matplotlib_ready, new_figure, save_figure, wrap_lines

logger = logging.getLogger(__name__)

LABEL_CHARS = 36
"""Bar labels wrap at this many characters."""
LEGEND_CHARS = 80
"""Legend entries of the line plots wrap at this many characters."""
CHAR_INCHES = 0.07
"""About the width of one character of an 8-point label, inches."""
LINE_INCHES = 0.16
"""About the height of one line of 7- to 8-point text, inches."""
CHANCE_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 1.2}


def ua_chance(class_lists: Iterable[Sequence[str]]) -> float | None:
    """UA of guessing, ``1 / C``, when every cell has the same number C of classes; None (logged) when
    they differ or none is known."""
    counts = {len(classes) for classes in class_lists}
    if len(counts) != 1 or 0 in counts:
        if counts:
            logger.info("cells have %s classes: no single UA chance line is drawn", sorted(counts))
        return None
    return 1.0 / counts.pop()


def fit_keywords(config: Mapping[str, Any], card: Mapping[str, Any]) -> dict[str, Any]:
    """``plot_confusion``'s title keywords (head, recipe, corpus, protocol, inputs) of a cell, from its
    run's ``config.yaml`` config and its protocol card."""
    from ser.fusion.config import MODALITIES

    return {
        "head": config.get("fusion"),
        "recipe": config.get("recipe"),
        "corpus": card.get("corpus"),
        "protocol": card.get("protocol", config.get("protocol")),
        "inputs": {m: str(config[m]) for m in MODALITIES if config.get(m)},
    }


def chance_label(chance: float) -> str:
    """``UA chance 1/8 = 12.5 %``."""
    return f"UA chance 1/{round(1 / chance)} = {100 * chance:.1f} %"


def _run_counts(summaries: Sequence[dict[str, dict[str, Any]]], metric: str) -> list[int | None]:
    """Per cell, how many runs its mean ± std pools (None when the summary does not list its values)."""
    return [len(s[metric]["values"]) if "values" in s[metric] else None for s in summaries]


def bars_figure(
    title: str,
    labels: list[str],
    summaries: list[dict[str, dict[str, Any]]],
    metrics: tuple[str, ...] = ("ua", "wa"),
    chance: float | None = None,
) -> Any:
    """Horizontal grouped bars, one group per cell (top to bottom in ``labels`` order): the mean of each
    metric in % (written inside the bar), whiskers ± one std over the cell's fold x seed runs, a dashed line at
    UA ``chance``.

    :param labels: one name per cell (wrapped to fit; long names stay whole, the figure widens).
    :param summaries: per cell ``{metric: {"mean", "std"[, "values"]}}`` in ``[0, 1]`` (``aggregate``'s form).
    :param chance: UA of guessing (``1 / C``); None draws no chance line.
    :return: the ``matplotlib.figure.Figure``.
    """
    if len(labels) != len(summaries):
        raise ValueError(f"{len(labels)} labels for {len(summaries)} cells")
    counts = _run_counts(summaries, metrics[0])
    same_n = len(set(counts)) == 1 and counts[0] is not None
    names = [label if same_n or n is None else f"{label} (n={n})" for label, n in zip(labels, counts, strict=True)]
    wrapped = [wrap_lines([name], LABEL_CHARS) for name in names]
    label_lines = max((w.count("\n") + 1 for w in wrapped), default=1)
    label_chars = max((len(line) for w in wrapped for line in w.split("\n")), default=1)
    group = max(0.3 * len(metrics) + 0.2, LINE_INCHES * label_lines + 0.15)  # inches per cell
    width = 4.8 + CHAR_INCHES * label_chars
    height = 1.9 + group * len(labels)
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    bar = 0.8 / len(metrics)
    handles = []
    for k, metric in enumerate(metrics):
        means = [100 * s[metric]["mean"] for s in summaries]
        stds = [100 * s[metric]["std"] for s in summaries]
        bars = ax.barh(
            y + (k - (len(metrics) - 1) / 2) * bar,
            means,
            bar,
            xerr=stds,
            capsize=3,
            label=metric.upper(),
            error_kw={"elinewidth": 1, "ecolor": "black"},
        )
        handles.append(bars)
        for row, mean in zip(bars.patches, means, strict=True):  # the mean, inside the bar's start
            ax.text(1, row.get_y() + row.get_height() / 2, f"{mean:.1f}", va="center", fontsize=7, color="white")
    ax.set_yticks(y, wrapped, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first cell on top, no margin beyond the groups
    reach = max((100 * (s[m]["mean"] + s[m]["std"]) for s in summaries for m in metrics), default=0.0)
    ax.set_xlim(0, max(100.0, reach + 2.0))  # whiskers past 100 % are shown whole
    ax.set_xlabel("test score (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(wrap_lines([title], int(width / CHAR_INCHES) - 4), fontsize=9)
    from matplotlib.lines import Line2D

    spread = f"over {counts[0]} fold × seed runs" if same_n else "over each cell's fold × seed runs"
    handles.append(Line2D([], [], color="black", marker="|", markersize=8, linewidth=1, label=f"± 1 std {spread}"))
    if chance is not None:
        handles.append(ax.axvline(100 * chance, **CHANCE_STYLE, label=chance_label(chance)))
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def plot_bars(
    path: Path,
    title: str,
    labels: list[str],
    summaries: list[dict[str, dict[str, Any]]],
    metrics: tuple[str, ...] = ("ua", "wa"),
    chance: float | None = None,
) -> None:
    """Write ``bars_figure`` to ``path`` (skipped, with a warning, without matplotlib)."""
    if matplotlib_ready(path):
        save_figure(bars_figure(title, labels, summaries, metrics, chance), path)


def _lines_figure(n_curves: int) -> tuple[Any, Any]:
    """A figure and axes for line plots whose legend (one entry per curve, plus a few) goes below."""
    fig = new_figure(7.0, 4.0 + LINE_INCHES * (n_curves + 2))
    return fig, fig.add_subplot()


def _finish_lines(fig: Any, ax: Any, title: str, xlabel: str, ylabel: str, extra: Sequence[Any] = ()) -> None:
    """Labels, title, grid, and the legend below the axes with entries wrapped to fit."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(wrap_lines([title], LEGEND_CHARS), fontsize=9)
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    handles, names = [*handles, *extra], [*names, *(h.get_label() for h in extra)]
    fig.legend(
        handles=handles,
        labels=[wrap_lines([name], LEGEND_CHARS) for name in names],
        loc="outside lower center",
        ncols=1,
        fontsize=7,
        frameon=False,
    )


def layer_weights_figure(title: str, curves: dict[str, list[list[float]]]) -> Any:
    """One line per curve name: softmax layer weight against layer index, mean ± std band over runs
    (runs whose layer count differs from the curve's first run are left out).

    :param curves: name -> runs, each run ``(L,)`` weights.
    :return: the ``matplotlib.figure.Figure``.
    """
    fig, ax = _lines_figure(len(curves))
    for name, runs in curves.items():
        same = np.asarray([r for r in runs if len(r) == len(runs[0])], dtype=np.float64)  # (R, L)
        layers = np.arange(same.shape[1])
        mean, std = same.mean(axis=0), same.std(axis=0)
        ax.plot(layers, mean, marker="o", markersize=3, label=f"{name} (n={len(same)})")
        ax.fill_between(layers, mean - std, mean + std, alpha=0.2)
    _finish_lines(fig, ax, title, "layer (0 = input embedding)", "learned softmax weight (mean ± std band)")
    return fig


def plot_layer_weights(path: Path, title: str, curves: dict[str, list[list[float]]]) -> None:
    """Write ``layer_weights_figure`` to ``path`` (skipped, with a warning, without matplotlib)."""
    if matplotlib_ready(path):
        save_figure(layer_weights_figure(title, curves), path)


def robustness_figure(title: str, curves: dict[str, dict[str, Any]], chance: float | None = None) -> Any:
    """Test UA (%) against SNR (dB) per curve, ± std bands; each curve's clean UA as a dotted line and UA
    ``chance`` as a dashed one.

    :param curves: name -> ``{"snr": [dB...], "mean": [UA...], "std": [...], "clean": UA}`` (UA in ``[0, 1]``).
    :return: the ``matplotlib.figure.Figure``.
    """
    from matplotlib.lines import Line2D

    fig, ax = _lines_figure(len(curves) + 1)
    for name, curve in curves.items():
        snr = np.asarray(curve["snr"], dtype=np.float64)
        mean, std = 100 * np.asarray(curve["mean"]), 100 * np.asarray(curve["std"])
        line = ax.plot(snr, mean, marker="o", markersize=3, label=name)[0]
        ax.fill_between(snr, mean - std, mean + std, alpha=0.15, color=line.get_color())
        ax.axhline(100 * curve["clean"], linestyle=":", color=line.get_color(), linewidth=1)
    if chance is not None:
        ax.axhline(100 * chance, **CHANCE_STYLE, label=chance_label(chance))
    ax.set_ylim(0, 100)
    clean = Line2D([], [], linestyle=":", color="black", linewidth=1, label="dotted: the same cell on the clean test")
    _finish_lines(
        fig, ax, title, "SNR of the test copies (dB)", "test UA (%), mean ± std over folds × seeds", extra=[clean]
    )
    return fig


def plot_robustness(path: Path, title: str, curves: dict[str, dict[str, Any]], chance: float | None = None) -> None:
    """Write ``robustness_figure`` to ``path`` (skipped, with a warning, without matplotlib)."""
    if matplotlib_ready(path):
        save_figure(robustness_figure(title, curves, chance), path)


def matrix_figure(name: str, matrix: Matrix) -> Any:
    """Heatmap of a cross-corpus matrix: UA % in each entry with its test rows underneath, a colour bar, the
    within-corpus (diagonal) entries outlined; rows = training corpora, columns = test corpus."""
    from matplotlib.patches import Rectangle

    values = np.full((len(matrix.train), len(matrix.test)), np.nan)
    for (row, column), entry in matrix.cells.items():
        values[matrix.train.index(row), matrix.test.index(column)] = 100 * entry.ua
    longest = max(map(len, [*matrix.train, *matrix.test]), default=1)
    room = 0.6 + 0.075 * longest
    width = min(12.0, max(4.8, 1.3 * len(matrix.test) + room + 1.4))
    height = min(10.0, max(3.6, 0.9 * len(matrix.train) + room + 0.9))
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(
        range(len(matrix.test)), matrix.test, rotation=30 if longest > 8 else 0, ha="right" if longest > 8 else "center"
    )
    ax.set_yticks(range(len(matrix.train)), matrix.train)
    ax.set_xlabel("test corpus")
    ax.set_ylabel("training corpora")
    for (row, column), entry in matrix.cells.items():
        i, j = matrix.train.index(row), matrix.test.index(column)
        ax.text(
            j,
            i,
            f"{100 * entry.ua:.1f}\n{entry.n_rows} rows",
            ha="center",
            va="center",
            color="white" if 100 * entry.ua < 60 else "black",
            fontsize=8,
        )
        if matrix.diagonal(row, column):
            inset = 0.44  # inside the entry, so that neighbouring entries do not look outlined too
            ax.add_patch(
                Rectangle((j - inset, i - inset), 2 * inset, 2 * inset, fill=False, edgecolor="red", linestyle="--")
            )
    fig.colorbar(image, ax=ax, fraction=0.046, label="UA (%)")
    ax.set_title(
        wrap_lines([f"cross-corpus UA: {name}", "dashed outline: within-corpus folds"], LEGEND_CHARS), fontsize=9
    )
    return fig


def plot_matrix(path: Path, name: str, matrix: Matrix) -> None:
    """Write [`matrix_figure`][ser.ablate.figures.matrix_figure] to ``path`` (skipped, with a warning, without
    matplotlib)."""
    if not matplotlib_ready(path):
        return
    save_figure(matrix_figure(name, matrix), path)
