"""Loading Hugging Face models by hub name or local path, failing fast when offline."""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from ser.extract.base import ExtractorError

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 3.0
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
"""A Hugging Face hub id: ``name`` or ``owner/name`` (letters, digits, ``-``, ``_``, ``.``)."""


def looks_like_path(name: str) -> bool:
    """Whether ``name`` was meant as a local folder rather than a hub id: it starts with ``/``, ``./``,
    ``../`` or ``~``, is not of the ``owner/name`` form, or its parent folder exists here."""
    if name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or name in (".", "..") or "\\" in name:
        return True
    if not HUB_ID.match(name):
        return True
    parent = Path(name).parent
    return str(parent) != "." and parent.is_dir()


def hub_reachable(timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether the model hub's host accepts a TCP connection (``HF_ENDPOINT`` is honoured)."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PretrainedLoader(Protocol):
    """A transformers class (``AutoModel``, ``AutoTokenizer``, ...): anything with ``from_pretrained``."""

    def from_pretrained(self, name_or_path: str, /, *args: Any, **kwargs: Any) -> Any: ...


def _offline_hint(name: str) -> str:
    return (
        f"cannot load {name!r}: it is not a local folder, not in the Hugging Face cache, and the hub is "
        "unreachable (or HF_HUB_OFFLINE=1). Download it once where there is network "
        "(`huggingface-cli download NAME`) and pass the folder with --checkpoint PATH, or set HF_HOME to a "
        "cache that holds it"
    )


def load_pretrained(loader: PretrainedLoader, name_or_path: str, *, revision: str | None = None, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` with a fast, clear failure when the model cannot be had.

    Local folders load directly. Hub names are tried from the local cache first; only when the hub
    answers a quick TCP probe is a download attempted, so an offline machine fails in seconds
    instead of retrying for half a minute.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    local = Path(name_or_path).expanduser()
    if local.exists():
        if not (local / "config.json").exists() and not (local / "preprocessor_config.json").exists():
            raise ExtractorError(
                f"{local} is not a Hugging Face model folder (no config.json); point "
                "--checkpoint at the folder written by save_pretrained"
            )
        try:
            return loader.from_pretrained(str(local), **kwargs)
        except (OSError, ValueError) as err:
            raise ExtractorError(
                f"{local} cannot be loaded as a {getattr(loader, '__name__', 'model')} ({err}); "
                "point --checkpoint at a complete save_pretrained folder"
            ) from err
    if looks_like_path(name_or_path):
        raise ExtractorError(
            f"--checkpoint {name_or_path}: no such folder ({local.absolute()} does not exist); "
            "point --checkpoint at the folder written by save_pretrained, or give a hub id as "
            "owner/name"
        )
    try:
        return loader.from_pretrained(name_or_path, revision=revision, local_files_only=True, **kwargs)
    except OSError as cached_error:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        if offline or not hub_reachable():
            raise ExtractorError(_offline_hint(name_or_path)) from cached_error
    logger.info("downloading %s from the hub", name_or_path)
    try:
        return loader.from_pretrained(name_or_path, revision=revision, **kwargs)
    except OSError as err:
        raise ExtractorError(
            f"cannot load {name_or_path!r} from the hub ({err}); pass a local copy with --checkpoint PATH"
        ) from err


def resolved_revision(model: Any) -> str | None:
    """The commit a hub model was loaded from, when transformers recorded it."""
    config = getattr(model, "config", None)
    return getattr(config, "_commit_hash", None)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


def local_weights_sha256(name_or_path: str) -> dict[str, str]:
    """``{"weights_sha256": hex}`` for a local checkpoint folder: one SHA-256 over the names and contents
    of its weight files (so ``ser predict`` notices a folder whose weights were replaced in place);
    ``{}`` for a hub id, where the resolved revision identifies the weights."""
    import hashlib

    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        return {}
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return {"weights_sha256": digest.hexdigest()}


def tensors_sha256(model: Any) -> str:
    """SHA-256 over a loaded model's tensors (name, dtype, shape and bytes of every ``state_dict`` entry, in
    sorted name order): the identity of the weights themselves, which a copy of the files, a re-save
    through ``save_pretrained`` or a hub round-trip keeps (unlike ``weights_sha256``, a digest of files)."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        flat = tensor.to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return digest.hexdigest()
