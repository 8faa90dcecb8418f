"""Confusion-matrix pictures: titled by what was fitted, on what, and how well; every label inside the
figure; the cells show the counts and the colours the row shares; ``ser fit`` passes its own numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ser.fusion.plots import confusion_figure, confusion_title, plot_confusion, short_view, wrap_lines
from tests.figure_bounds import overlapping_tick_labels, texts_outside

pytest.importorskip("matplotlib")

EIGHT = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def squashed(text: str) -> str:
    """``text`` without any whitespace (wrapping may break a line anywhere in a long store name)."""
    return "".join(text.split())


def counts(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.integers(0, 6, size=(size, size))
    matrix[np.diag_indices(size)] += 20
    return matrix


def test_the_title_names_head_recipe_protocol_views_and_ua() -> None:
    fig = confusion_figure(
        counts(8),
        EIGHT,
        head="logreg",
        recipe="ser",
        corpus="ravdess",
        protocol="speaker-loso",
        inputs={"audio": "/data/features/rav.egemaps.h5:stat=mean,layer=last", "text": "/d/rav.minilm.h5"},
        ua=0.5291,
    )
    title = fig.get_suptitle()
    lines = title.split("\n")
    assert lines[0] == "logreg (ser) · ravdess · speaker-loso"
    assert "audio:\N{NO-BREAK SPACE}rav.egemaps.h5:stat=mean,layer=last" in lines
    assert "text:\N{NO-BREAK SPACE}rav.minilm.h5" in lines
    assert lines[-1] == f"UA 52.9 % · pooled test, n = {counts(8).sum()}"
    assert "/data" not in title and "/d/" not in title  # stores by file name only


def test_ua_is_computed_from_the_matrix_when_not_given() -> None:
    matrix = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]])  # the third class never occurs in the test rows
    lines = confusion_title(matrix, head="mlp")
    assert lines == ["mlp", "UA 87.5 % · pooled test, n = 8"]  # mean recall of the present classes: (3/4 + 1) / 2
    assert confusion_title(matrix, head="mlp", ua=0.25)[-1] == "UA 25.0 % · pooled test, n = 8"  # given wins


def test_short_view_keeps_the_options_and_drops_the_folders() -> None:
    assert short_view("/a/b/iemocap.wavlm.h5:layer=weighted,stat=mean") == "iemocap.wavlm.h5:layer=weighted,stat=mean"
    assert short_view("rav.h5") == "rav.h5"
    assert short_view("/x/y/text.h5:seq") == "text.h5:seq"


def test_wrapping_breaks_at_spaces_then_at_view_punctuation() -> None:
    text = "fleser recipe=paper audio=ravdess.hubert-large-ll60k.h5:layer=weighted"
    rows = wrap_lines([text], 36).split("\n")
    assert rows == ["fleser recipe=paper", "audio=ravdess.hubert-large-ll60k.h5:", "layer=weighted"]
    assert all(len(row) <= 36 for row in rows)
    assert wrap_lines(["x" * 12 + " yy"], 5).split("\n") == ["xxxxx", "xxxxx", "xx yy"]  # no break point: cut


@pytest.mark.parametrize("size", [4, 8, 20])
def test_every_label_and_title_line_lies_inside_the_figure(size: int) -> None:
    classes = (EIGHT * 3)[:size] if size <= 8 else [f"{name}-{k}" for k, name in enumerate((EIGHT * 3)[:size])]
    fig = confusion_figure(
        counts(size),
        classes,
        head="fleser",
        recipe="paper",
        corpus="iemocap",
        protocol="session-loso-leave-one-session-out",
        inputs={
            "audio": "/data/iemocap.wavlm-large-finetuned-per-fold-{fold}.h5:layer=weighted,stat=mean",
            "text": "/data/iemocap.roberta-large.h5:seq=last_hidden_state",
            "mocap": "/data/iemocap.mocap.h5",
        },
    )
    assert texts_outside(fig) == []
    ax = fig.axes[0]
    assert overlapping_tick_labels(ax, "x") == [] and overlapping_tick_labels(ax, "y") == []
    assert "iemocap.wavlm-large-finetuned-per-fold-{fold}.h5:layer=weighted,stat=mean" in squashed(fig.get_suptitle())


def test_the_bounds_check_finds_a_cut_label() -> None:
    """The check used above fails on a figure without layout whose tick labels are too long."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 3))
    ax = fig.add_subplot()
    ax.set_yticks([0, 1], ["a very long class name that cannot fit", "b"])
    assert any("a very long class name" in line for line in texts_outside(fig))


def test_cells_show_counts_and_colours_show_row_shares() -> None:
    matrix = np.array([[6, 2, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 3, 0, 9]])
    fig = confusion_figure(matrix, ["ang", "hap", "neu", "sad"])
    ax = fig.axes[0]
    shares = np.asarray(ax.images[0].get_array())
    expected = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    np.testing.assert_allclose(shares, expected)
    written = [int(t.get_text()) for t in ax.texts]
    assert written == matrix.ravel().tolist()
    with pytest.raises(ValueError, match="4x4"):
        confusion_figure(matrix[:3], ["ang", "hap", "neu", "sad"])


def test_plot_confusion_writes_a_png_of_the_figures_size(tmp_path: Path) -> None:
    from PIL import Image

    from ser.fusion.plots import DPI

    path = tmp_path / "confusion.png"
    plot_confusion(path, counts(8).tolist(), EIGHT, head="mlp", protocol="speaker-loso")
    fig = confusion_figure(counts(8), EIGHT, head="mlp", protocol="speaker-loso")
    width, height = fig.get_size_inches() * DPI
    with Image.open(path) as image:
        assert image.size == (round(width), round(height))  # saved as laid out: nothing cropped


def test_a_fit_titles_its_confusion_with_its_own_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ser.fusion.run as run
    from ser.fusion.run import FitConfig, run_fit
    from ser.fusion.train import TrainConfig
    from tests.fakes.caches import make_corpus

    seen: list[dict[str, Any]] = []
    original = run.plot_confusion

    def spy(path: Path, confusion: list[list[int]], classes: list[str], **keywords: Any) -> None:
        seen.append({"confusion": confusion, **keywords})
        original(path, confusion, classes, **keywords)

    monkeypatch.setattr(run, "plot_confusion", spy)
    manifest, audio, _ = make_corpus(tmp_path)
    cfg = FitConfig(
        fusion="mlp",
        manifest=str(manifest),
        protocol="speaker-loso",
        audio=f"{audio}:layer=1",
        label_set="ravdess8",
        folds=["spk0", "spk1"],
        seeds=[0],
        train=TrainConfig(epochs=3, patience=0, batch_size=16),
        out=str(tmp_path / "runs"),
    )
    run_dir = run_fit(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (call,) = seen
    assert call["head"] == "mlp" and call["recipe"] == metrics["recipe"] and call["protocol"] == "speaker-loso"
    assert call["corpus"] == metrics["protocol_card"]["corpus"]
    assert call["ua"] == metrics["test_pooled"]["ua"]["mean"]
    assert list(call["inputs"]) == ["audio"] and call["inputs"]["audio"].startswith(f"{audio.name}:")
    assert "layer=1" in call["inputs"]["audio"]
    title = confusion_figure(
        call["confusion"], metrics["classes"], **{k: v for k, v in call.items() if k != "confusion"}
    )
    assert f"UA {100 * metrics['test_pooled']['ua']['mean']:.1f} %" in title.get_suptitle()
    assert (run_dir / "confusion.png").stat().st_size > 1000
