"""A fine-tuning config small enough for tiny random upstreams and the tone corpus."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ser.adapt.config import FinetuneConfig


def small_finetune_config(manifest: Path, model: Path, **changes: Any) -> FinetuneConfig:
    """Speaker-LOSO on ``manifest`` from the checkpoint folder ``model``: half-second crops, batches of
    4, validation carved by utterance (the tone corpus has four speakers), no early-stopping patience,
    no decoding workers; ``changes`` override any field."""
    base = FinetuneConfig(
        family="hubert",
        model=str(model),
        manifest=str(manifest),
        protocol="speaker-loso",
        val_by="utterance",
        val_fraction=0.25,
        patience=0,
        batch_size=4,
        crop_seconds=0.5,
        eval_seconds=0.5,
        num_workers=0,
    )
    return dataclasses.replace(base, **changes)
