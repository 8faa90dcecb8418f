"""Audio given to the Python API as an array: read the way a sound file would be, or refused in one line.

A file carries its own sample format, layout and rate; an array does not, so ``predict(array,
sample_rate=...)`` states the rules here, once, for every path that builds a
[`Request`][ser.predict.model.Request]:

* **values**: floating-point samples are taken as they are (full scale = 1.0); integer PCM is scaled
  to full scale the way soundfile reads it (int16 / 32768, int32 / 2³¹, uint8 centred on 128 / 128);
  booleans, complex numbers and objects are refused;
* **layout**: ``(samples,)``, or two axes of which the SHORTER one is the channels, whichever way
  round: ``(n, 2)`` and ``(2, n)`` are both stereo (a recording with more channels than samples is
  not audio); at most [`MAX_CHANNELS`][ser.predict.samples.MAX_CHANNELS] channels; more axes are
  refused;
* **rate**: a whole number of Hz from [`MIN_RATE`][ser.predict.samples.MIN_RATE] to
  [`MAX_RATE`][ser.predict.samples.MAX_RATE] (``sample_rate=0`` is an error, not "the default").
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ser.errors import UserError

MIN_RATE = 1000
"""The lowest sample rate accepted, in Hz (telephone speech is 8000)."""
MAX_RATE = 768_000
"""The highest sample rate accepted, in Hz."""
MAX_CHANNELS = 64
"""The most channels an array may hold (the shorter axis of a two-axis array)."""


def check_sample_rate(rate: Any, what: str = "sample_rate") -> int:
    """``rate`` as whole Hz, or a [`UserError`][ser.errors.UserError] naming ``what`` and the range."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not float(rate).is_integer():
        raise UserError(f"{what} must be a whole number of Hz ({MIN_RATE}-{MAX_RATE}), not {rate!r}")
    hertz = int(float(rate))
    if not MIN_RATE <= hertz <= MAX_RATE:
        raise UserError(f"{what} must be from {MIN_RATE} to {MAX_RATE} Hz, not {rate!r}")
    return hertz


def as_samples(array: Any, what: str = "the array") -> np.ndarray:
    """``array`` as float32 ``(samples,)`` or ``(samples, channels)`` at full scale 1.0 (see the module
    docstring), or a [`UserError`][ser.errors.UserError] naming ``what`` and the fix."""
    data = np.asarray(array)
    if data.dtype.kind == "f":
        values = data.astype(np.float32, copy=False)
    elif data.dtype.kind in "iu":
        values = _scaled(data)
    else:
        raise UserError(
            f"{what}: samples must be real numbers (float, or integer PCM), not dtype {data.dtype}; "
            "convert with np.asarray(x, dtype=np.float32)"
        )
    if values.ndim == 1:
        return values
    if values.ndim != 2:
        raise UserError(f"{what}: audio has one axis (samples,) or two (samples and channels), not shape {data.shape}")
    if values.shape[0] < values.shape[1]:
        values = values.T  # channels first: the shorter axis is the channels
    if values.shape[1] > MAX_CHANNELS:
        raise UserError(
            f"{what}: shape {data.shape} has {values.shape[1]} channels on its shorter axis (at most "
            f"{MAX_CHANNELS}); give (samples,) or (samples, channels)"
        )
    return np.ascontiguousarray(values)


def _scaled(data: np.ndarray) -> np.ndarray:
    """Integer PCM as float32 at full scale 1.0 (signed: by 2^(bits-1); unsigned: centred first)."""
    bits = 8 * data.dtype.itemsize
    if data.dtype.kind == "u":
        centre = 2.0 ** (bits - 1)
        return ((data.astype(np.float64) - centre) / centre).astype(np.float32)
    return (data.astype(np.float64) / 2.0 ** (bits - 1)).astype(np.float32)
