"""The cache store format (v1): names, layout description, errors, hashing.

A finished store (``x.h5`` file or ``x.zarr`` folder, same layout in both)::

    attrs      format="ser-cache", format_version=1, status="complete", and JSON provenance:
               extractor (name, preset, config, config_hash), upstream, manifest, environment, created
    ids        (N, W)     utf-8 ids as zero-padded uint8 rows, in extraction order
    fingerprints (N, W)   per-row fingerprint of the manifest row (audio, segment, text)
    pooled/<stat>  (N, L, D)  per-utterance statistics for every layer (mean, std, cls, ...)
    seq/offsets    (N+1,) int64: item i is rows offsets[i]:offsets[i+1] of every seq array
    seq/<layer>    (sum_T, D) frame or token sequence of one selected layer (float16 by default)
    rejected/ids, rejected/reasons  (R, W)  ids extraction could not use, and why
    notes/ids, notes/texts          (K, W)  remarks on stored rows (padded, chunked, truncated)

Rows are stored in the order they were extracted (duration-bucketed, not manifest order); readers
index by id, so the order never matters to users.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ser.errors import UserError

FORMAT_NAME = "ser-cache"
FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".partial"
BACKEND_SUFFIXES = {".h5": "hdf5", ".hdf5": "hdf5", ".zarr": "zarr"}


class CacheError(UserError, RuntimeError):
    """A store is missing, partial, of another version, or does not match what was asked for.

    The message always names the store and the command or option that fixes the problem.
    """


@dataclass(frozen=True, kw_only=True)
class StoreLayout:
    """What each row of a store holds."""

    pooled: dict[str, tuple[int, int]]
    """Pooled statistic name -> (layers L, dim D); every row has a (L, D) array per statistic."""
    seq: dict[str, int] = field(default_factory=dict)
    """Stored sequence layer name (e.g. ``layer_06``) -> dim D. All share one length per row."""
    pooled_dtype: str = "float32"
    """dtype of the pooled statistics."""
    seq_dtype: str = "float16"
    """dtype of the stored sequences."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StoreLayout:
        return cls.from_record(json.loads(text))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> StoreLayout:
        """The layout from its decoded JSON record (checked by [`read_attrs`][ser.cache.attr_schema.read_attrs]
        for stores being read)."""
        return cls(
            pooled={k: (int(v[0]), int(v[1])) for k, v in record["pooled"].items()},
            seq={k: int(v) for k, v in record.get("seq", {}).items()},
            pooled_dtype=record.get("pooled_dtype", "float32"),
            seq_dtype=record.get("seq_dtype", "float16"),
        )


def backend_of(path: Path) -> str:
    """``hdf5`` or ``zarr`` from the store path's suffix; a clear error for anything else."""
    suffix = path.suffix.lower()
    if suffix not in BACKEND_SUFFIXES:
        raise CacheError(f"{path}: a cache store path must end in .h5 (HDF5) or .zarr (Zarr), not {suffix!r}")
    return BACKEND_SUFFIXES[suffix]


COMPRESSIONS: dict[str, tuple[str, ...]] = {"hdf5": ("gzip", "lzf"), "zarr": ("zstd", "gzip", "blosc")}
"""The compression names each backend accepts (``--compression``)."""


def check_compression(path: Path, compression: str | None) -> None:
    """Refuse a compression the store's backend cannot write, before any work starts."""
    backend = backend_of(path)
    if compression is None or compression in COMPRESSIONS[backend]:
        return
    other = next((name for name, codecs in COMPRESSIONS.items() if compression in codecs), None)
    suffix = {"hdf5": ".h5", "zarr": ".zarr"}
    hint = f" ({compression} is for {suffix[other]} stores)" if other else ""
    raise CacheError(
        f"{path}: {backend_label(backend)} stores take --compression "
        f"{' or '.join(COMPRESSIONS[backend])}, not {compression!r}{hint}; leave it out for an "
        "uncompressed store (fastest reads)"
    )


def backend_label(backend: str) -> str:
    return {"hdf5": "HDF5", "zarr": "Zarr"}[backend]


def partial_path(path: Path) -> Path:
    """The working folder of an unfinished store."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def set_aside_path(path: Path) -> Path:
    """Where a finished store waits while it is being extended: ``feats.h5`` -> ``feats.extending.h5``."""
    return path.with_name(f"{path.stem}.extending{path.suffix}")


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a JSON-serialisable extractor config."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def encode_strings(values: list[str]) -> Any:
    """Strings as an (N, W) uint8 matrix of zero-padded utf-8 bytes.

    Plain integers are portable across HDF5 and every Zarr version, unlike string dtypes.
    """
    import numpy as np

    encoded = [v.encode("utf-8") for v in values]
    width = max((len(e) for e in encoded), default=1) or 1
    out = np.zeros((len(encoded), width), dtype=np.uint8)
    for row, data in enumerate(encoded):
        out[row, : len(data)] = np.frombuffer(data, dtype=np.uint8)
    return out


def decode_strings(matrix: Any) -> list[str]:
    """Inverse of [`encode_strings`][ser.cache.format.encode_strings]."""
    return [bytes(row).rstrip(b"\0").decode("utf-8") for row in matrix]


AUG_SEPARATOR = "@aug"
"""Augmented copies of a manifest row are stored as rows ``<id>@aug<k>`` (k = 0, 1, ...)."""


def augmented_id(source: str, copy: int) -> str:
    return f"{source}{AUG_SEPARATOR}{copy}"


def source_of(row_id: str) -> str | None:
    """The source utterance of an augmented row id, None for an original row."""
    source, sep, copy = row_id.rpartition(AUG_SEPARATOR)
    return source if sep and copy.isdigit() else None
