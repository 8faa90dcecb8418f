"""The windowed-prediction picture: a top-class strip (one cell per window, the argmax class's colour)
over a classes x time probability heatmap whose data are the probabilities, on one time axis in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser.predict.model import Prediction
from ser.predict.timeline import class_colours, plot_timeline, timeline_arrays, timeline_figure
from ser.predict.windows import plan_windows
from tests.figure_bounds import draw, overlapping_tick_labels, texts_outside

pytest.importorskip("matplotlib")

EIGHT = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def windowed(
    classes: tuple[str, ...], duration: float, window: float, hop: float, failed: tuple[int, ...] = (), seed: int = 0
) -> tuple[list[Prediction], np.ndarray]:
    """Predictions of every window of a ``duration``-second recording, and their (C, T) probabilities
    (NaN columns for the ``failed`` windows)."""
    rng = np.random.default_rng(seed)
    spans = plan_windows(duration, window, hop)
    probabilities = rng.dirichlet(np.ones(len(classes)) * 0.5, size=len(spans)).T  # (C, T)
    predictions = []
    for t, (start, end) in enumerate(spans):
        if t in failed:
            probabilities[:, t] = np.nan
            predictions.append(Prediction(id="long.wav", label=None, error="silent", start=start, end=end))
        else:
            p = dict(zip(classes, map(float, probabilities[:, t]), strict=True))
            predictions.append(
                Prediction(id="long.wav", label=max(p, key=p.__getitem__), probabilities=p, start=start, end=end)
            )
    return predictions, probabilities


def test_arrays_hold_the_probabilities_the_argmax_and_cells_that_tile_the_recording() -> None:
    predictions, probabilities = windowed(EIGHT, 121.3, 1.0, 0.5, failed=(4, 5))
    timeline = timeline_arrays(predictions[::-1], EIGHT)  # any order in, time order out
    np.testing.assert_array_equal(timeline.probabilities, probabilities)
    expected_top = np.where(
        np.isnan(probabilities).all(axis=0), -1, np.nanargmax(np.nan_to_num(probabilities, nan=-1), 0)
    )
    np.testing.assert_array_equal(timeline.top, expected_top)
    assert timeline.top[4] == timeline.top[5] == -1
    centres = [(p.start + p.end) / 2 for p in predictions]  # type: ignore[operator]
    assert timeline.edges[0] == 0.0 and timeline.edges[-1] == pytest.approx(121.3)
    assert np.all(np.diff(timeline.edges) > 0)
    assert np.all(
        (timeline.edges[:-1] < centres) & (np.asarray(centres) < timeline.edges[1:])
    )  # each centre in its cell
    np.testing.assert_allclose(timeline.edges[1:3], [0.75, 1.25])  # halfway between centres 0.5, 1.0, 1.5


def test_arrays_refuse_predictions_without_windows() -> None:
    with pytest.raises(ValueError, match="at least one"):
        timeline_arrays([], EIGHT)
    with pytest.raises(ValueError, match="no window"):
        timeline_arrays([Prediction(id="a.wav", label="calm", probabilities={"calm": 1.0})], EIGHT)


def test_the_heatmap_data_are_the_probabilities_and_the_strip_is_the_argmax() -> None:
    predictions, probabilities = windowed(EIGHT, 120.0, 1.0, 1.0, failed=(30,))  # 2 minutes, 1-s windows
    fig = timeline_figure(predictions, EIGHT, "long.wav: 1 s windows every 1 s (mlp)")
    strip, heat = fig.axes[0], fig.axes[1]
    heat_data = heat.collections[0].get_array()
    np.testing.assert_array_equal(np.ma.filled(heat_data, np.nan).reshape(probabilities.shape), probabilities)
    assert heat_data.mask.reshape(probabilities.shape)[:, 30].all() and heat_data.mask.sum() == len(EIGHT)
    top = strip.collections[0].get_array().reshape(-1)
    np.testing.assert_array_equal(top[top.mask == False], np.nanargmax(np.delete(probabilities, 30, axis=1), 0))  # noqa: E712
    assert top.mask.tolist() == [t == 30 for t in range(120)]
    draw(fig)  # the colours each window's cell is painted with
    painted = strip.collections[0].get_facecolors()
    colours = class_colours(len(EIGHT))
    for t in (0, 29, 31, 119):
        assert tuple(painted[t]) == pytest.approx(colours[int(np.nanargmax(probabilities[:, t]))])
    assert tuple(painted[30][:3]) == pytest.approx((0.8, 0.8, 0.8))  # failed: grey


def test_axes_share_seconds_key_names_every_class_and_the_colorbar_spans_zero_to_one() -> None:
    predictions, _ = windowed(EIGHT, 120.0, 1.0, 1.0, failed=(7,))
    fig = timeline_figure(predictions, EIGHT, "long.wav: 1 s windows every 1 s (mlp)")
    strip, heat, colorbar = fig.axes
    assert strip.get_xlim() == heat.get_xlim() == pytest.approx((0.0, 120.0))
    assert heat.get_xlabel() == "time (s)"
    assert [t.get_text() for t in heat.get_yticklabels()] == list(EIGHT)  # rows top to bottom
    assert heat.get_ylim()[0] > heat.get_ylim()[1]  # first class on top
    assert [t.get_text() for t in strip.get_legend().get_texts()] == [*EIGHT, "window failed"]
    assert colorbar.get_ylabel() == "probability" and colorbar.get_ylim() == pytest.approx((0.0, 1.0))
    assert fig.get_suptitle() == "long.wav: 1 s windows every 1 s (mlp)"


@pytest.mark.parametrize(("classes", "duration", "window", "hop"), [(EIGHT, 120.0, 1.0, 1.0), (EIGHT[:4], 30, 2, 1)])
def test_every_label_lies_inside_the_figure(
    classes: tuple[str, ...], duration: float, window: float, hop: float
) -> None:
    predictions, _ = windowed(classes, duration, window, hop)
    title = "a-rather-long-recording-name-from-an-interview-session-2024-03-05-speaker-A.wav: 1 s windows every 1 s"
    fig = timeline_figure(predictions, classes, title)
    assert texts_outside(fig) == []
    assert overlapping_tick_labels(fig.axes[1], "y") == [] and overlapping_tick_labels(fig.axes[1], "x") == []


def test_class_colours_are_distinct_and_never_the_failed_grey() -> None:
    for count in (4, 8, 9, 12, 18):
        colours = class_colours(count)
        assert len(set(colours)) == count
        assert all(not (c[0] == c[1] == c[2]) for c in colours)  # no grey


def test_one_short_window_and_the_png(tmp_path: Path) -> None:
    predictions, probabilities = windowed(EIGHT[:4], 0.8, 2.0, 1.0)
    assert len(predictions) == 1
    fig = timeline_figure(predictions, EIGHT[:4], "short.wav")
    assert fig.axes[1].get_xlim() == pytest.approx((0.0, 0.8))
    np.testing.assert_array_equal(np.asarray(fig.axes[1].collections[0].get_array()).reshape(4, 1), probabilities)
    path = tmp_path / "timeline.png"
    assert plot_timeline(path, predictions, EIGHT[:4], "short.wav") is True
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
