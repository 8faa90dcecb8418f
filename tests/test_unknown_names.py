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
    from ser.fusion.heads import train_preset

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


def _extractor_preset() -> None:
    from ser.extract.registry import build_extractor

    build_extractor("logmel", "nope")


def _protocol() -> None:
    from ser.manifests.protocols import protocol_preset

    protocol_preset("nope")


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
        (_extractor_preset, "logmel preset", "librosa"),
        (_protocol, "protocol", "speaker-kfold"),
        (_executor, "executor", "slurm"),
    ],
)
def test_an_unknown_name_is_one_error_type_that_lists_the_choices(
    lookup: Callable[[], None], what: str, a_choice: str
) -> None:
    with pytest.raises(UnknownNameError, match=f"unknown {what} 'nope'; choose one of .*{a_choice}") as caught:
        lookup()
    assert isinstance(caught.value, UserError) and isinstance(caught.value, LookupError)


def test_an_unknown_protocol_is_also_a_manifest_error() -> None:
    from ser.manifests.protocols import protocol_preset
    from ser.manifests.schema import ManifestError

    with pytest.raises(ManifestError, match="unknown protocol 'nope'"):
        protocol_preset("nope")


def test_every_registry_is_one_dict_of_frozen_records() -> None:
    import dataclasses

    from ser.extract.registry import EXTRACTORS
    from ser.fusion.heads import HEADS
    from ser.fusion.losses import LOSSES, loss_options
    from ser.manifests.corpora import CORPORA
    from ser.manifests.protocols import PROTOCOLS

    for registry in (EXTRACTORS, HEADS, LOSSES, CORPORA, PROTOCOLS):
        for record in registry.values():
            assert dataclasses.is_dataclass(record) and type(record).__dataclass_params__.frozen
            with pytest.raises(dataclasses.FrozenInstanceError):
                record.description = "changed"  # type: ignore[misc]
    # no parallel name -> field mapping is kept beside the records
    import ser.extract.registry
    import ser.manifests.corpora
    import ser.manifests.protocols

    for module, gone in [
        (ser.extract.registry, ("FAMILIES", "PRESETS", "RECOMMENDED_VIEWS", "DESCRIPTIONS")),
        (ser.manifests.corpora, ("ADAPTERS", "DESCRIPTIONS", "DEFAULT_LABEL_SETS", "RAW_LABELS")),
        (ser.manifests.protocols, ("PRESETS", "PRESET_DESCRIPTIONS")),
    ]:
        assert not [name for name in gone if hasattr(module, name)], module.__name__
    assert loss_options("focal") == dict(LOSSES["focal"].options)
