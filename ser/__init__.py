"""ser: extract speech/text features once into a cache, then fit fusion heads under honest protocols.

``from ser import load_model`` loads a run directory written by ``ser fit`` for inference (see
[`ser.predict.model.load_model`][ser.predict.model.load_model]); it is imported on first use, so ``import ser`` stays
light. ``ser.UnusableInputError`` is what ``predict`` raises on a missing or undecodable input.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["UnusableInputError", "__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name in ("load_model", "UnusableInputError"):
        from ser.predict import model

        return getattr(model, name)
    raise AttributeError(f"module 'ser' has no attribute {name!r}")
