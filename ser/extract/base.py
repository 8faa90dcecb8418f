"""The extractor contract: a spec saying what an extractor produces, and one batch method.

Every extractor family (one module each: ``ssl``, ``whisper``, ``text``, ``egemaps``, ``logmel``,
``vggish``, ``mocap``) provides a class with

* ``spec``: an [`ExtractorSpec`][ser.extract.base.ExtractorSpec] (modality, rates, pooled statistics with their (L, D)
  shapes, the layers that can be stored as sequences, receptive-field minimum, padding support);
* ``config()``: the JSON-serialisable settings that determine the features (hashed into the store,
  so a changed setting never mixes into an old store);
* ``upstream()``: provenance of the model (id or path, revision, rates, layers, dtype);
* ``extract(items, seq_layers)``: features for a batch of [`Item`][ser.extract.base.Item]s, in the same order.

Each family module has a ``build(preset, ...)`` function; ``ser.extract.registry`` names the
families and their presets (``hubert`` / ``base`` is ``facebook/hubert-base-ls960``, ...) as
literals. Optional dependencies are imported inside the builders with an install hint, so listing
extractors imports nothing heavy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ser.errors import UserError

Modality = Literal["audio", "text", "mocap"]


class ExtractorError(UserError, RuntimeError):
    """An extractor cannot be built or run (missing package, unreachable model, bad option)."""


class ItemRejected(Exception):  # noqa: N818 (a signal, not a failure of the program)
    """Raised for one item that cannot be used (empty text, unreadable mocap); the run goes on."""


@dataclass(frozen=True, kw_only=True)
class ExtractorSpec:
    """What an extractor produces and what it needs."""

    name: str
    """Family name as used on the command line (``hubert``, ``bert``, ``egemaps``)."""
    preset: str
    """Preset within the family (``base``, ``large``, ``default``)."""
    modality: Modality
    """``audio``, ``text`` or ``mocap``: what the extractor reads."""
    pooled: dict[str, tuple[int, int]]
    """Pooled statistic -> (layers L, dim D), written for every item and every layer."""
    seq_layers: dict[str, int]
    """Every layer that can be stored as a sequence -> its dim D (``layer_06``, ``lld`` ...)."""
    sample_rate: int | None = None
    """Audio rate the model expects (audio is resampled to it); None for text and mocap."""
    frame_rate: float | None = None
    """Output frames per second of the sequences (None for token sequences)."""
    min_samples: int = 0
    """Shortest input the model accepts (receptive field); shorter audio is zero-padded and flagged."""
    supports_padding: bool = True
    """False when padded batches change the output (e.g. group-norm feature encoders trained
    without attention masks): the runner then only batches items of identical length."""
    in_workers: bool = False
    """True for cheap CPU-only extractors (eGeMAPS, log-mel): the runner computes them inside its
    decoding worker processes, so they use every core instead of one."""
    window_seconds: float | None = None
    """Set when the model pads every input (chunk) to a fixed window (Whisper: 30 s): an item then
    costs ``ceil(seconds / window) * window`` seconds of compute whatever its length, and the runner
    plans batches by that cost instead of the audio's duration."""

    def resolve_seq(self, choice: str) -> tuple[str, ...]:
        """Parse ``--seq``: ``none``, ``last``, ``all``, layer numbers ``6,12`` or layer names."""
        names = list(self.seq_layers)
        choice = choice.strip()
        if choice in ("", "none"):
            return ()
        if choice == "all":
            return tuple(names)
        if choice == "last":
            return (names[-1],) if names else ()
        chosen: list[str] = []
        for part in (p.strip() for p in choice.split(",")):
            name = f"layer_{int(part):02d}" if part.isdigit() else part
            if name not in self.seq_layers:
                raise ExtractorError(
                    f"{self.name}: no layer {part!r} to store as a sequence; choose from "
                    f"none, last, all or {', '.join(names)}"
                )
            chosen.append(name)
        return tuple(dict.fromkeys(chosen))


@dataclass
class Item:
    """One utterance as handed to an extractor."""

    id: str
    """The manifest row's id (the store row it becomes)."""
    audio: np.ndarray | None = None
    """(samples,) float32 mono at ``spec.sample_rate`` (None for text/mocap extractors)."""
    text: str | None = None
    """The transcript (None for audio and mocap extractors)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """The manifest row's ``extra`` plus ``root`` (for extractors that read side files, e.g. mocap)."""


