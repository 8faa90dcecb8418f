"""Units of inference: window planning, member file names, the skops allow-list, the final recipe."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from ser.errors import UserError
from ser.fusion.final import choose_recipe, labelled_rows
from ser.fusion.model_files import ModelFileError, load_member, member_name
from ser.fusion.train import FoldResult
from ser.predict.windows import plan_windows


@pytest.mark.parametrize(
    ("duration", "window", "hop", "expected"),
    [
        (10.0, 4.0, 1.0, 7),  # starts 0..6, the last window ends exactly at 10
        (10.5, 4.0, 1.0, 8),  # 7 full hops + one window ending at 10.5
        (3.0, 4.0, 1.0, 1),  # shorter than a window: the whole recording
        (4.0, 4.0, 2.0, 1),
        (3600.0, 4.0, 1.0, 3597),
    ],
)
def test_window_count_for_a_known_duration(duration: float, window: float, hop: float, expected: int) -> None:
    spans = plan_windows(duration, window, hop)
    assert len(spans) == expected
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(duration)
    assert all(math.isclose(end - start, min(window, duration)) for start, end in spans)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(spans)]
    assert all(0 < gap <= hop + 1e-9 for gap in gaps)  # no part of the recording is skipped


@pytest.mark.parametrize(("window", "hop"), [(0.0, 1.0), (4.0, 0.0), (-1.0, 1.0), (math.inf, 1.0), (4.0, math.nan)])
def test_bad_window_or_hop_is_refused(window: float, hop: float) -> None:
    with pytest.raises(UserError, match="positive"):
        plan_windows(10.0, window, hop)


def test_member_names_are_safe_file_stems() -> None:
    assert member_name("Actor_01", 0) == "Actor_01-seed0"
    assert member_name("../../etc/x y", 3) == ".._.._etc_x_y-seed3"
    assert "/" not in member_name("Ses01/F", 1)


def test_a_classic_member_file_with_types_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    import operator

    import skops.io
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    def load(name: str) -> object:
        member = {"file": name, "engine": "sklearn", "name": "x"}
        return load_member(tmp_path, {}, member, device=None)  # type: ignore[arg-type]

    skops.io.dump({"estimator": operator.attrgetter("x"), "scaler": None}, tmp_path / "callable.skops")
    with pytest.raises(ModelFileError, match=r"names types outside the allow-list \(operator.attrgetter\)"):
        load("callable.skops")
    skops.io.dump({"estimator": Pipeline([("scale", StandardScaler())]), "scaler": None}, tmp_path / "pipe.skops")
    with pytest.raises(ModelFileError, match="holds Pipeline"):
        load("pipe.skops")
    (tmp_path / "damaged.skops").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelFileError, match="cannot be loaded"):
        load("damaged.skops")


def _member(fold: str, seed: int, best_epoch: int, lrs: list[float]) -> FoldResult:
    history = [{"epoch": i + 1, "lr": lr} for i, lr in enumerate(lrs)]
    return FoldResult(
        fold=fold,
        seed=seed,
        best_epoch=best_epoch,
        epochs_run=len(lrs),
        validation={},
        test={},
        predictions=[],
        history=history,
    )  # type: ignore[arg-type]


def test_final_recipe_takes_the_majority_candidate_and_the_median_member() -> None:
    results = [
        _member("A", 0, 5, [1e-3] * 9),
        _member("B", 0, 9, [1e-3] * 5 + [1e-4] * 5),
        _member("C", 0, 7, [1e-3] * 4 + [5e-4] * 4),
        _member("D", 0, 2, [1e-3] * 3),
    ]
    chosen = {"A": 1, "B": 1, "C": 1, "D": 0}
    scores = {"A": [0.9, 0.5], "B": [0.9, 0.5], "C": [0.9, 0.5], "D": [0.9, 0.5]}
    recipe = choose_recipe(results, chosen, scores, seed=3)
    assert recipe.candidate == 1  # three folds chose it, though candidate 0 scores higher on average
    assert recipe.from_member == "C seed 0" and recipe.epochs == 7  # median of 5, 7, 9 among candidate 1's members
    assert recipe.lrs == [1e-3] * 4 + [5e-4] * 3 and recipe.seed == 3  # C's schedule, replayed
    tie = choose_recipe(results, {"A": 0, "B": 1, "C": 0, "D": 1}, {f: [0.4, 0.6] for f in "ABCD"}, seed=0)
    assert tie.candidate == 1  # two votes each: the better mean validation score wins


def test_labelled_rows_are_the_union_of_training_and_validation() -> None:
    folds = [
        {"train": np.array([0, 1, 2]), "validation": np.array([3]), "test": np.array([4, 5])},
        {"train": np.array([2, 3, 4]), "validation": np.array([5]), "test": np.array([0, 1])},
    ]
    assert labelled_rows(None, folds).tolist() == [0, 1, 2, 3, 4, 5]  # type: ignore[arg-type]
    official = [{"train": np.array([0, 1]), "validation": np.array([2]), "test": np.array([3])}]
    assert labelled_rows(None, official).tolist() == [0, 1, 2]  # type: ignore[arg-type]
