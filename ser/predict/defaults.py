"""Defaults of loading a fitted run for prediction, torch-free so the command line can show them.

[`ser.predict.model.load_model`][ser.predict.model.load_model] and ``ser predict`` both read these; nothing else sets
them.
"""

from __future__ import annotations

DEVICE = "auto"
"""Where extraction and the heads run: ``auto`` (cuda if available), ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""

BATCH_SIZE = 16
"""Inputs per extraction batch."""
