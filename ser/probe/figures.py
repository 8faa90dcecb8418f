"""The sweep's pictures: ``probe.png`` (test UA against layer, with the 95 % interval band and the learned
mix as a horizontal line with its band) and ``layer_weights.png`` (the learned softmax layer weights, mean
over folds and seeds as bars, their std as error bars). The bands are the paired-bootstrap intervals of
[`ser.probe.table`][ser.probe.table] (over folds, or seeds where there is one fold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ser.ablate.figures import CHANCE_STYLE, LEGEND_CHARS, chance_label
from ser.fusion.plots import matplotlib_ready, new_figure, save_figure, wrap_lines
from ser.probe.sweep import WEIGHTED
from ser.probe.table import ProbeRow

MIX_COLOR = "tab:orange"


def _band(row: ProbeRow) -> tuple[float, float]:
    """The row's 95 % interval in percent (the mean at both ends when there is none)."""
    if row.interval is None:
        return 100 * row.ua.mean, 100 * row.ua.mean
    return 100 * row.interval.low, 100 * row.interval.high


def probe_figure(title: str, rows: list[ProbeRow], chance: float | None = None) -> Any:
    """Test UA (%) against layer with its 95 % band; the learned mix (if any) as a horizontal line with its
    band; UA ``chance`` dashed.

    :return: the ``matplotlib.figure.Figure`` (axes lines: the layer curve first, then the mix, then chance).
    """
    layered = [row for row in rows if row.layer != WEIGHTED]
    layers = np.array([int(row.layer) for row in layered])
    fig = new_figure(7.0, 4.6)
    ax = fig.add_subplot()
    mean = np.array([100 * row.ua.mean for row in layered])
    low, high = np.array([_band(row) for row in layered]).T
    ax.plot(layers, mean, marker="o", markersize=4, label="one probe per layer (mean over folds × seeds)")
    units = sorted({row.interval.unit for row in layered if row.interval is not None})
    over = f" over {' / '.join(units)}s" if units else ""
    ax.fill_between(layers, low, high, alpha=0.2, label=f"95 % bootstrap interval of the mean{over}")
    for row in rows:
        if row.layer == WEIGHTED:
            mix_low, mix_high = _band(row)
            ax.axhline(100 * row.ua.mean, color=MIX_COLOR, linewidth=1.5, label="learned layer mix (layer=weighted)")
            ax.axhspan(mix_low, mix_high, color=MIX_COLOR, alpha=0.12)
    if chance is not None:
        ax.axhline(100 * chance, **CHANCE_STYLE, label=chance_label(chance))
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = input embedding)")
    ax.set_ylabel("test UA (%)")
    ax.set_title(wrap_lines([title], LEGEND_CHARS), fontsize=9)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    return fig


def layer_weights_figure(title: str, runs: list[list[float]]) -> Any:
    """Bars of the learned softmax weight per layer (mean over the runs), std over the runs as error bars.

    :param runs: one ``(L,)`` weight list per fold and seed.
    :return: the ``matplotlib.figure.Figure``.
    """
    weights = np.asarray(runs, dtype=np.float64)  # (R, L)
    layers = np.arange(weights.shape[1])
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    ax.bar(layers, weights.mean(axis=0), yerr=weights.std(axis=0), capsize=3, color=MIX_COLOR, alpha=0.8)
    ax.axhline(1 / len(layers), **CHANCE_STYLE, label=f"uniform weight 1/{len(layers)}")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = input embedding)")
    ax.set_ylabel(f"learned softmax weight (mean ± std, n={len(weights)})")
    ax.set_title(wrap_lines([title], LEGEND_CHARS), fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.legend(loc="outside lower center", fontsize=7, frameon=False)
    return fig


def plot_probe(path: Path, title: str, rows: list[ProbeRow], chance: float | None = None) -> bool:
    """Write [`probe_figure`][ser.probe.figures.probe_figure] to ``path``; False (warned) without matplotlib."""
    if not matplotlib_ready(path):
        return False
    save_figure(probe_figure(title, rows, chance), path)
    return True


def plot_layer_weights(path: Path, title: str, runs: list[list[float]]) -> bool:
    """Write [`layer_weights_figure`][ser.probe.figures.layer_weights_figure] to ``path``; False without
    matplotlib or without learned weights."""
    if not runs or not matplotlib_ready(path):
        return False
    save_figure(layer_weights_figure(title, runs), path)
    return True
