"""Device choices (``--device``, ``train.device``) checked once, with a clear message, before any model
is built: one resolver for extraction, adaptation, fitting and inference.

Accepted: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` and ``mps``.
Under ``torchrun`` (``LOCAL_RANK`` set) ``auto`` and a bare ``cuda`` both mean ``cuda:LOCAL_RANK``,
so every rank drives its own GPU; an explicit ``cuda:N`` is kept as given.
"""

from __future__ import annotations

import gc
import os
import re
import sys

from ser.errors import UserError


class DeviceError(UserError):
    """An unknown device name, or a device this machine does not have."""


CHOICES = "auto, cpu, cuda, cuda:N or mps"
_PATTERN = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def resolve_device(choice: str) -> str:
    """The torch device name for ``choice`` (see the module docstring).

    Raises [`DeviceError`][ser.devices.DeviceError] for an unknown name, CUDA or MPS asked for where it is not
    available, and ``cuda:N`` beyond the visible GPUs.
    """
    import torch

    text = str(choice).strip().lower()
    match = _PATTERN.match(text)
    if match is None or (match.group(2) is not None and match.group(1) not in ("cuda",)):
        raise DeviceError(f"--device {choice}: unknown device; use {CHOICES}")
    kind, index = match.group(1), match.group(2)
    local_rank = os.environ.get("LOCAL_RANK")
    if kind == "auto":
        if torch.cuda.is_available():
            return _checked_cuda(int(local_rank or 0), choice)
        return "cpu"
    if kind == "cpu":
        return "cpu"
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise DeviceError(f"--device {choice}: MPS (Apple GPU) is not available here; use --device cpu")
        return "mps"
    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device {choice}: CUDA is not available here (no GPU, or a CPU-only torch "
            f"{torch.__version__}); use --device cpu or auto"
        )
    if index is None:
        return _checked_cuda(int(local_rank), choice) if local_rank is not None else "cuda"
    return _checked_cuda(int(index), choice)


def _checked_cuda(index: int, choice: str) -> str:
    import torch

    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"--device {choice}: GPU {index} does not exist ({count} visible: cuda:0 ... "
            f"cuda:{count - 1}; check CUDA_VISIBLE_DEVICES and torchrun's --nproc_per_node)"
        )
    return f"cuda:{index}"


def is_out_of_memory(error: BaseException) -> bool:
    """True for an accelerator out-of-memory error (``torch.OutOfMemoryError``, or MPS's RuntimeError)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_cached_memory() -> None:
    """Collect garbage and hand the memory torch's allocator caches back to the GPU (a no-op without
    CUDA, or before torch is imported). Call it after the last reference to what failed is gone: outside
    the ``except`` block, whose traceback keeps the failed step's tensors alive."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
