"""The two storage backends behind one small interface: HDF5 (h5py) and Zarr (v3).

Only what the store needs: create fixed-shape arrays, write row ranges, read selections, JSON
string attributes. Arrays are created with their final shape (the writer knows all sizes when it
finalizes), so nothing is ever resized.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ser.cache.format import CacheError, backend_of


class StoreFile(Protocol):
    """A group of named arrays plus string attributes."""

    attrs: MutableMapping[str, Any]

    def create(self, name: str, shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...] | None,
               compression: str | None) -> None: ...
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

        self._maps: dict[str, np.ndarray] = {}
        try:
            self._file = h5py.File(path, mode)
        except OSError as err:
            hint = (" On a network file system set HDF5_USE_FILE_LOCKING=FALSE."
                    if "lock" in str(err).lower() else "")
            raise CacheError(f"{path}: cannot open as HDF5 ({err}).{hint}") from err
        self.path = path
        self.attrs = self._file.attrs

    def create(self, name: str, shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...] | None,
               compression: str | None) -> None:
        # Uncompressed arrays are stored contiguously: their final shape is known, and a contiguous
        # dataset can be memory-mapped for reads at numpy speed. Chunks only serve compression.
        chunks = _safe_chunks(shape, chunks) if compression and all(shape) else None
        self._file.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks,
                                  compression=compression if chunks else None)

    def write(self, name: str, start: int, data: np.ndarray) -> None:
        if len(data):
            self._file[name][start:start + len(data)] = data

    def read(self, name: str, selection: Any = ...) -> np.ndarray:
        if selection is not Ellipsis:  # small reads: memory map (no per-call HDF5 overhead)
            mapped = self._memory_map(name)
            if mapped is not None:
                return np.array(mapped[selection])
        dataset = self._file[name]
        if dataset.size == 0:
            return np.empty(dataset.shape, dtype=dataset.dtype)
        return dataset[selection]

    def _memory_map(self, name: str) -> np.ndarray | None:
        """A read-only numpy memory map of a contiguous dataset (None when it is chunked or empty)."""
        if name in self._maps:
            return self._maps[name]
        mapped = None
        if self._file.mode == "r":
            dataset = self._file[name]
            offset = dataset.id.get_offset()
            if dataset.chunks is None and dataset.size and offset is not None:
                mapped = np.memmap(self.path, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)
        self._maps[name] = mapped
        return mapped

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._file[name].shape)

    def dtype(self, name: str) -> np.dtype:
        return self._file[name].dtype

    def has(self, name: str) -> bool:
        return name in self._file

    def nbytes_stored(self) -> int:
        return os.path.getsize(self.path)

    def close(self) -> None:
        self._maps.clear()
        self._file.close()


class ZarrFile:
    """A Zarr v3 group in a folder."""

    _CODECS: ClassVar[dict[str, str]] = {"zstd": "ZstdCodec", "gzip": "GzipCodec", "blosc": "BloscCodec"}

    def __init__(self, path: Path, mode: str) -> None:
        try:
            import zarr
        except ImportError:
            raise CacheError(f"{path}: Zarr stores need the zarr package (pip install 'serkit[zarr]')") from None
        try:
            self._group = zarr.open_group(store=str(path), mode={"a": "r+"}.get(mode, mode))
        except (FileNotFoundError, ValueError, KeyError) as err:
            raise CacheError(f"{path}: cannot open as a Zarr group ({err})") from err
        self._raw: dict[str, tuple[int, tuple[int, ...], np.dtype] | None] = {}
        self.path = path
        self.attrs = self._group.attrs

    def create(self, name: str, shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...] | None,
               compression: str | None) -> None:
        import zarr.codecs

        compressors = None
        if compression:
            if compression not in self._CODECS:
                raise CacheError(f"unknown Zarr compression {compression!r}; use one of {sorted(self._CODECS)}")
            compressors = [getattr(zarr.codecs, self._CODECS[compression])()]
        self._group.create_array(name, shape=shape, dtype=dtype,
                                 chunks=_safe_chunks(shape, chunks or shape) or (1,) * len(shape),
                                 compressors=compressors, fill_value=0)

    def write(self, name: str, start: int, data: np.ndarray) -> None:
        if len(data):
            self._group[name][start:start + len(data)] = data

    def read(self, name: str, selection: Any = ...) -> np.ndarray:
        layout = self._raw_layout(name)
        if layout is not None and (selection is Ellipsis or (isinstance(selection, slice) and selection.step is None)):
            return self._read_raw_rows(name, layout, selection)
        return np.asarray(self._group[name][selection])

    def _raw_layout(self, name: str) -> tuple[int, tuple[int, ...], np.dtype] | None:
        """(chunk rows, full shape, dtype) when chunks are plain little-endian bytes split along rows only.

        Such chunks (what this store writes when uncompressed) are raw C-order arrays under the
        spec's default chunk keys, so row ranges can be read straight from the chunk files, without
        the per-chunk overhead of the generic Zarr path. Anything else returns None (generic path).
        """
        if name in self._raw:
            return self._raw[name]
        from zarr.codecs import BytesCodec
        from zarr.core.chunk_grids import RegularChunkGrid
        from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

        array = self._group[name]
        meta = array.metadata
        layout = None
        dtype = np.dtype(array.dtype)
        codecs = getattr(meta, "codecs", ())
        if (len(codecs) == 1 and isinstance(codecs[0], BytesCodec)
                and (codecs[0].endian is None or codecs[0].endian.value == "little") and dtype.byteorder in "=<|"
                and isinstance(meta.chunk_key_encoding, DefaultChunkKeyEncoding)
                and meta.chunk_key_encoding.separator == "/" and isinstance(meta.chunk_grid, RegularChunkGrid)
                and tuple(meta.chunk_grid.chunk_shape[1:]) == tuple(array.shape[1:]) and array.size):
            layout = (int(meta.chunk_grid.chunk_shape[0]), tuple(array.shape), dtype)
        self._raw[name] = layout
        return layout

    def _read_raw_rows(self, name: str, layout: tuple[int, tuple[int, ...], np.dtype], selection: Any) -> np.ndarray:
        chunk_rows, shape, dtype = layout
        start, stop, _ = (slice(None) if selection is Ellipsis else selection).indices(shape[0])
        stop = max(start, stop)
        row_items = int(np.prod(shape[1:], dtype=np.int64))
        out = np.zeros((stop - start, *shape[1:]), dtype=dtype)
        flat = out.reshape(stop - start, row_items)
        zeros = "/".join("0" for _ in shape[1:])
        for chunk in range(start // chunk_rows, (stop - 1) // chunk_rows + 1 if stop > start else 0):
            first = max(start, chunk * chunk_rows)
            last = min(stop, (chunk + 1) * chunk_rows)
            key = f"c/{chunk}/{zeros}" if zeros else f"c/{chunk}"
            path = self.path / name / key
            if not path.exists():
                continue  # never written: fill value, already zero
            offset = (first - chunk * chunk_rows) * row_items * dtype.itemsize
            target = flat[first - start:last - start]
            with open(path, "rb") as chunk_file:
                chunk_file.seek(offset)
                if chunk_file.readinto(memoryview(target).cast("B")) != target.nbytes:
                    raise CacheError(f"{path}: chunk file is shorter than its array says; the store is damaged")
        return out

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._group[name].shape)

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self._group[name].dtype)

    def has(self, name: str) -> bool:
        return name in self._group

    def nbytes_stored(self) -> int:
        return sum(f.stat().st_size for f in _walk_files(self.path))

    def close(self) -> None:
        """Zarr writes through; nothing to flush."""


def _walk_files(folder: Path) -> Iterator[Path]:
    for path in folder.rglob("*"):
        if path.is_file():
            yield path


def open_store_file(path: Path, mode: str, backend: str | None = None) -> StoreFile:
    """Open (mode ``r``) or create (mode ``w``) a store file; the backend follows the suffix."""
    chosen = backend or backend_of(path)
    return Hdf5File(path, mode) if chosen == "hdf5" else ZarrFile(path, mode)
