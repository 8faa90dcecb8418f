"""Report pictures: metric bars with error bars per cell, and learned layer-weight curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ser.fusion.plots import pyplot_or_none


def _finish(plt: Any, fig: Any, ax: Any, path: Path, title: str, xlabel: str, ylabel: str) -> None:
    """Labels, title, legend and grid of a line plot, then save and close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bars(
    path: Path,
    title: str,
    labels: list[str],
    summaries: list[dict[str, dict[str, Any]]],
    metrics: tuple[str, ...] = ("ua", "wa"),
) -> None:
    """Grouped bars: for each cell (x), the mean of each metric in % with ± std error bars."""
    plt = pyplot_or_none(path)
    if plt is None:
        return
    x = np.arange(len(labels))
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 2.0), 4.2))
    for k, metric in enumerate(metrics):
        means = [100 * s[metric]["mean"] for s in summaries]
        stds = [100 * s[metric]["std"] for s in summaries]
        ax.bar(x + (k - (len(metrics) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=metric.upper())
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test score (%), mean ± std over folds x seeds")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_layer_weights(path: Path, title: str, curves: dict[str, list[list[float]]]) -> None:
    """One line per curve name: softmax layer weight against layer index, mean ± std band over runs
    (runs whose layer count differs from the curve's first run are left out)."""
    plt = pyplot_or_none(path)
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, runs in curves.items():
        same = np.asarray([r for r in runs if len(r) == len(runs[0])], dtype=np.float64)  # (R, L)
        layers = np.arange(same.shape[1])
        mean, std = same.mean(axis=0), same.std(axis=0)
        ax.plot(layers, mean, marker="o", markersize=3, label=f"{name} (n={len(same)})")
        ax.fill_between(layers, mean - std, mean + std, alpha=0.2)
    _finish(plt, fig, ax, path, title, "layer (0 = input embedding)", "learned softmax weight")


def plot_robustness(path: Path, title: str, curves: dict[str, dict[str, Any]]) -> None:
    """Test UA (%) against SNR (dB) per curve, ± std bands; each curve's clean UA as a dotted line."""
    plt = pyplot_or_none(path)
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, curve in curves.items():
        snr = np.asarray(curve["snr"], dtype=np.float64)
        mean, std = 100 * np.asarray(curve["mean"]), 100 * np.asarray(curve["std"])
        line = ax.plot(snr, mean, marker="o", markersize=3, label=name)[0]
        ax.fill_between(snr, mean - std, mean + std, alpha=0.15, color=line.get_color())
        ax.axhline(100 * curve["clean"], linestyle=":", color=line.get_color(), linewidth=1)
    _finish(
        plt,
        fig,
        ax,
        path,
        title,
        "SNR of the test copies (dB); dotted: clean test",
        "test UA (%), mean ± std over folds x seeds",
    )