@dataclass
class Features:
    """Features of one item."""

    pooled: dict[str, np.ndarray]
    """Statistic -> (L, D) float array, for every statistic of the spec."""
    seq: dict[str, np.ndarray] = field(default_factory=dict)
    """Selected layer -> (T, D) float array; the same T for every layer."""
    note: str | None = None
    """Something worth reporting about this item (padded to the minimum length, truncated ...)."""


class Extractor(Protocol):
    """The protocol every extractor class follows (see the module docstring)."""

    spec: ExtractorSpec

    def config(self) -> dict[str, Any]: ...

    def upstream(self) -> dict[str, Any]: ...

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]: ...


def layer_names(n_layers: int) -> list[str]:
    """``layer_00`` ... for ``n_layers`` hidden states (index 0 = the encoder input embedding)."""
    return [f"layer_{i:02d}" for i in range(n_layers)]


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 4 MiB blocks (checkpoint files are recorded by it)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or raise an [`ExtractorError`][ser.extract.base.ExtractorError] with the install
    hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ExtractorError(
            f"this extractor needs the {module!r} package: pip install 'serkit[{extra}]' ({err})"
        ) from err


@dataclass
class ChunkStats:
    """What the host needs of one chunk's hidden states: per-layer moments and the selected layers.

    Computed on the model's device (see ``ser.extract.pooling``), so only (L, D) statistics and the
    ``--seq`` layers' frames cross to host memory.
    """

    count: int
    """Valid frames T of the chunk."""
    mean: np.ndarray
    """(L, D) float64 per-layer mean over the valid frames."""
    m2: np.ndarray
    """(L, D) float64 per-layer sum of squared deviations from ``mean`` (variance = m2 / count)."""
    seq: dict[str, np.ndarray] = field(default_factory=dict)
    """Selected layer -> (T, D) float32 valid frames."""


class RunningStats:
    """Per-layer mean and std over frames that arrive in pieces (chunks of a long recording).

    Pieces are combined through their counts, means and squared deviations (Chan et al.'s pairwise
    update, in float64), so stitching chunks gives the statistics of the whole sequence without the
    cancellation of a sum-of-squares formula.
    """

    def __init__(self, n_layers: int, dim: int) -> None:
        self.mean = np.zeros((n_layers, dim), dtype=np.float64)
        self.m2 = np.zeros((n_layers, dim), dtype=np.float64)
        self.count = 0

    def add(self, frames: np.ndarray) -> None:
        """frames: (L, T, D) valid frames of one piece."""
        as64 = frames.astype(np.float64, copy=False)
        mean = as64.mean(axis=1)
        self.add_moments(frames.shape[1], mean, np.square(as64 - mean[:, None]).sum(axis=1))

    def add_moments(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        """Add a piece of ``count`` frames given its (L, D) ``mean`` and ``m2`` (summed squared deviations)."""
        if count == 0:
            return
        total = self.count + count
        delta = np.asarray(mean, dtype=np.float64) - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + np.asarray(m2, dtype=np.float64) + np.square(delta) * (self.count * count / total)
        self.count = total

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """(L, D) mean and population std, float32."""
        if self.count == 0:
            raise ValueError("no frames were added")
        var = np.maximum(self.m2 / self.count, 0.0)
        return self.mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def stitch_chunks(
    n_items: int,
    owners: Sequence[int],
    chunks: Sequence[ChunkStats],
    spec: ExtractorSpec,
    seq_layers: Sequence[str],
    notes: Sequence[str | None],
) -> list[Features]:
    """Features of items whose audio was cut into chunks.

    ``chunks[k]`` holds the moments and selected frames of chunk k, which belongs to item
    ``owners[k]`` (chunks of one item in time order). Frames are concatenated per item; pooled
    ``mean`` and ``std`` are those of the whole concatenated sequence.
    """
    n_layers, dim = spec.pooled["mean"]
    stats = [RunningStats(n_layers, dim) for _ in range(n_items)]
    frames: list[dict[str, list[np.ndarray]]] = [{layer: [] for layer in seq_layers} for _ in range(n_items)]
    for owner, chunk in zip(owners, chunks, strict=True):
        stats[owner].add_moments(chunk.count, chunk.mean, chunk.m2)
        for layer in seq_layers:
            frames[owner][layer].append(chunk.seq[layer])
    results = []
    for index in range(n_items):
        mean, std = stats[index].mean_std()
        seq = {layer: np.concatenate(parts) for layer, parts in frames[index].items()}
        results.append(Features(pooled={"mean": mean, "std": std}, seq=seq, note=notes[index]))
    return results
