"""Early stopping: best score and epoch, patience, min_delta and both directions."""

from __future__ import annotations

import math

import pytest

from ser.early_stopping import EarlyStopping


def run(stopping: EarlyStopping, scores: list[float]) -> tuple[list[int], int]:
    """Feed epochs 1, 2, ... until the tracker says stop: (the epochs that were a new best, epochs run)."""
    bests, epoch = [], 0
    for epoch, score in enumerate(scores, start=1):
        if stopping.update(epoch, score):
            bests.append(epoch)
        elif stopping.should_stop:
            break
    return bests, epoch


def test_max_mode_keeps_the_highest_score_and_its_epoch() -> None:
    stopping = EarlyStopping(patience=0, mode="max")
    bests, epochs = run(stopping, [0.3, 0.5, 0.4, 0.5, 0.7, 0.1])
    assert bests == [1, 2, 5] and epochs == 6
    assert (stopping.best_score, stopping.best_epoch, stopping.waited) == (0.7, 5, 1)


def test_a_tie_is_not_an_improvement() -> None:
    stopping = EarlyStopping(mode="max")
    assert run(stopping, [0.5, 0.5, 0.5])[0] == [1]
    assert stopping.best_epoch == 1


def test_min_mode_keeps_the_lowest_score() -> None:
    stopping = EarlyStopping(mode="min")
    bests, _ = run(stopping, [2.0, 1.5, 1.7, 0.9, 0.9])
    assert bests == [1, 2, 4] and (stopping.best_score, stopping.best_epoch) == (0.9, 4)


def test_patience_stops_after_that_many_epochs_without_improvement() -> None:
    stopping = EarlyStopping(patience=2)
    bests, epochs = run(stopping, [0.1, 0.2, 0.15, 0.3, 0.29, 0.28, 0.9, 0.95])
    assert bests == [1, 2, 4] and epochs == 6  # epochs 5 and 6 did not beat 0.3: stop; 7 never runs
    assert stopping.should_stop and stopping.best_epoch == 4


def test_an_improvement_resets_the_wait() -> None:
    stopping = EarlyStopping(patience=2)
    bests, epochs = run(stopping, [0.1, 0.0, 0.2, 0.1, 0.3, 0.2])
    assert bests == [1, 3, 5] and epochs == 6 and not stopping.should_stop


def test_patience_zero_never_stops() -> None:
    stopping = EarlyStopping(patience=0)
    assert run(stopping, [1.0] + [0.0] * 50) == ([1], 51)
    assert not stopping.should_stop and stopping.waited == 50


def test_min_delta_asks_for_a_margin_in_both_directions() -> None:
    higher = EarlyStopping(mode="max", min_delta=0.05)
    assert run(higher, [0.50, 0.54, 0.56, 0.60])[0] == [1, 3]  # 0.54 is within the margin of 0.50; 0.60 of 0.56
    lower = EarlyStopping(mode="min", min_delta=0.1)
    assert run(lower, [1.0, 0.95, 0.85, 0.8])[0] == [1, 3]


def test_the_first_epoch_is_the_best_so_far_whatever_its_score() -> None:
    for mode in ("max", "min"):
        stopping = EarlyStopping(mode=mode)  # type: ignore[arg-type]
        assert math.isnan(stopping.best_score) and stopping.best_epoch == 0
        assert stopping.update(1, math.nan) and stopping.best_epoch == 1
        assert stopping.update(2, 0.5) is False  # nothing compares better than NaN: a later epoch is no better


def test_improves_does_not_record() -> None:
    stopping = EarlyStopping()
    stopping.update(1, 0.5)
    assert stopping.improves(0.6) and not stopping.improves(0.4)
    assert (stopping.best_score, stopping.best_epoch, stopping.waited) == (0.5, 1, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"mode": "maximum"}, "mode"), ({"patience": -1}, "negative"), ({"min_delta": -0.1}, "negative")],
)
def test_bad_settings_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**options)  # type: ignore[arg-type]
