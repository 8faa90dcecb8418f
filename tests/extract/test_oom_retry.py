"""An out-of-memory error in a batch: the failed batch's tensors are freed before the one-by-one retries."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np
import pytest
import torch

import ser.extract.decode as decode
from ser.extract.base import Features, Item, ItemRejected


class _OomOnFirstBatch:
    """A fake extractor whose first (batched) forward allocates a tensor, then runs out of memory."""

    def __init__(self, keep_error: bool) -> None:
        self.keep_error = keep_error
        self.kept: BaseException | None = None
        self.activation: weakref.ref[torch.Tensor] | None = None
        self.alive_at_retry: list[bool] = []
        self.calls: list[list[str]] = []

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        self.calls.append([item.id for item in items])
        if len(self.calls) == 1:
            activation = torch.ones(len(items), 1000)  # the failed forward's tensor: only its frame holds it
            self.activation = weakref.ref(activation)
            error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if self.keep_error:
                self.kept = error  # someone still holds the error: its frames must be cleared all the same
            raise error
        assert self.activation is not None
        self.alive_at_retry.append(self.activation() is not None)
        return [Features(pooled={"mean": np.full((1, 2), float(len(item.id)))}) for item in items]


@pytest.mark.parametrize("keep_error", [False, True])
def test_the_failed_batch_is_freed_before_the_rows_are_retried_one_by_one(
    keep_error: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    extractor = _OomOnFirstBatch(keep_error)
    alive_at_release: list[bool] = []

    def release() -> None:
        assert extractor.activation is not None
        alive_at_release.append(extractor.activation() is not None)

    monkeypatch.setattr(decode, "free_cached_memory", release)
    items = [Item(id=name) for name in ("a", "bb", "ccc")]
    results = decode.extract_batch(extractor, items, ())  # type: ignore[arg-type]
    assert extractor.calls == [["a", "bb", "ccc"], ["a"], ["bb"], ["ccc"]]
    assert alive_at_release == [False]  # freed before the cache is emptied
    assert extractor.alive_at_retry == [False, False, False]  # and before every retry
    assert [float(r.pooled["mean"][0, 0]) for r in results if isinstance(r, Features)] == [1.0, 2.0, 3.0]


def test_a_single_row_that_fails_is_rejected_with_the_error() -> None:
    class Failing:
        def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
            raise torch.OutOfMemoryError("CUDA out of memory")

    (result,) = decode.extract_batch(Failing(), [Item(id="a")], ())  # type: ignore[arg-type]
    assert isinstance(result, ItemRejected)
    assert str(result) == "extraction failed: OutOfMemoryError: CUDA out of memory"
