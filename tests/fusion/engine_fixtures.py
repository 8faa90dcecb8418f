"""In-memory data for engine tests: every head's inputs from its EXAMPLE_DIMS, with a weak class
signal, and folds of unequal sizes."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from ser.fusion.data import FusionData, ModalityData
from ser.fusion.heads import head_module
from ser.views import View

CLASSES = ("ang", "hap", "neu", "sad")


def head_data(name: str, rows: int = 90, seed: int = 0) -> FusionData:
    """``rows`` rows for head ``name``: pooled (N, D) or sequences of 3-11 frames (T, D) per modality."""
    module = head_module(name)
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % len(CLASSES)
    modalities = {}
    for modality, dim in module.EXAMPLE_DIMS.items():
        centres = rng.normal(size=(len(CLASSES), dim)).astype(np.float32)
        kind = module.INPUTS[modality].rstrip("?")
        if kind == "pooled":
            values = rng.normal(size=(rows, dim)).astype(np.float32) + centres[labels]
            modalities[modality] = ModalityData(view=View(store=f"{modality}.h5"), dim=dim, pooled=values)
        else:
            sequences = [
                rng.normal(size=(int(rng.integers(3, 12)), dim)).astype(np.float32) + centres[label] for label in labels
            ]
            modalities[modality] = ModalityData(
                view=View(store=f"{modality}.h5", kind="seq"), dim=dim, sequences=sequences
            )
    return FusionData(
        ids=[f"u{i:03d}" for i in range(rows)],
        labels=labels.astype(np.int64),
        speakers=[f"s{i % 6}" for i in range(rows)],
        classes=CLASSES,
        modalities=modalities,
    )


def unequal_folds(
    rows: int, sizes: tuple[int, ...] = (50, 61, 44), validation: int = 12, shift: int = 7
) -> list[dict[str, np.ndarray]]:
    """Folds with ``sizes`` training rows (not multiples of a batch), ``validation`` (or fewer) validation
    rows and the rest as test, each a different slice of ``range(rows)``."""
    folds = []
    for k, size in enumerate(sizes):
        order = np.roll(np.arange(rows), -shift * k)
        val = validation - 2 * k
        folds.append({"train": order[:size], "validation": order[size : size + val], "test": order[size + val :]})
    return folds


def no_dropout(name: str) -> dict[str, Any]:
    """Head options that turn every dropout and the head's own SpecAugment off."""
    options: dict[str, Any] = {}
    for f in fields(head_module(name).CONFIG):
        if "dropout" in f.name and f.default is not None:
            options[f.name] = 0.0
        if f.name == "specaugment":
            options[f.name] = False
    return options
