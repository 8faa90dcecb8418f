"""Report pictures: bars that fit their labels, whiskers that say what they are, UA's chance line at 1/C;
line plots whose legends fit; ``ser report`` passes each section's chance level and titles its
confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ser.ablate.figures import (
    bars_figure,
    fit_keywords,
    layer_weights_figure,
    robustness_figure,
    ua_chance,
)
from ser.fusion.metrics import aggregate
from tests.figure_bounds import overlapping_tick_labels, texts_outside

pytest.importorskip("matplotlib")

LONG_LABELS = [
    "mlp recipe=ser audio=ravdess.wavlm-large.h5:layer=weighted lr=0.001",
    "mlp recipe=ser audio=ravdess.wavlm-large.h5:layer=12 lr=0.001",
    "fleser recipe=paper audio=ravdess.hubert-large-ll60k.h5:layer=weighted text=ravdess.roberta.h5:seq",
    "logreg recipe=ser audio=ravdess.egemaps.h5:stat=mean",
    "svm recipe=ser",
]


def summaries(means: list[float], runs: int | list[int], seed: int = 0) -> list[dict[str, dict[str, Any]]]:
    """``aggregate``'s summaries of ``runs`` fold x seed results around each mean."""
    rng = np.random.default_rng(seed)
    counts = runs if isinstance(runs, list) else [runs] * len(means)
    return [
        aggregate(
            [{"ua": m + rng.normal(0, 0.05), "wa": m + 0.02 + rng.normal(0, 0.05)} for _ in range(n)], ("ua", "wa")
        )
        for m, n in zip(means, counts, strict=True)
    ]


def chance_lines(ax: Any, axis: str) -> list[float]:
    """Positions of the dashed straight lines of ``ax`` (vertical for axis "x", horizontal for "y")."""
    out = []
    for line in ax.get_lines():
        data = np.asarray(line.get_xdata() if axis == "x" else line.get_ydata(), dtype=float)
        if line.get_linestyle() == "--" and data.size == 2 and data[0] == data[1]:
            out.append(float(data[0]))
    return out


def legend_texts(fig: Any) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_ua_chance_is_one_over_the_class_count_when_cells_agree() -> None:
    assert ua_chance([["a"] * 8, ["b"] * 8]) == 0.125
    assert ua_chance(c for c in [["ang", "hap", "neu", "sad"]]) == 0.25
    assert ua_chance([["a"] * 8, ["a"] * 4]) is None  # no single chance level
    assert ua_chance([]) is None


@pytest.mark.parametrize("classes", [8, 4])
def test_bars_draw_means_std_whiskers_and_the_chance_line(classes: int) -> None:
    cells = summaries([0.55, 0.5, 0.62, 0.45, 0.4], 20)
    fig = bars_figure("ravdess / speaker-loso / ravdess8", LONG_LABELS, cells, chance=1 / classes)
    ax = fig.axes[0]
    assert chance_lines(ax, "x") == [pytest.approx(100 / classes)]
    from matplotlib.container import BarContainer

    ua_bars, wa_bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    widths = [patch.get_width() for patch in ua_bars.patches]
    assert widths == pytest.approx([100 * c["ua"]["mean"] for c in cells])
    assert [patch.get_width() for patch in wa_bars.patches] == pytest.approx([100 * c["wa"]["mean"] for c in cells])
    whiskers = ua_bars.errorbar.lines[2][0].get_segments()  # one horizontal segment per bar: mean ± std
    for segment, cell in zip(whiskers, cells, strict=True):
        low, high = sorted(segment[:, 0])
        assert low == pytest.approx(100 * (cell["ua"]["mean"] - cell["ua"]["std"]))
        assert high == pytest.approx(100 * (cell["ua"]["mean"] + cell["ua"]["std"]))
    legend = legend_texts(fig)
    assert f"UA chance 1/{classes} = {100 / classes:.1f} %" in legend
    assert "± 1 std over 20 fold × seed runs" in legend and {"UA", "WA"} <= set(legend)
    shown = [t.get_text() for t in ax.texts]
    assert shown[: len(cells)] == [f"{100 * c['ua']['mean']:.1f}" for c in cells]  # means written in the bars


@pytest.mark.parametrize("count", [2, 5, 20])
def test_bar_labels_fit_inside_the_figure_and_do_not_overlap(count: int) -> None:
    labels = [f"{LONG_LABELS[k % len(LONG_LABELS)]} seed_pool={k}" for k in range(count)]
    fig = bars_figure("iemocap / session-loso / iemocap4", labels, summaries([0.5] * count, 20), chance=0.25)
    assert texts_outside(fig) == []
    assert overlapping_tick_labels(fig.axes[0], "y") == []
    names = ["".join(t.get_text().split()) for t in fig.axes[0].get_yticklabels()]
    assert names == ["".join(label.split()) for label in labels]  # wrapped, never shortened


