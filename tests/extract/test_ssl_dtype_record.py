"""The SSL extractor records the dtype it computed in, not the one asked for (issue 28, item 6): on CPU a
``--dtype float16`` run computes float32, so its store must carry float32 and the float32 config hash."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from ser.cache.format import config_hash
from ser.extract.base import ExtractorError, Features, Item
from ser.extract.dtypes import computed_dtype
from ser.extract.registry import build_extractor

pytestmark = pytest.mark.usefixtures("torch_one_thread")

LAYERS = ("layer_00", "layer_01", "layer_02")


def _features(extractor: object, seconds: float = 0.5) -> Features:
    audio = np.sin(np.linspace(0, 200 * np.pi, int(16000 * seconds))).astype(np.float32)
    (out,) = extractor.extract([Item(id="a", audio=audio)], LAYERS[:1])  # type: ignore[attr-defined]
    assert isinstance(out, Features)
    return out


@pytest.mark.parametrize("asked", ["float16", "bfloat16"])
def test_a_cpu_half_precision_run_records_float32_and_the_float32_hash(
    tiny_hubert_layer: Path, asked: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ser.extract.dtypes"):
        half = build_extractor("hubert", "base", checkpoint=str(tiny_hubert_layer), device="cpu", dtype=asked)
    full = build_extractor("hubert", "base", checkpoint=str(tiny_hubert_layer), device="cpu", dtype="float32")
    assert half.config()["dtype"] == "float32"
    assert half.upstream()["dtype"] == "float32"
    assert half.requested_dtype == asked  # type: ignore[attr-defined]
    assert config_hash(half.config()) == config_hash(full.config())
    assert f"({asked} applies on CUDA only); float32 is recorded" in caplog.text
    # same hash, same numbers: both computed in float32
    a, b = _features(half), _features(full)
    for stat in ("mean", "std"):
        np.testing.assert_array_equal(a.pooled[stat], b.pooled[stat])


def test_computed_dtype_keeps_half_precision_on_cuda_only() -> None:
    assert computed_dtype("float16", torch.device("cuda", 0)) == "float16"
    assert computed_dtype("bfloat16", torch.device("cuda")) == "bfloat16"
    assert computed_dtype("float16", torch.device("cpu")) == "float32"
    assert computed_dtype("float16", torch.device("mps")) == "float32"
    assert computed_dtype("float32", torch.device("cuda")) == "float32"
    with pytest.raises(ExtractorError, match="--dtype must be one of float32, float16, bfloat16, not 'float64'"):
        computed_dtype("float64", torch.device("cpu"))


def test_the_whisper_encoder_records_the_dtype_it_computes(tiny_whisper: Path) -> None:
    half = build_extractor("whisper", "base", checkpoint=str(tiny_whisper), device="cpu", dtype="float16")
    full = build_extractor("whisper", "base", checkpoint=str(tiny_whisper), device="cpu", dtype="float32")
    assert half.config()["dtype"] == "float32"
    assert config_hash(half.config()) == config_hash(full.config())
    with pytest.raises(ExtractorError, match="--dtype must be one of"):
        build_extractor("whisper", "base", checkpoint=str(tiny_whisper), device="cpu", dtype="float64")
