"""Crash-safe, resumable store writer.

While extraction runs, rows accumulate in ``<store>.partial/``: a ``meta.json`` (layout and
provenance), a ``lock`` file, and numbered segments. A segment is a folder of ``.npy`` arrays
plus ``rows.json``, written under a temporary name, fsynced and renamed into place, so it is
either complete or absent: a writer killed at any instant (even SIGKILL) loses at most the rows
it had not flushed yet. Re-opening the same store resumes: finished and rejected ids are known and
skipped by the caller. ``finalize`` streams all segments into the final ``.h5`` / ``.zarr`` store
(temp name + atomic rename) and removes the partial folder.

One writer per store: a second one is refused through an OS lock (``flock``) that dies with its
process; processes forked while it is held (decoding workers) close their copy at once, so a
worker outliving a killed run cannot keep the store locked. Parallel extraction
writes one store per shard and merges them (``ser cache merge``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser.atomic_files import atomic_path, write_json
from ser.cache.assemble import (
    DEFAULT_POOLED_CHUNK_BYTES,
    DEFAULT_SEQ_CHUNK_BYTES,
    assemble_store,
)
from ser.cache.format import FORMAT_NAME, FORMAT_VERSION, CacheError, StoreLayout, backend_of, partial_path
from ser.errors import write_failure

logger = logging.getLogger(__name__)

SEGMENT_PREFIX = "seg-"
NO_LOCK_ERRNOS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})
"""``flock`` errors that mean the file system cannot lock at all (some NFS and FUSE mounts)."""
DEFAULT_SEGMENT_BYTES = 64 << 20


@dataclass
class Segment:
    """A flushed run of rows in the partial folder (a [`RowSource`][ser.cache.assemble.RowSource])."""

    path: Path
    """The segment's folder."""
    ids: list[str]
    """Row ids, in the order of the arrays."""
    fingerprints: list[str]
    """Each row's fingerprint (what its features were computed from)."""
    lengths: np.ndarray
    """``(n_rows,)`` int64 frames of each row's sequences (0 without sequences)."""
    rejected: dict[str, str]
    """Row id -> why it was rejected."""
    notes: dict[str, str]
    """Row id -> a remark on a stored row."""

    @classmethod
    def load(cls, path: Path) -> Segment:
        """The segment in folder ``path``, as its ``rows.json`` and array files describe it (unchecked)."""
        record = json.loads((path / "rows.json").read_text(encoding="utf-8"))
        return cls(
            path=path,
            ids=record["ids"],
            fingerprints=record["fingerprints"],
            lengths=np.asarray(record["lengths"], dtype=np.int64),
            rejected=record["rejected"],
            notes=record.get("notes", {}),
        )

    @classmethod
    def load_checked(cls, path: Path, layout: StoreLayout) -> Segment:
        """[`load`][ser.cache.writer.Segment.load], then every array's header against the row count and the layout: a
        damaged segment (truncated file, bad ``rows.json``) is found when the store is opened, not at the end."""
        try:
            segment = cls.load(path)
            n_rows, n_frames = len(segment.ids), int(segment.lengths.sum())
            if len(segment.fingerprints) != n_rows or len(segment.lengths) != n_rows:
                raise ValueError("rows.json lists different numbers of ids, fingerprints and lengths")
            for stat, (n_layers, dim) in layout.pooled.items():
                _check_array(path / f"pooled-{stat}.npy", (n_rows, n_layers, dim))
            for layer, dim in layout.seq.items():
                _check_array(path / f"seq-{layer}.npy", (n_frames, dim))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CacheError(
                f"{path} is damaged ({type(err).__name__}: {err}); delete that folder (its rows are "
                "extracted again) and run the same command again"
            ) from err
        return segment

    def pooled_rows(self, stat: str, start: int, stop: int) -> np.ndarray:
        pooled: np.ndarray = np.load(self.path / f"pooled-{stat}.npy", mmap_mode="r")
        return pooled[start:stop]

    def seq_frames(self, layer: str, start: int, stop: int) -> np.ndarray:
        frames: np.ndarray = np.load(self.path / f"seq-{layer}.npy", mmap_mode="r")
        return frames[start:stop]


