"""Miniature fake corpus trees, built from the documented on-disk formats, for adapter tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile


def write_tone(
    path: Path, seconds: float = 0.25, sample_rate: int = 16000, channels: int = 1, frequency: float = 220.0
) -> Path:
    """Write a short sine tone (16-bit PCM; format from the suffix) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.1 * np.sin(2 * np.pi * frequency * t)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    soundfile.write(str(path), data, sample_rate, subtype="PCM_16")
    return path
