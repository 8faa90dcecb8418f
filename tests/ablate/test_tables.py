"""The marks and numbers shared by report.md and report.tex: no ± for a single value, bold for the best
(and equal at the printed precision), ≈ only where the paired comparison finds no clear difference."""

from __future__ import annotations

import pytest

from ser.ablate.compare import Comparison
from ser.ablate.tables import Score, mark, plain_text, score_of


def comparison(low: float, high: float, p: float) -> Comparison:
    return Comparison(n_pairs=6, unit="fold", mean_difference=(low + high) / 2, low=low, high=high, p_value=p)


def test_a_single_value_has_no_spread() -> None:
    assert plain_text(score_of({"mean": 0.7, "std": 0.0, "values": [0.7]})) == "70.00"
    assert plain_text(score_of({"mean": 0.7, "std": 0.0321, "values": [0.67, 0.73]})) == "70.00 ± 3.21"
    assert plain_text(score_of({"mean": 0.7, "std": 0.0, "values": [0.7, 0.7]})) == "70.00 ± 0.00"  # two equal runs
    assert score_of({"mean": 0.7, "std": 0.05, "values": [0.65, 0.75]}, spread=False).std is None
    assert plain_text(Score(0.854166, 0.041666), pm=" +- ") == "85.42 +- 4.17"


def test_bold_for_the_best_and_its_equals_at_the_printed_precision() -> None:
    scores = {"a": Score(0.80004), "b": Score(0.79996), "c": Score(0.7990), "d": Score(0.60), "e": Score(0.70)}
    comparisons = {
        "a": None,
        "b": comparison(-0.01, 0.01, 0.9),
        "c": comparison(-0.02, 0.001, 0.2),  # interval holds 0: no clear difference
        "d": comparison(-0.3, -0.1, 0.03),  # interval below 0 and p < 0.05: worse, no mark
        "e": None,  # no shared runs with a: no mark
    }
    marked = mark(scores, "a", comparisons)
    assert [marked[k].bold for k in "abcde"] == [True, True, False, False, False]  # 80.00 == 80.00
    assert [marked[k].tie for k in "abcde"] == [False, False, True, False, False]
    assert marked["c"].mean == 0.7990 and marked["c"].number == "79.90"


def test_an_interval_off_zero_with_a_large_p_is_still_a_tie() -> None:
    marked = mark({"a": Score(0.6), "b": Score(0.5)}, "a", {"a": None, "b": comparison(-0.12, -0.01, 0.125)})
    assert marked["b"].tie and not marked["b"].bold


@pytest.mark.parametrize(("mean", "text"), [(0.5, "50.00"), (0.123456, "12.35"), (1.0, "100.00")])
def test_percent_with_two_decimals(mean: float, text: str) -> None:
    assert Score(mean).number == text
