"""The dtype an upstream computes in: half precision (autocast or a half-precision model) on CUDA only.

Every extractor records the dtype it actually computed, so a store's config (and its hash) says what
made its numbers: a ``--dtype float16`` run on CPU computes, and records, float32.
"""

from __future__ import annotations

import logging

import torch

from ser.extract.base import ExtractorError

logger = logging.getLogger(__name__)

TORCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""The compute dtypes an extractor accepts (``--dtype``)."""


def computed_dtype(requested: str, device: torch.device) -> str:
    """The dtype a run on ``device`` computes in when ``requested`` is asked for: half precision (autocast)
    on CUDA only, float32 everywhere else (a CPU float16 run is slow and its autocast covers few ops, so
    it computes, and records, float32). Raises ExtractorError for an unknown dtype name."""
    if requested not in TORCH_DTYPES:
        raise ExtractorError(f"--dtype must be one of {', '.join(TORCH_DTYPES)}, not {requested!r}")
    if requested != "float32" and device.type != "cuda":
        logger.info("computing in float32 on %s (%s applies on CUDA only); float32 is recorded", device, requested)
        return "float32"
    return requested
