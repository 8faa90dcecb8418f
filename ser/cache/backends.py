"""The two storage backends behind one small interface: HDF5 (h5py) and Zarr (v3).

Only what the store needs: create fixed-shape arrays, write row ranges, read selections, JSON
string attributes. Arrays are created with their final shape (the writer knows all sizes when it
finalizes), so nothing is ever resized.

Reads of plain (uncompressed) arrays copy straight out of memory maps of the bytes on disk: the
contiguous HDF5 dataset, or the Zarr chunk files when their metadata says they are raw row blocks
(anything else goes through h5py / zarr). This runs at the speed of numpy reading a ``.npy``. It
also beats ``read()`` into a fresh ``np.empty`` / ``np.zeros`` array, which was measured ~3x slower
on the CI machine for data at the start of a file (a Zarr chunk): the kernel's copy is slow when
the destination starts a few bytes after the source within a memory page (fresh large numpy
arrays start 16 bytes into a page), while user-space ``memcpy`` avoids that case.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np

from ser.cache.format import CacheError, backend_of

if TYPE_CHECKING:
    import zarr

logger = logging.getLogger(__name__)

MAX_MAPPED_CHUNKS = 32
"""Chunk files of a Zarr store kept memory-mapped at once (each holds a file descriptor)."""


class StoreFile(Protocol):
    """A group of named arrays plus string attributes."""

    @property
    def attrs(self) -> MutableMapping[str, Any]: ...
    def create(
        self, name: str, shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...] | None, compression: str | None
    ) -> None: ...
    def write(self, name: str, start: int, data: np.ndarray) -> None: ...
    def read(self, name: str, selection: Any = ...) -> np.ndarray: ...
    def shape(self, name: str) -> tuple[int, ...]: ...
    def dtype(self, name: str) -> np.dtype: ...
    def has(self, name: str) -> bool: ...
    def nbytes_stored(self) -> int: ...
    def close(self) -> None: ...


def _safe_chunks(shape: tuple[int, ...], chunks: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if chunks is None:
        return None
    return tuple(max(1, min(c, s)) if s else 1 for c, s in zip(chunks, shape, strict=True))


class Hdf5File:
    """HDF5 through h5py. Respects ``HDF5_USE_FILE_LOCKING`` (set it to FALSE on NFS)."""

    def __init__(self, path: Path, mode: str) -> None:
        import h5py

        self._maps: dict[str, np.ndarray | None] = {}
        try:
            self._file = h5py.File(path, mode)
        except OSError as err:
            text = str(err).lower()
            if "truncated file" in text:  # "sblock" in HDF5's wording is not about locks
                hint = (
                    " The file is cut short (an interrupted copy or a full disk): copy it again, or delete it "
                    "and extract again."
                )
            elif "lock file" in text or "locking" in text or "no locks" in text:
                hint = " On a network file system set HDF5_USE_FILE_LOCKING=FALSE."
            else:
                hint = ""
            raise CacheError(f"{path}: cannot open as HDF5 ({err}).{hint}") from err
        self.path = path
        self.attrs = self._file.attrs

    def create(
        self, name: str, shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...] | None, compression: str | None
    ) -> None:
        # Uncompressed arrays are stored contiguously: their final shape is known, and a contiguous
        # dataset is memory-mapped for reads at numpy speed. Chunks only serve compression.
        chunks = _safe_chunks(shape, chunks) if compression and all(shape) else None
        self._file.create_dataset(
            name, shape=shape, dtype=dtype, chunks=chunks, compression=compression if chunks else None
        )

    def write(self, name: str, start: int, data: np.ndarray) -> None:
        if len(data):
            self._file[name][start : start + len(data)] = data

    def read(self, name: str, selection: Any = ...) -> np.ndarray:
        mapped = self._memory_map(name)
        if mapped is not None:  # a copy out of a memory map: no per-call HDF5 overhead
            return np.array(mapped[selection])
        dataset = self._file[name]
        source = dataset if dataset.size else np.empty(dataset.shape, dtype=dataset.dtype)
        selected: np.ndarray = source[selection]  # h5py reads a selection into a numpy array
        return selected

    def _memory_map(self, name: str) -> np.ndarray | None:
        """A read-only memory map of a non-empty contiguous dataset of a read-only file, else None.

        Reads copy out of the map (see the module docstring for why that beats ``read()``).
        """
        if name not in self._maps:
            mapped = None
            if self._file.mode == "r":
                dataset = self._file[name]
                offset = dataset.id.get_offset()
                if dataset.chunks is None and dataset.size and offset is not None:
                    mapped = np.memmap(self.path, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)
            self._maps[name] = mapped
        return self._maps[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._file[name].shape)

    def dtype(self, name: str) -> np.dtype:
        dtype: np.dtype = self._file[name].dtype
        return dtype

    def has(self, name: str) -> bool:
        return name in self._file

    def nbytes_stored(self) -> int:
        return os.path.getsize(self.path)

    def close(self) -> None:
        self._maps.clear()
        self._file.close()


@dataclass(frozen=True)
class RawZarrLayout:
    """A Zarr array whose chunks are plain little-endian C-order bytes, split along rows only."""

    chunk_rows: int
    shape: tuple[int, ...]
    dtype: np.dtype
    fill_value: float | int


def raw_zarr_layout(array_dir: Path) -> RawZarrLayout | None:
    """Read an array's ``zarr.json`` (Zarr v3 spec) and say whether its chunks are raw row blocks.

    That is what this store writes when uncompressed: one ``bytes`` codec (little endian), a
    regular chunk grid that splits rows only, and default ``c/<i>/0/...`` chunk keys. Such chunks
    can be read straight from their files. Anything else, or metadata this function does not
    understand, gives None and the caller uses zarr's own (generic) read path.
    """
    try:
        meta = json.loads((array_dir / "zarr.json").read_text(encoding="utf-8"))
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
            return None
        shape = tuple(int(n) for n in meta["shape"])
        grid, keys, codecs = meta["chunk_grid"], meta["chunk_key_encoding"], meta["codecs"]
        if grid.get("name") != "regular" or keys.get("name") != "default":
            return None
        if keys.get("configuration", {}).get("separator", "/") != "/":
            return None
        chunk_shape = tuple(int(n) for n in grid["configuration"]["chunk_shape"])
        if (
            len(codecs) != 1
            or codecs[0].get("name") != "bytes"
            or codecs[0].get("configuration", {}).get("endian", "little") != "little"
        ):
            return None
        if meta.get("storage_transformers") or len(chunk_shape) != len(shape) or chunk_shape[1:] != shape[1:]:
            return None
        dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        fill_value = meta.get("fill_value", 0)
        if not shape or not all(shape) or not chunk_shape[0] or isinstance(fill_value, (str, list, bool)):
            return None
        return RawZarrLayout(chunk_rows=chunk_shape[0], shape=shape, dtype=dtype, fill_value=fill_value)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        logger.debug("%s: no raw chunk reads (%s); using the zarr read path", array_dir, err)
        return None


_ZARR_MODES: dict[str, Literal["r", "r+", "w", "w-"]] = {"r": "r", "r+": "r+", "a": "r+", "w": "w", "w-": "w-"}
"""Store-file mode (h5py's words) -> zarr's group open mode: ``a`` (read and write an existing store) is ``r+``."""


def _zarr_mode(mode: str) -> Literal["r", "r+", "w", "w-"]:
    if mode not in _ZARR_MODES:
        raise ValueError(f"unknown store-file mode {mode!r}; use one of {sorted(_ZARR_MODES)}")
    return _ZARR_MODES[mode]


class ZarrFile:
    """A Zarr v3 group in a folder."""

    _CODECS: ClassVar[dict[str, str]] = {"zstd": "ZstdCodec", "gzip": "GzipCodec", "blosc": "BloscCodec"}
    """Compression name (see [`COMPRESSIONS`][ser.cache.format.COMPRESSIONS]) -> zarr codec class."""

    def __init__(self, path: Path, mode: str) -> None:
        try:
            import zarr
        except ImportError:
            raise CacheError(f"{path}: Zarr stores need the zarr package (pip install 'serkit[zarr]')") from None
        try:
            self._group = zarr.open_group(store=str(path), mode=_zarr_mode(mode))
        except (FileNotFoundError, ValueError, KeyError) as err:
            raise CacheError(f"{path}: cannot open as a Zarr group ({err})") from err
        self._raw: dict[str, RawZarrLayout | None] = {}
        self._chunk_maps: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._mode = mode
        self.path = path
        self.attrs = self._group.attrs

    def create(
        self, name: str, shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...] | None, compression: str | None
    ) -> None:
        import zarr.codecs

        compressors = None
        if compression:
            if compression not in self._CODECS:
                raise CacheError(f"unknown Zarr compression {compression!r}; use one of {sorted(self._CODECS)}")
            compressors = [getattr(zarr.codecs, self._CODECS[compression])()]
        self._group.create_array(
            name,
            shape=shape,
            dtype=dtype,
            chunks=_safe_chunks(shape, chunks or shape) or (1,) * len(shape),
            compressors=compressors,
            fill_value=0,
        )

    def write(self, name: str, start: int, data: np.ndarray) -> None:
        # every chunk is written, even one equal to the fill value, so a missing chunk file always means damage
        # (the setting is not stored with the array: it is asked for on every write)
        if len(data):
            self._array(name).with_config({"write_empty_chunks": True})[start : start + len(data)] = data

    def read(self, name: str, selection: Any = ...) -> np.ndarray:
        layout = self._raw_layout(name)
        if layout is not None:
            rows = _row_range(selection, layout.shape[0])
            if rows is not None:
                return self._read_raw_rows(name, layout, *rows)
        return np.asarray(self._array(name)[selection])

    def _raw_layout(self, name: str) -> RawZarrLayout | None:
        """The raw chunk layout of a read-only array (None: use the generic zarr path)."""
        if name not in self._raw:
            self._raw[name] = raw_zarr_layout(self.path / name) if self._mode == "r" else None
        return self._raw[name]

    def _read_raw_rows(self, name: str, layout: RawZarrLayout, start: int, stop: int) -> np.ndarray:
        """Rows start:stop copied out of memory maps of the chunk files."""
        chunk_rows = layout.chunk_rows
        out = np.empty((stop - start, *layout.shape[1:]), dtype=layout.dtype)
        for chunk in range(start // chunk_rows, (stop - 1) // chunk_rows + 1 if stop > start else 0):
            first = max(start, chunk * chunk_rows)
            last = min(stop, (chunk + 1) * chunk_rows)
            mapped = self._chunk_map(name, chunk, layout)
            if mapped is None:
                raise CacheError(
                    f"{self._chunk_path(name, chunk, layout)}: chunk file is missing; the store is "
                    "damaged. Re-extract it (or merge its shards again)"
                )
            if len(mapped) < last - chunk * chunk_rows:
                raise CacheError(
                    f"{self._chunk_path(name, chunk, layout)}: chunk file is shorter than its array "
                    "says; the store is damaged. Re-extract it (or merge its shards again)"
                )
            out[first - start : last - start] = mapped[first - chunk * chunk_rows : last - chunk * chunk_rows]
        return out

    def _chunk_path(self, name: str, chunk: int, layout: RawZarrLayout) -> Path:
        """File of row chunk ``chunk`` under the default chunk key encoding (``c/<i>/0/0``)."""
        return self.path / name / "/".join(["c", str(chunk), *("0" * (len(layout.shape) - 1))])

    def _chunk_map(self, name: str, chunk: int, layout: RawZarrLayout) -> np.ndarray | None:
        """A read-only memory map of one chunk file as rows (None when the file does not exist).

        The most recently used maps stay open (one file descriptor each), so reading items one by
        one maps each chunk once.
        """
        key = (name, chunk)
        mapped = self._chunk_maps.get(key)
        if mapped is not None:
            self._chunk_maps.move_to_end(key)
            return mapped
        try:
            mapped = map_rows(self._chunk_path(name, chunk, layout), layout.shape[1:], layout.dtype)
        except FileNotFoundError:
            return None
        self._chunk_maps[key] = mapped
        if len(self._chunk_maps) > MAX_MAPPED_CHUNKS:
            self._chunk_maps.popitem(last=False)
        return mapped

    def _array(self, name: str) -> zarr.Array[Any]:
        """The array ``name`` of the group (a sub-group of that name is a damaged store)."""
        import zarr

        node = self._group[name]
        if not isinstance(node, zarr.Array):
            raise CacheError(f"{self.path / name}: a group where an array belongs; the store is damaged. Re-extract it")
        return node

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._array(name).shape)

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self._array(name).dtype)

    def has(self, name: str) -> bool:
        return name in self._group

    def nbytes_stored(self) -> int:
        return sum(f.stat().st_size for f in _walk_files(self.path))

    def close(self) -> None:
        """Zarr writes through; nothing to flush. Releases the chunk memory maps."""
        self._chunk_maps.clear()


# ---------------------------------------------------------------------------------------- raw reads


def map_rows(path: Path, row_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A whole file memory-mapped read-only as an array of rows (trailing bytes of a partial row ignored)."""
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < row_bytes:
            return np.empty((0, *row_shape), dtype=dtype)
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    rows = size // row_bytes
    return np.frombuffer(mapped, dtype=dtype, count=rows * (row_bytes // dtype.itemsize)).reshape(rows, *row_shape)


def _row_range(selection: Any, n_rows: int) -> tuple[int, int] | None:
    """(start, stop) rows of ``...`` or a step-1 slice; None for any other selection."""
    if selection is Ellipsis:
        return 0, n_rows
    if isinstance(selection, slice) and selection.step in (None, 1):
        start, stop, _ = selection.indices(n_rows)
        return start, max(start, stop)
    return None


def _walk_files(folder: Path) -> Iterator[Path]:
    for path in folder.rglob("*"):
        if path.is_file():
            yield path


def open_store_file(path: Path, mode: str, backend: str | None = None) -> StoreFile:
    """Open (mode ``r``) or create (mode ``w``) a store file; the backend follows the suffix."""
    chosen = backend or backend_of(path)
    return Hdf5File(path, mode) if chosen == "hdf5" else ZarrFile(path, mode)
