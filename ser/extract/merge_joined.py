"""``ser cache merge --manifest JOINED``: per-corpus stores merged into one store over a manifest joining the
corpora. The store mechanics (checksums, settings, disjoint ids, assembly) are
[`merge_stores`][ser.cache.merge.merge_stores]'s; this module checks the stored rows against the joined manifest
and fingerprints them under it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ser.cache.format import CacheError
from ser.cache.merge import merge_stores
from ser.cache.reader import CacheReader, listing
from ser.manifests.fingerprints import row_fingerprints, store_scheme
from ser.manifests.schema import Manifest, ManifestHeader, Utterance, file_sha256, read_manifest


def _unchanged_rows(
    joined: Manifest, rows: Sequence[Utterance], stored: Mapping[str, str], scheme: str | None, modality: str | None
) -> set[str]:
    """Ids among ``rows`` (joined-manifest rows) whose ``stored`` fingerprint is that of the joined row.

    A store extracted from a corpus manifest fingerprinted each row with its audio path as written there
    (relative to that manifest's root) and the audio file's identity; the joined manifest writes the same file as
    an absolute path. So each row is compared as written, then with its path written relative to each folder
    above the file (one, two, ... trailing parts): a row matches when one of them gives the stored fingerprint,
    which the content of the same file (and the same segment) must reproduce."""
    matched: set[str] = set()
    fingerprints = row_fingerprints(joined, rows, modality=modality, scheme=scheme)
    matched.update(uid for uid, fp in fingerprints.items() if stored[uid] == fp)
    pending = [u for u in rows if u.id not in matched]
    depth = 1
    while pending:
        groups: dict[Path, list[Utterance]] = {}
        for row in pending:
            path = joined.audio_path(row)
            if path is not None and depth < len(path.parts):
                relative = Path(*path.parts[-depth:]).as_posix()
                groups.setdefault(Path(*path.parts[:-depth]), []).append(dataclasses.replace(row, audio=relative))
        if not groups:
            break
        for root, group in groups.items():
            at_root = Manifest(ManifestHeader(corpus=joined.header.corpus, root=str(root)), group)
            fingerprints = row_fingerprints(at_root, group, modality=modality, scheme=scheme)
            matched.update(uid for uid, fp in fingerprints.items() if stored[uid] == fp)
        pending = [u for u in pending if u.id not in matched]
        depth += 1
    return matched


def joined_fingerprints(joined: Manifest, reader: CacheReader) -> list[str]:
    """The fingerprints of ``reader``'s rows under ``joined``, one per row, after checking that every stored row
    is a row of ``joined`` (an augmented copy: its source row is) made from the same audio file content, segment
    and text as at extraction. Refused with a [`CacheError`][ser.cache.format.CacheError] naming the store, the
    rows and the fix."""
    by_id = joined.by_id()
    name = joined.path or "the joined manifest"
    recorded = (reader.attrs.get("manifest") or {}).get("path") or "its manifest"
    absent = [uid for uid in reader.ids if uid not in by_id and reader.links.get(uid) not in by_id]
    if absent:
        raise CacheError(
            f"{reader.path}: {len(absent)} stored rows are not rows of {name}: {listing(absent)}; join the "
            f"manifest the store was extracted from ({recorded}) into it, or merge without this store"
        )
    scheme, modality = store_scheme(reader.attrs)
    rows = [by_id[uid] for uid in reader.ids if uid in by_id]
    stored = {row.id: reader.fingerprints[reader.index[row.id]] for row in rows}
    unchanged = _unchanged_rows(joined, rows, stored, scheme, modality)
    changed = [row.id for row in rows if row.id not in unchanged]
    if changed:
        raise CacheError(
            f"{reader.path}: {len(changed)} rows of {name} are not what the store was extracted from (the audio "
            f"file's content, the segment or the text differ, or the row names another file): {listing(changed)}; "
            f"re-extract the store from its corpus manifest ({recorded}), then merge again"
        )
    fresh = (
        row_fingerprints(joined, rows, modality=modality, scheme=scheme)
        if scheme is not None
        else {row.id: row.fingerprint() for row in rows}
    )
    return [fresh.get(uid, reader.fingerprints[i]) for i, uid in enumerate(reader.ids)]


def merge_over_manifest(
    stores: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    manifest: str | os.PathLike[str],
    *,
    compression: str | None = None,
) -> Path:
    """Merge ``stores`` (one per corpus, possibly from different manifests) into ``out``, tied to the joined
    ``manifest``: see [`merge_stores`][ser.cache.merge.merge_stores] and
    [`joined_fingerprints`][ser.extract.merge_joined.joined_fingerprints] for what is refused."""
    path = Path(manifest)
    joined = read_manifest(path)
    record = {
        "path": str(path.resolve()),
        "sha256": file_sha256(path),
        "n_items": len(joined),
        "corpus": joined.header.corpus,
    }
    return merge_stores(
        stores,
        out,
        compression=compression,
        manifest=record,
        check_rows=lambda reader: joined_fingerprints(joined, reader),
    )
