"""Pooled statistics computed on the model's device from padded hidden states, and stitched across chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.extract.base import ChunkStats, ExtractorSpec, RunningStats, stitch_chunks
from ser.extract.pooling import accumulate_dtype, chunk_stats

LAYERS = {"layer_00": 0, "layer_01": 1, "layer_02": 2}


def _padded(frames: list[int], dim: int = 6, seed: int = 0) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """3 layers of (B, T, D) with huge values in the padding, and each row's valid (L, T_b, D) frames."""
    rng = np.random.default_rng(seed)
    longest = max(frames)
    layers = [rng.normal(loc=5.0 * k, scale=1.0 + k, size=(len(frames), longest, dim)) for k in range(3)]
    for layer in layers:
        for row, n in enumerate(frames):
            layer[row, n:] = 1e6  # padding garbage: must not reach any statistic
    valid = [np.stack([layer[row, :n] for layer in layers]) for row, n in enumerate(frames)]
    return [torch.from_numpy(layer.astype(np.float32)) for layer in layers], valid


def test_masked_moments_match_numpy_on_the_valid_frames() -> None:
    frames = [7, 3, 12, 1]
    states, valid = _padded(frames)
    results = chunk_stats(states, frames, LAYERS, ["layer_02", "layer_00"])
    assert len(results) == 4
    for stats, want in zip(results, valid, strict=True):
        as64 = want.astype(np.float32).astype(np.float64)
        assert stats.count == want.shape[1]
        assert stats.mean.shape == (3, 6) and stats.mean.dtype == np.float64
        np.testing.assert_allclose(stats.mean, as64.mean(axis=1), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(stats.m2 / stats.count, as64.var(axis=1), rtol=1e-9, atol=1e-9)
        assert list(stats.seq) == ["layer_02", "layer_00"]  # only the chosen layers come back
        np.testing.assert_array_equal(stats.seq["layer_02"], want[2].astype(np.float32))
        np.testing.assert_array_equal(stats.seq["layer_00"], want[0].astype(np.float32))


def test_float32_accumulation_as_on_a_gpu_stays_close() -> None:
    """Deviations from the item's mean (not sum of squares): no cancellation for large means."""
    frames = [400, 250]
    states, valid = _padded(frames)
    states = [layer + 1000.0 for layer in states]  # large offset, unit-scale spread
    results = chunk_stats(states, frames, LAYERS, [], accumulate=torch.float32)
    for stats, want in zip(results, valid, strict=True):
        as64 = (want.astype(np.float32) + np.float32(1000.0)).astype(np.float64)
        np.testing.assert_allclose(stats.mean, as64.mean(axis=1), rtol=1e-6)
        np.testing.assert_allclose(np.sqrt(stats.m2 / stats.count), as64.std(axis=1), rtol=1e-4)
        assert stats.seq == {}


def test_accumulation_dtype_per_device() -> None:
    assert accumulate_dtype(torch.device("cpu")) == torch.float64
    assert accumulate_dtype(torch.device("cuda", 0)) == torch.float32
    assert accumulate_dtype(torch.device("mps")) == torch.float32


def test_chunk_moments_combine_into_the_whole_sequence() -> None:
    rng = np.random.default_rng(3)
    whole = rng.normal(loc=40.0, scale=0.5, size=(3, 101, 4))
    running = RunningStats(3, 4)
    for piece in np.split(whole, [10, 11, 70], axis=1):  # uneven pieces, one of a single frame
        running.add(piece)
    mean, std = running.mean_std()
    np.testing.assert_allclose(mean, whole.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(std, whole.std(axis=1), rtol=1e-5)
    assert mean.dtype == np.float32 and running.count == 101


def test_stitch_chunks_concatenates_frames_and_pools_over_all_of_them() -> None:
    spec = ExtractorSpec(
        name="x",
        preset="p",
        modality="audio",
        pooled={"mean": (3, 6), "std": (3, 6)},
        seq_layers=dict.fromkeys(LAYERS, 6),
    )
    frames = [5, 9, 4]
    states, valid = _padded(frames, seed=5)
    chunks = chunk_stats(states, frames, LAYERS, ["layer_01"])
    owners = [0, 0, 1]  # item 0 = chunks 0 and 1, item 1 = chunk 2
    first, second = stitch_chunks(2, owners, chunks, spec, ["layer_01"], [None, "note"])
    joined = np.concatenate([valid[0], valid[1]], axis=1).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(first.pooled["mean"], joined.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(first.pooled["std"], joined.std(axis=1), rtol=1e-5)
    assert first.seq["layer_01"].shape == (14, 6) and second.note == "note"
    np.testing.assert_array_equal(second.seq["layer_01"], valid[2][1].astype(np.float32))


def test_chunk_stats_of_a_single_frame_has_zero_spread() -> None:
    states = [torch.full((1, 3, 2), 2.5) for _ in range(3)]
    (stats,) = chunk_stats(states, [1], LAYERS, [])
    assert isinstance(stats, ChunkStats) and stats.count == 1
    np.testing.assert_array_equal(stats.mean, np.full((3, 2), 2.5))
    np.testing.assert_array_equal(stats.m2, np.zeros((3, 2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_only_statistics_and_chosen_layers_come_back() -> None:
    frames = [300, 120]
    states, valid = _padded(frames, dim=64)
    results = chunk_stats([layer.cuda() for layer in states], frames, LAYERS, ["layer_01"])
    for stats, want in zip(results, valid, strict=True):
        as64 = want.astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(stats.mean, as64.mean(axis=1), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(np.sqrt(stats.m2 / stats.count), as64.std(axis=1), rtol=1e-4, atol=1e-4)
        assert isinstance(stats.seq["layer_01"], np.ndarray)
