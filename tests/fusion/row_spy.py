"""Which rows the trainer reads, and what for, whichever engine trains (protocol-hygiene tests)."""

from __future__ import annotations

import numpy as np
import pytest

import ser.fusion.train as train_module
from ser.fusion.data import FusionData
from ser.fusion.engine import StackedTrainer

RowCall = tuple[bool, FusionData, np.ndarray]
"""(for training?, the data, the row indices read)."""


def spy_rows(monkeypatch: pytest.MonkeyPatch) -> list[RowCall]:
    """Record every batch of rows the sequential loop or the stacked engine reads: training batches
    (shuffled) and evaluation passes (validation, then the single test pass)."""
    calls: list[RowCall] = []
    iterate = train_module.iterate_batches
    step, validation = StackedTrainer._step, StackedTrainer._member_validation

    def spy_iterate(data, rows, batch_size, *, shuffle, generator, standardizer):
        calls.append((shuffle, data, np.asarray(rows)))
        return iterate(data, rows, batch_size, shuffle=shuffle, generator=generator, standardizer=standardizer)

    def spy_step(self, positions, rows, local, totals):
        for member, member_rows in zip(positions.members, local, strict=True):
            calls.append((True, self.members[member].spec.data, np.asarray(member_rows)))
        return step(self, positions, rows, local, totals)

    def spy_validation(self, member, rows, parts):
        calls.append((False, member.spec.data, np.asarray(rows)))
        return validation(self, member, rows, parts)

    monkeypatch.setattr(train_module, "iterate_batches", spy_iterate)
    monkeypatch.setattr(StackedTrainer, "_step", spy_step)
    monkeypatch.setattr(StackedTrainer, "_member_validation", spy_validation)
    return calls
