"""Every registry lookup refuses an unknown name the same way: one exception type (a UserError, so the
CLI prints one line and exits 2) whose message lists the choices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ser.errors import UnknownNameError, UserError


def _head() -> None:
    from ser.fusion.heads import head_module

    head_module("nope")


def _preset() -> None:
    from ser.fusion.presets import train_preset

    train_preset("nope")


def _loss() -> None:
    from ser.fusion.losses import loss_options

    loss_options("nope")


def _corpus() -> None:
    from ser.manifests.corpora import get_adapter

    get_adapter("nope")


def _extractor() -> None:
    from ser.extract.registry import build_extractor

    build_extractor("nope")


def _executor() -> None:
    from ser.ablate.cluster import submit_grid

    submit_grid([], executor="nope", folder=Path("x"))


@pytest.mark.parametrize(
    ("lookup", "what", "a_choice"),
    [
        (_head, "fusion head", "fleser"),
        (_preset, "fusion head", "memocmt"),
        (_loss, "loss", "focal"),
        (_corpus, "corpus", "iemocap"),
        (_extractor, "extractor", "hubert"),
        (_executor, "executor", "slurm"),
    ],
)
def test_an_unknown_name_is_one_error_type_that_lists_the_choices(
    lookup: Callable[[], None], what: str, a_choice: str
) -> None:
    with pytest.raises(UnknownNameError, match=f"unknown {what} 'nope'; choose one of .*{a_choice}") as caught:
        lookup()
    assert isinstance(caught.value, UserError) and isinstance(caught.value, LookupError)