def _check_array(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse an ``.npy`` file whose shape differs from ``shape`` or whose data are cut short."""
    array = np.load(path, mmap_mode="r")  # reads the header; a truncated file fails to map
    if array.shape != shape:
        raise ValueError(f"{path.name} holds {array.shape}, expected {shape}")


_HELD_LOCKS: set[int] = set()
"""File descriptors of the store locks this process holds."""


def _release(fd: int) -> None:
    _HELD_LOCKS.discard(fd)
    os.close(fd)


def _drop_inherited_locks() -> None:
    """In a freshly forked child: close the copies of the parent's lock descriptors, so the lock is held
    by the parent's descriptor alone and goes away with the parent."""
    for fd in list(_HELD_LOCKS):
        with contextlib.suppress(OSError):  # EBADF: the child closed it already; nothing else can fail here
            os.close(fd)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


class CacheWriter:
    """Append rows to a store; resume after a crash; finalize into the complete store.

    Use [`open`][ser.cache.writer.CacheWriter.open] (or the class as a context manager after it) rather than the
    constructor.
    """

    def __init__(
        self,
        path: Path,
        partial: Path,
        layout: StoreLayout,
        attrs: dict[str, Any],
        lock_fd: int,
        segments: list[Segment],
        segment_bytes: int,
    ) -> None:
        self.path = path
        self.partial = partial
        self.layout = layout
        self.attrs = attrs
        self._lock_fd: int | None = lock_fd
        self._segments = segments
        self._segment_bytes = segment_bytes
        self._done: set[str] = {i for s in segments for i in s.ids}
        self.rejected: dict[str, str] = {k: v for s in segments for k, v in s.rejected.items()}
        self.notes: dict[str, str] = {k: v for s in segments for k, v in s.notes.items()}
        self._buffer_reset()

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        layout: StoreLayout,
        attrs: dict[str, Any],
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> CacheWriter:
        """Start a new store or resume the partial one at ``path``.

        ``attrs`` is the provenance (JSON-serialisable dict per key); ``attrs["extractor"]
        ["config_hash"]`` must match the partial store's when resuming, so a changed config never
        mixes into an old store.
        """
        final = Path(path)
        backend_of(final)
        if final.exists():
            raise CacheError(f"{final} is already complete; delete it to extract again, or write to another path")
        partial = partial_path(final)
        partial.mkdir(parents=True, exist_ok=True)
        lock_fd = cls._lock(partial)
        try:
            cls._check_or_write_meta(partial, layout, attrs)
            segments = cls._load_segments(partial, layout)
        except BaseException:
            _release(lock_fd)
            raise
        writer = cls(final, partial, layout, attrs, lock_fd, segments, segment_bytes)
        if segments:
            logger.info(
                "%s: resuming, %d rows and %d rejected already written", final, len(writer._done), len(writer.rejected)
            )
        return writer

    @staticmethod
    def _lock(partial: Path) -> int:
        lock_path = partial / "lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                holder = lock_path.read_text(encoding="utf-8").strip() or "another process"
                raise CacheError(
                    f"{partial} is being written by {holder}; only one writer per store. Wait for "
                    "it, or split the work with --shard i/N and `ser cache merge`"
                ) from err
            if err.errno in NO_LOCK_ERRNOS:
                raise CacheError(
                    f"{partial}: the file system holding it has no file locks (flock: "
                    f"{os.strerror(err.errno)}), which the writer needs to keep two runs from mixing "
                    "rows. Write the store to a local disk and copy it afterwards, or extract shards "
                    "(--shard i/N) to local disks and join them with `ser cache merge`"
                ) from err
            raise
        previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if previous and previous != f"pid {os.getpid()}":
            logger.info(
                "%s: taking over from %s, which is no longer running (its rows so far are kept)", partial, previous
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        _HELD_LOCKS.add(fd)
        return fd

    @staticmethod
    def _check_or_write_meta(partial: Path, layout: StoreLayout, attrs: dict[str, Any]) -> None:
        meta_path = partial / "meta.json"
        new_hash = attrs.get("extractor", {}).get("config_hash")
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                if not isinstance(meta, dict) or "layout" not in meta:
                    raise ValueError("it holds no layout")
            except (OSError, ValueError, KeyError, AttributeError) as err:
                raise CacheError(f"{meta_path} is damaged ({err}); delete {partial} to start over") from err
            if meta.get("format_version") != FORMAT_VERSION:
                raise CacheError(
                    f"{partial} was written by cache format {meta.get('format_version')}; "
                    f"this ser writes {FORMAT_VERSION}. Delete the partial folder to start over"
                )
            old_hash = meta.get("attrs", {}).get("extractor", {}).get("config_hash")
            if old_hash != new_hash or StoreLayout.from_json(meta["layout"]) != layout:
                raise CacheError(
                    f"{partial} was started with another extractor config (hash {old_hash}, now "
                    f"{new_hash}) or layout; the rows would not mix. Delete {partial} to start "
                    "over, or write to another output path"
                )
            return
        write_json(
            meta_path,
            {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "status": "partial",
                "layout": layout.to_json(),
                "attrs": attrs,
            },
        )

    @staticmethod
    def _load_segments(partial: Path, layout: StoreLayout) -> list[Segment]:
        for leftover in partial.glob(f"{SEGMENT_PREFIX}*.tmp"):
            shutil.rmtree(leftover)  # an interrupted flush: its rows were never acknowledged
        return [Segment.load_checked(p, layout) for p in sorted(partial.glob(f"{SEGMENT_PREFIX}*")) if p.is_dir()]

    # ---------------------------------------------------------------- appending

    def _buffer_reset(self) -> None:
        self._ids: list[str] = []
        self._fingerprints: list[str] = []
        self._pooled: dict[str, list[np.ndarray]] = {k: [] for k in self.layout.pooled}
        self._seq: dict[str, list[np.ndarray]] = {k: [] for k in self.layout.seq}
        self._lengths: list[int] = []
        self._rejected_buffer: dict[str, str] = {}
        self._notes_buffer: dict[str, str] = {}
        self._buffered_bytes = 0

    @property
    def done_ids(self) -> set[str]:
        """Ids already written or rejected (flushed or buffered): skip these when resuming."""
        return self._done | set(self.rejected)

    def __len__(self) -> int:
        return len(self._done)

    def add(
        self,
        uid: str,
        fingerprint: str,
        pooled: dict[str, np.ndarray],
        seq: dict[str, np.ndarray] | None = None,
        note: str | None = None,
    ) -> bool:
        """Buffer one row. ``pooled[stat]`` is (L, D); ``seq[layer]`` is (T, D) with one T for all layers.

        ``note`` is kept with the row (e.g. "padded to the minimum length"). A row with NaN or Inf
        values is rejected (recorded with the reason) instead of stored; returns False then.
        """
        seq = seq or {}
        if uid in self._done or uid in self.rejected:
            raise CacheError(f"{self.path}: id {uid!r} was already written")
        if set(pooled) != set(self.layout.pooled) or set(seq) != set(self.layout.seq):
            raise CacheError(
                f"{self.path}: row {uid!r} has pooled {sorted(pooled)} / seq {sorted(seq)}, the store "
                f"expects {sorted(self.layout.pooled)} / {sorted(self.layout.seq)}"
            )
        for stat, array in pooled.items():
            if array.shape != self.layout.pooled[stat]:
                raise CacheError(
                    f"{self.path}: row {uid!r} pooled {stat} has shape {array.shape}, expected "
                    f"{self.layout.pooled[stat]}"
                )
        lengths = {array.shape[0] for array in seq.values()}
        if len(lengths) > 1:
            raise CacheError(f"{self.path}: row {uid!r} sequences have different lengths {sorted(lengths)}")
        for layer, array in seq.items():
            if array.ndim != 2 or array.shape[1] != self.layout.seq[layer]:
                raise CacheError(
                    f"{self.path}: row {uid!r} seq {layer} has shape {array.shape}, expected "
                    f"(T, {self.layout.seq[layer]})"
                )
        # Cast first, then check: a finite float32 value can overflow float16 to Inf.
        stored_pooled = {k: np.asarray(a, dtype=self.layout.pooled_dtype) for k, a in pooled.items()}
        stored_seq = {k: np.asarray(a, dtype=self.layout.seq_dtype) for k, a in seq.items()}
        for name, array in [*stored_pooled.items(), *stored_seq.items()]:
            if not np.isfinite(array).all():
                self.reject(uid, f"non-finite values in {name}")
                return False
        self._ids.append(uid)
        self._fingerprints.append(fingerprint)
        self._done.add(uid)
        for stat, array in stored_pooled.items():
            self._pooled[stat].append(array)
        for layer, array in stored_seq.items():
            self._seq[layer].append(array)
        self._lengths.append(lengths.pop() if lengths else 0)
        if note:
            self.notes[uid] = note
            self._notes_buffer[uid] = note
        self._buffered_bytes += sum(a.nbytes for a in [*stored_pooled.values(), *stored_seq.values()])
        if self._buffered_bytes >= self._segment_bytes:
            self.flush()
        return True

    def reject(self, uid: str, reason: str) -> None:
        """Record that ``uid`` could not be extracted, and why (kept in the store's rejected list)."""
        if uid in self._done:
            raise CacheError(f"{self.path}: id {uid!r} was already written; it cannot also be rejected")
        self.rejected[uid] = reason
        self._rejected_buffer[uid] = reason

    def flush(self) -> None:
        """Write buffered rows as one new segment (atomic). No-op when nothing is buffered."""
        if not self._ids and not self._rejected_buffer:
            return
        # A flush can be cut short by an exception raised from a signal handler (the DataLoader's
        # SIGCHLD handler when a decoding worker dies) at any point; the flush that follows then
        # finishes the interrupted one instead of writing the buffered rows a second time.
        if self._segments and self._holds_buffer(self._segments[-1]):  # stored and listed, not yet reset
            self._buffer_reset()
            return
        index = len(self._segments)
        final = self.partial / f"{SEGMENT_PREFIX}{index:06d}"
        if final.is_dir():  # renamed into place, not yet listed
            segment = Segment.load(final)
            if not self._holds_buffer(segment):
                raise CacheError(
                    f"{final} holds rows this writer did not buffer; delete that folder (its rows are "
                    "extracted again) and run the same command again"
                )
            self._segments.append(segment)
            self._buffer_reset()
            return
        # Written under <segment>.tmp (cleared first: a flush that failed half-way left it, never part of
        # the store) and renamed into place; a failed write removes it, the rows stay buffered and the
        # segments already written are intact.
        tmp = final.with_name(final.name + ".tmp")
        try:
            with atomic_path(final, temp=tmp) as folder:
                self._write_segment(folder)
        except OSError as err:
            raise CacheError(
                write_failure(
                    err, tmp, f"the {len(self._done) - len(self._ids)} rows flushed before are kept in {self.partial}"
                )
            ) from err
        self._segments.append(Segment.load(final))
        self._buffer_reset()

    def _holds_buffer(self, segment: Segment) -> bool:
        """Whether ``segment`` stores exactly the buffered rows and rejections."""
        return segment.ids == self._ids and segment.rejected == self._rejected_buffer

    def _write_segment(self, tmp: Path) -> None:
        """The buffered rows as a segment folder at ``tmp`` (``.npy`` arrays and ``rows.json``)."""
        tmp.mkdir()
        for stat, (n_layers, dim) in self.layout.pooled.items():
            rows = self._pooled[stat]
            array = np.stack(rows) if rows else np.zeros((0, n_layers, dim), dtype=self.layout.pooled_dtype)
            np.save(tmp / f"pooled-{stat}.npy", array)
        for layer, dim in self.layout.seq.items():
            frames = self._seq[layer]
            array = np.concatenate(frames) if frames else np.zeros((0, dim), dtype=self.layout.seq_dtype)
            np.save(tmp / f"seq-{layer}.npy", array)
        (tmp / "rows.json").write_text(
            json.dumps(
                {
                    "ids": self._ids,
                    "fingerprints": self._fingerprints,
                    "lengths": self._lengths,
                    "rejected": self._rejected_buffer,
                    "notes": self._notes_buffer,
                }
            ),
            encoding="utf-8",
        )

    # ---------------------------------------------------------------- finishing

    def finalize(
        self,
        *,
        compression: str | None = None,
        pooled_chunk_bytes: int = DEFAULT_POOLED_CHUNK_BYTES,
        seq_chunk_bytes: int = DEFAULT_SEQ_CHUNK_BYTES,
        links: dict[str, str] | None = None,
    ) -> Path:
        """Flush, write the complete store (atomic rename) and remove the partial folder; ``links``: augmented
        copy id -> source id."""
        self.flush()
        try:
            assemble_store(
                self.path,
                layout=self.layout,
                attrs=self.attrs,
                sources=self._segments,
                rejected=self.rejected,
                notes=self.notes,
                compression=compression,
                pooled_chunk_bytes=pooled_chunk_bytes,
                seq_chunk_bytes=seq_chunk_bytes,
                links=links,
            )
        except OSError as err:
            raise CacheError(
                write_failure(
                    err,
                    self.path,
                    f"all {len(self._done)} rows are kept in {self.partial} "
                    "and the store is assembled from them on the re-run",
                )
            ) from err
        self.close()
        shutil.rmtree(self.partial)
        return self.path

    def close(self) -> None:
        """Flush and release the lock without finalizing (the partial store can be resumed)."""
        if self._lock_fd is None:
            return
        try:
            if sys.exc_info()[0] is None:
                self.flush()
            else:  # closing because something failed (e.g. the disk is full): do not fail a second time
                try:
                    self.flush()
                except CacheError as err:
                    logger.warning("%s", err)
        finally:
            _release(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_stale_partial(path: str | os.PathLike[str]) -> bool:
    """Remove ``<store>.partial/`` left behind when a writer died between the final rename and the
    clean-up. Only done when the finished store exists; returns whether something was removed."""
    final = Path(path)
    partial = partial_path(final)
    if not final.exists() or not partial.is_dir():
        return False
    fd = CacheWriter._lock(partial)
    try:
        shutil.rmtree(partial)
    finally:
        _release(fd)
    return True


def partial_summary(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Rows, rejects and segments of an unfinished store at ``path`` (None when there is none)."""
    partial = partial_path(Path(path))
    meta_path = partial / "meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    segments = [
        Segment.load(p)
        for p in sorted(partial.glob(f"{SEGMENT_PREFIX}*"))
        if p.is_dir() and not p.name.endswith(".tmp")
    ]
    return {
        "partial": str(partial),
        "segments": len(segments),
        "rows": sum(len(s.ids) for s in segments),
        "rejected": sum(len(s.rejected) for s in segments),
        "attrs": meta.get("attrs", {}),
        "layout": meta.get("layout"),
    }
