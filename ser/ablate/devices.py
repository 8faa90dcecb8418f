"""Which GPUs a local grid may use, and how much memory each has free right now.

The runner never initialises CUDA itself (that would pin memory on every GPU and import torch): it
reads ``CUDA_VISIBLE_DEVICES`` and asks ``nvidia-smi``. Each job is then started with
``CUDA_VISIBLE_DEVICES`` set to its one GPU, so inside the job that GPU is ``cuda`` (``cuda:0``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

logger = logging.getLogger(__name__)

QUERY = ["--query-gpu=index,uuid,memory.free,memory.total", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Gpu:
    """One GPU as the runner sees it."""

    id: str
    """What goes into the job's CUDA_VISIBLE_DEVICES (index or UUID, as the user named it)."""
    free_mib: int | None = None
    total_mib: int | None = None


def _visible_ids() -> list[str] | None:
    """The entries of CUDA_VISIBLE_DEVICES, [] when it hides every GPU, None when unset."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if any(part.startswith("-") for part in ids):  # "-1": CUDA's way to hide all devices
        ids = ids[: next(i for i, part in enumerate(ids) if part.startswith("-"))]
    return ids


def query_nvidia_smi() -> list[dict[str, str]] | None:
    """Rows ``{index, uuid, free, total}`` from nvidia-smi, or None when it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *QUERY], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.warning("nvidia-smi failed (%s); treating this machine as having no usable GPU", err)
        return None
    if done.returncode != 0:
        logger.warning("nvidia-smi exited with %d: %s", done.returncode, done.stderr.strip()[:200])
        return None
    rows = []
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            rows.append({"index": parts[0], "uuid": parts[1], "free": parts[2], "total": parts[3]})
    return rows


def _mib(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:  # "[N/A]" on some boards
        return None


def _match(rows: list[dict[str, str]], gpu_id: str) -> dict[str, str] | None:
    for row in rows:
        if gpu_id in (row["index"], row["uuid"]) or (gpu_id.startswith("GPU-") and row["uuid"].startswith(gpu_id)):
            return row
    return None


def discover_gpus() -> list[Gpu]:
    """The GPUs this process may use, with their free memory when nvidia-smi tells it."""
    visible = _visible_ids()
    if visible == []:
        return []
    rows = query_nvidia_smi()
    if rows is None:
        if visible:
            logger.warning(
                "CUDA_VISIBLE_DEVICES=%s but nvidia-smi is unavailable: GPU memory is not guarded", ",".join(visible)
            )
        return [Gpu(id=v) for v in visible or []]
    if visible is None:
        return [Gpu(id=r["index"], free_mib=_mib(r["free"]), total_mib=_mib(r["total"])) for r in rows]
    gpus = []
    for gpu_id in visible:
        row = _match(rows, gpu_id)
        gpus.append(
            Gpu(id=gpu_id) if row is None else Gpu(id=gpu_id, free_mib=_mib(row["free"]), total_mib=_mib(row["total"]))
        )
    return gpus


def free_memory(gpus: list[Gpu]) -> dict[str, int | None]:
    """Free MiB per GPU id now (None where unknown)."""
    rows = query_nvidia_smi()
    if rows is None:
        return {g.id: None for g in gpus}
    found = {g.id: _match(rows, g.id) for g in gpus}
    return {gpu_id: (_mib(row["free"]) if row else None) for gpu_id, row in found.items()}
