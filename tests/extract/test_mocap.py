"""Mocap extractor against fake IEMOCAP motion capture files in the documented text format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser.extract.base import ExtractorError, Item, ItemRejected
from ser.extract.mocap import NO_MOCAP, MocapExtractor, build, chunk_means, read_mocap
from ser.extract.registry import build_extractor
from ser.manifests.corpora.iemocap import scan
from tests.fakes.iemocap import make_iemocap_tree

WIDTHS = {"head": 18, "hand": 6, "rotated": 165}


def write_mocap(path: Path, values: np.ndarray, *, fps: float = 120.0) -> Path:
    """Two header lines, then ``frame time v1 v2 ...`` rows (NaN written as ``NaN``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width = values.shape[1]
    lines = [" ".join(["Frame#", "Time", *[f"m{i}" for i in range(width)]]), " ".join(["f", "s", *["mm"] * width])]
    for frame, row in enumerate(values):
        cells = ["NaN" if np.isnan(v) else repr(float(v)) for v in row]
        lines.append(" ".join([str(frame + 1), f"{frame / fps:.4f}", *cells]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_item(root: Path, frames: dict[str, np.ndarray], utt: str = "Ses01F_impro01_F000") -> Item:
    """Write the three files of one utterance below ``root`` and return its Item (extra as the runner gives it)."""
    entry = {}
    for kind, values in frames.items():
        rel = f"Session1/sentences/MOCAP_{kind}/{utt[:14]}/{utt}.txt"
        write_mocap(root / rel, values)
        entry[kind] = rel
    return Item(id=utt, extra={"mocap": entry, "root": str(root)})


def oracle(values: np.ndarray, steps: int) -> np.ndarray:
    """Patamia's recipe written out: array_split into ``steps`` chunks, mean of each, NaN -> 0."""
    means = np.stack([chunk.mean(axis=0) for chunk in np.array_split(values, steps)])
    return np.nan_to_num(means, nan=0.0)


def ramp(frames: int, width: int, offset: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(frames + width)
    return (
        offset
        + np.arange(frames * width, dtype=np.float64).reshape(frames, width) / 7
        + rng.normal(size=(frames, width))
    )


def test_spec_and_registry() -> None:
    extractor = build_extractor("mocap")
    assert isinstance(extractor, MocapExtractor)
    spec = extractor.spec
    assert spec.name == "mocap" and spec.preset == "iemocap-200" and spec.modality == "mocap"
    assert spec.pooled == {"mean": (1, 189), "std": (1, 189)}
    assert spec.seq_layers == {"grid": 189}
    assert spec.sample_rate is None
    config = extractor.config()
    assert config["steps"] == 200 and config["order"] == ["head", "hand", "rotated"]
    assert (config["head_columns"], config["hand_columns"], config["rotated_columns"]) == (18, 6, 165)


def test_grid_equals_chunk_means(tmp_path: Path) -> None:
    frames = {"head": ramp(450, 18), "hand": ramp(401, 6, 100.0), "rotated": ramp(203, 165, -50.0)}
    item = make_item(tmp_path, frames)
    [features] = build("iemocap-200").extract([item], ["grid"])
    assert not isinstance(features, ItemRejected)
    grid = features.seq["grid"]
    assert grid.shape == (200, 189) and grid.dtype == np.float32
    expected = np.concatenate([oracle(frames[k], 200) for k in ("head", "hand", "rotated")], axis=1)
    np.testing.assert_allclose(grid, expected, rtol=1e-6, atol=1e-5)
    # column blocks in the documented order
    np.testing.assert_allclose(grid[:, :18], oracle(frames["head"], 200), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(grid[:, 18:24], oracle(frames["hand"], 200), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(features.pooled["mean"], expected.mean(axis=0, keepdims=True), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(features.pooled["std"], expected.std(axis=0, keepdims=True), rtol=1e-5, atol=1e-4)
    assert features.pooled["mean"].shape == (1, 189)
    [pooled_only] = build("iemocap-200").extract([item], [])
    assert not isinstance(pooled_only, ItemRejected) and pooled_only.seq == {}


def test_small_grid_by_hand(tmp_path: Path) -> None:
    # 10 frames into 4 chunks of 3, 3, 2, 2 frames
    column = np.arange(1.0, 11.0)[:, None]
    item = make_item(tmp_path, {"head": column, "hand": 2 * column, "rotated": -column})
    extractor = build("iemocap-200", steps=4, head_columns=1, hand_columns=1, rotated_columns=1)
    [features] = extractor.extract([item], ["grid"])
    assert not isinstance(features, ItemRejected)
    np.testing.assert_allclose(features.seq["grid"][:, 0], [2.0, 5.0, 7.5, 9.5])
    np.testing.assert_allclose(features.seq["grid"][:, 1], [4.0, 10.0, 15.0, 19.0])
    np.testing.assert_allclose(features.seq["grid"][:, 2], [-2.0, -5.0, -7.5, -9.5])


def test_nan_becomes_zero(tmp_path: Path) -> None:
    column = np.arange(1.0, 11.0)[:, None]
    with_nan = column.copy()
    with_nan[4, 0] = np.nan  # inside the second chunk (frames 3..5)
    item = make_item(tmp_path, {"head": with_nan, "hand": column, "rotated": column})
    patamia = build("iemocap-200", steps=4, head_columns=1, hand_columns=1, rotated_columns=1)
    [features] = patamia.extract([item], ["grid"])
    assert not isinstance(features, ItemRejected)
    np.testing.assert_allclose(features.seq["grid"][:, 0], [2.0, 0.0, 7.5, 9.5])
    assert np.isfinite(features.pooled["mean"]).all() and np.isfinite(features.pooled["std"]).all()
    finite_only = build("iemocap-200", steps=4, head_columns=1, hand_columns=1, rotated_columns=1, ignore_nan="true")
    [features] = finite_only.extract([item], ["grid"])
    assert not isinstance(features, ItemRejected)
    np.testing.assert_allclose(features.seq["grid"][:, 0], [2.0, 5.0, 7.5, 9.5])  # (4 + 6) / 2


def test_all_nan_column_with_ignore_nan_is_zero() -> None:
    values = np.full((5, 2), np.nan)
    values[:, 1] = 3.0
    np.testing.assert_array_equal(chunk_means(values, 5, ignore_nan=True), np.tile([0.0, 3.0], (5, 1)))
    np.testing.assert_array_equal(chunk_means(values, 5), np.tile([0.0, 3.0], (5, 1)))


def test_fewer_frames_than_steps() -> None:
    # 2 frames, 3 steps: repeated a a a b b b, chunks of 2 -> a, (a + b) / 2, b
    frames = np.array([[0.0, 10.0], [6.0, 20.0]])
    np.testing.assert_allclose(chunk_means(frames, 3), [[0.0, 10.0], [3.0, 15.0], [6.0, 20.0]])
    # 3 frames, 6 steps: each frame fills two steps
    three = np.array([[1.0], [2.0], [4.0]])
    np.testing.assert_allclose(chunk_means(three, 6)[:, 0], [1.0, 1.0, 2.0, 2.0, 4.0, 4.0])
    # one frame fills the whole grid
    np.testing.assert_allclose(chunk_means(np.array([[5.0, -1.0]]), 200), np.tile([5.0, -1.0], (200, 1)))
    # the time-weighted average is preserved (every frame carries the same weight)
    rng = np.random.default_rng(0)
    short = rng.normal(size=(37, 4))
    np.testing.assert_allclose(chunk_means(short, 200).mean(axis=0), short.mean(axis=0))
    # frames == steps is the identity
    np.testing.assert_allclose(chunk_means(short, 37), short)


def test_short_file_in_extractor(tmp_path: Path) -> None:
    frames = {"head": ramp(3, 18), "hand": ramp(250, 6), "rotated": ramp(150, 165)}
    item = make_item(tmp_path, frames)
    [features] = build("iemocap-200").extract([item], ["grid"])
    assert not isinstance(features, ItemRejected)
    grid = features.seq["grid"]
    assert grid.shape == (200, 189)
    np.testing.assert_allclose(grid[:, :18], chunk_means(frames["head"], 200), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(grid[:, 18:24], oracle(frames["hand"], 200), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(grid[0, :18], frames["head"][0], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(grid[-1, :18], frames["head"][-1], rtol=1e-6, atol=1e-5)


def test_missing_mocap_rejected(tmp_path: Path) -> None:
    extractor = build("iemocap-200")
    no_entry = Item(id="a", extra={"root": str(tmp_path)})
    partial = make_item(tmp_path, {"head": ramp(10, 18)}, utt="Ses01F_impro01_M000")
    full = make_item(tmp_path, {k: ramp(20, w) for k, w in WIDTHS.items()}, utt="Ses01F_impro01_F001")
    (tmp_path / full.extra["mocap"]["hand"]).unlink()
    results = extractor.extract([no_entry, partial, full], ["grid"])
    assert all(isinstance(r, ItemRejected) for r in results)
    assert str(results[0]) == NO_MOCAP == "no motion capture for this utterance"
    assert str(results[1]).startswith(NO_MOCAP) and "MOCAP_hand" in str(results[1])
    assert str(results[2]).startswith(NO_MOCAP) and "F001.txt" in str(results[2])


def test_wrong_column_count_rejected(tmp_path: Path) -> None:
    frames = {"head": ramp(30, 6), "hand": ramp(30, 18), "rotated": ramp(30, 165)}
    item = make_item(tmp_path, frames)
    [result] = build("iemocap-200").extract([item], ["grid"])
    assert isinstance(result, ItemRejected)
    message = str(result)
    assert "MOCAP_head" in message and item.extra["mocap"]["head"] in message.replace("\\", "/")
    assert "6 value columns" in message and "expected 18" in message
    # the other reading of the layout is one option away, and D stays 189
    swapped = build("iemocap-200", head_columns=6, hand_columns=18)
    [features] = swapped.extract([item], ["grid"])
    assert not isinstance(features, ItemRejected)
    assert features.seq["grid"].shape == (200, 189)
    assert swapped.config() != build("iemocap-200").config()


def test_unreadable_and_empty_files_rejected(tmp_path: Path) -> None:
    item = make_item(tmp_path, {k: ramp(20, w) for k, w in WIDTHS.items()})
    rotated = tmp_path / item.extra["mocap"]["rotated"]
    rotated.write_text("Frame# Time\nf s\n", encoding="utf-8")
    [result] = build("iemocap-200").extract([item], [])
    assert isinstance(result, ItemRejected) and "no motion capture frames" in str(result)
    rotated.write_text("Frame# Time\nf s\n1 0.0 1 2 3\n2 0.1 1 2\n", encoding="utf-8")
    [result] = build("iemocap-200").extract([item], [])
    assert isinstance(result, ItemRejected) and "unreadable" in str(result)


def test_read_mocap_drops_frame_and_time(tmp_path: Path) -> None:
    path = write_mocap(tmp_path / "x.txt", np.array([[1.5, np.nan], [2.5, 3.0]]))
    values = read_mocap(path)
    assert values.shape == (2, 2)
    assert values[0, 0] == 1.5 and np.isnan(values[0, 1]) and values[1, 1] == 3.0


def test_batch_keeps_order_and_rejects_per_item(tmp_path: Path) -> None:
    good = make_item(tmp_path, {k: ramp(40, w) for k, w in WIDTHS.items()}, utt="Ses01F_impro01_F002")
    bad = Item(id="b", extra={"root": str(tmp_path)})
    results = build("iemocap-200").extract([good, bad, good], ["grid"])
    assert isinstance(results[1], ItemRejected)
    assert not isinstance(results[0], ItemRejected) and not isinstance(results[2], ItemRejected)
    np.testing.assert_array_equal(results[0].seq["grid"], results[2].seq["grid"])


def test_build_options() -> None:
    with pytest.raises(ExtractorError, match="unknown options"):
        build("iemocap-200", width=3)
    with pytest.raises(ExtractorError, match="no checkpoint"):
        build("iemocap-200", checkpoint="x.pth")
    with pytest.raises(ExtractorError, match="steps must be a whole number"):
        build("iemocap-200", steps="many")
    with pytest.raises(ExtractorError, match="steps must be >= 1"):
        build("iemocap-200", steps=0)
    assert build("iemocap-200", steps="50").spec.seq_layers == {"grid": 189}
    assert build("iemocap-200", steps="50").cfg.steps == 50


def test_fake_iemocap_manifest_rows(tmp_path: Path) -> None:
    """Rows as the IEMOCAP adapter writes them (the fake tree's files are 6/4/6 columns, 3 frames)."""
    release = make_iemocap_tree(tmp_path)
    rows = {u.id: u for u in scan(release).utterances}
    items = [
        Item(id=i, extra={**rows[i].extra, "root": str(release)})
        for i in ("Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses02M_impro05a_F000")
    ]
    extractor = build("iemocap-200", head_columns=6, hand_columns=4, rotated_columns=6)
    full, head_only, none = extractor.extract(items, ["grid"])
    assert not isinstance(full, ItemRejected) and full.seq["grid"].shape == (200, 16)
    # the fake's value i of frame f is 0.5 * i + f for f = 0, 1, 2: first step = frame 0, last = frame 2
    np.testing.assert_allclose(full.seq["grid"][0, :6], 0.5 * np.arange(6))
    np.testing.assert_allclose(full.seq["grid"][-1, :6], 0.5 * np.arange(6) + 2)
    np.testing.assert_allclose(full.pooled["mean"][0, :6], 0.5 * np.arange(6) + 1, atol=1e-6)
    assert isinstance(head_only, ItemRejected) and str(head_only).startswith(NO_MOCAP)
    assert isinstance(none, ItemRejected) and str(none) == NO_MOCAP
