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
        chunks = _safe_chunks(shape, chunks) if all(shape) else None
        self._file.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks,
                                  compression=compression if chunks else None)

    def write(self, name: str, start: int, data: np.ndarray) -> None:
        if len(data):
            self._file[name][start:start + len(data)] = data

    def read(self, name: str, selection: Any = ...) -> np.ndarray:
        dataset = self._file[name]
        if dataset.size == 0:
            return np.empty(dataset.shape, dtype=dataset.dtype)
        return dataset[selection]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._file[name].shape)

    def dtype(self, name: str) -> np.dtype:
        return self._file[name].dtype

    def has(self, name: str) -> bool:
        return name in self._file

    def nbytes_stored(self) -> int:
        return os.path.getsize(self.path)

    def close(self) -> None:
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
        return np.asarray(self._group[name][selection])

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