def test_cells_with_different_run_counts_say_their_n() -> None:
    fig = bars_figure("s", ["mlp", "fleser"], summaries([0.6, 0.66], [5, 15]))
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names == ["mlp (n=5)", "fleser (n=15)"]
    assert "± 1 std over each cell's fold × seed runs" in legend_texts(fig)
    assert chance_lines(fig.axes[0], "x") == []  # no chance given, none drawn
    with pytest.raises(ValueError, match="2 labels for 1 cells"):
        bars_figure("s", ["mlp", "fleser"], summaries([0.6], 5))


def test_layer_weight_and_robustness_plots_keep_long_legends_inside() -> None:
    rng = np.random.default_rng(0)
    curves = {f"{label} [audio]": [list(rng.dirichlet(np.ones(25))) for _ in range(20)] for label in LONG_LABELS}
    fig = layer_weights_figure("ravdess / speaker-loso / ravdess8", curves)
    assert texts_outside(fig) == []
    assert [t.get_text().replace("\n", " ") for t in fig.legends[0].get_texts()] == [f"{n} (n=20)" for n in curves]

    robust = {
        label: {"snr": [0, 5, 10, 20], "mean": [0.2, 0.3, 0.4, 0.5], "std": [0.05] * 4, "clean": 0.55}
        for label in LONG_LABELS
    }
    fig = robustness_figure("ravdess / speaker-loso / ravdess8", robust, chance=1 / 8)
    assert texts_outside(fig) == []
    assert chance_lines(fig.axes[0], "y") == [pytest.approx(12.5)]
    assert "UA chance 1/8 = 12.5 %" in legend_texts(fig)


def test_fit_keywords_read_the_head_protocol_and_every_input() -> None:
    config = {
        "fusion": "fleser",
        "recipe": "paper",
        "protocol": "speaker-loso",
        "audio": "/x/a.h5:layer=2",
        "text": "t.h5",
    }
    assert fit_keywords(config, {"corpus": "ravdess", "protocol": "speaker-loso"}) == {
        "head": "fleser",
        "recipe": "paper",
        "corpus": "ravdess",
        "protocol": "speaker-loso",
        "inputs": {"audio": "/x/a.h5:layer=2", "text": "t.h5"},
    }
    assert fit_keywords({"protocol": "session-loso"}, {})["protocol"] == "session-loso"  # runs without a card


def test_report_draws_chance_at_one_over_the_classes_and_titles_confusions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ser.ablate.figures as figures
    import ser.fusion.plots as plots
    from ser.ablate.report import collect, write_report
    from ser.fusion.run import FitConfig, run_fit
    from tests.fakes.caches import make_corpus

    manifest, audio, _ = make_corpus(tmp_path)
    for layer in ("0", "1"):
        run_fit(
            FitConfig(
                fusion="logreg",
                manifest=str(manifest),
                protocol="speaker-loso",
                audio=f"{audio}:layer={layer}",
                label_set="ravdess8",
                out=str(tmp_path / "runs"),
            )
        )
    bars: list[dict[str, Any]] = []
    confusions: list[dict[str, Any]] = []
    draw_bars, draw_confusion = figures.plot_bars, plots.plot_confusion

    def spy_bars(path: Path, title: str, labels: list[str], cells: list[Any], *args: Any, **kw: Any) -> None:
        bars.append({"labels": labels, "cells": cells, **kw})
        draw_bars(path, title, labels, cells, *args, **kw)

    def spy_confusion(path: Path, confusion: Any, classes: list[str], **kw: Any) -> None:
        confusions.append({"path": path, "classes": classes, **kw})
        draw_confusion(path, confusion, classes, **kw)

    monkeypatch.setattr(figures, "plot_bars", spy_bars)
    monkeypatch.setattr(plots, "plot_confusion", spy_confusion)
    folder = write_report(tmp_path / "runs", tmp_path / "report")
    (section,) = bars
    assert section["chance"] == pytest.approx(1 / 8)  # ravdess8: 8 classes, whatever the rows hold
    cells = {str(cell.config["audio"]): cell for cell in collect(tmp_path / "runs")}
    assert len(confusions) == 2
    for call in confusions:
        cell = cells[call["inputs"]["audio"]]
        assert call["head"] == "logreg" and call["protocol"] == "speaker-loso" and call["corpus"] == "ravdess"
        assert call["ua"] == pytest.approx(cell.pooled()["ua"]["mean"])
        assert call["path"].is_file() and call["path"].parent == folder / "confusion"
    assert len(list(folder.glob("bars_*.png"))) == 1
