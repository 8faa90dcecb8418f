"""Seeding and determinism, one place for every stage that trains (fitting heads, adapting upstreams).

Same config + seed = same numbers: Python, numpy and torch are seeded, torch's deterministic
algorithms are asked for (``warn_only``: an op without a deterministic kernel warns instead of
failing), and on CUDA cuBLAS and cuDNN are set up as below.
"""

from __future__ import annotations

import logging
import os
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS workspace setting that makes its GEMMs deterministic (NVIDIA's cuBLAS docs, "Results
reproducibility"); torch's deterministic mode needs it (or ``:16:8``) on CUDA >= 10.2."""


def deterministic_cuda_setup(deterministic: bool) -> None:
    """What same-seed-same-numbers needs on CUDA beyond ``torch.use_deterministic_algorithms``.

    Sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless the user set it (cuBLAS reads it when its handle
    is created, i.e. at the first CUDA matrix product of the process, so this runs at the start of
    ``run_fit``, before anything touches CUDA) and turns cuDNN autotuning off (its algorithm choice
    varies between runs). A no-op on CPU-only machines; harmless when repeated.
    """
    import torch

    if not deterministic:
        return
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        if torch.cuda.is_initialized():
            logger.warning(
                "CUDA was initialised before the fit set CUBLAS_WORKSPACE_CONFIG=%s; GPU results may "
                "not be reproducible (export it before starting Python)",
                CUBLAS_WORKSPACE,
            )
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def seed_everything(seed: int, deterministic: bool) -> torch.Generator:
    """Seed every RNG; return the generator that shuffles batches."""
    import numpy as np
    import torch

    deterministic_cuda_setup(deterministic)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
