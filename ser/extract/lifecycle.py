"""The life cycle of a run's store: resumed while partial, extended while finished but lacking rows,
reported as complete otherwise.

A finished store is brought up to date with the manifest (new rows, changed rows, rejected rows with
``retry_rejected``, damaged rows with ``repair``) instead of being taken as complete: it is set
aside and a new partial store is seeded from it (see [`ser.extract.update`][ser.extract.update]). Rejections of a
resumed partial store can only be retried once that store is finished, so such a run takes a
second pass, which extends the store it just finished.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ser.cache.format import set_aside_path
from ser.cache.reader import CacheReader
from ser.cache.writer import remove_stale_partial
from ser.extract.augment import Plan
from ser.extract.base import Extractor, ExtractorError
from ser.extract.fill import fill_store
from ser.extract.run_options import RunOptions, RunReport, rejects_path, shard_output, write_rejects
from ser.extract.store_config import check_same_config, fingerprint_scheme, store_attrs
from ser.extract.update import Pending, find_pending, rows_to_repair, store_attrs_of
from ser.manifests.fingerprints import row_fingerprints
from ser.manifests.schema import Manifest, Utterance

logger = logging.getLogger(__name__)


def run_passes(
    manifest: Manifest,
    rows: list[Utterance],
    extractor: Extractor,
    output: Path,
    options: RunOptions,
    retry: Collection[str],
    plan: Plan,
) -> RunReport:
    """Finish or extend the store of ``rows`` (rejected ids in ``retry`` are tried again), in as many
    passes as the retried rejections of a resumed partial store need. The report is the last pass's,
    with the rows, seconds and audio seconds of every pass and the resumed rows of the first."""
    previous: RunReport | None = None
    while True:
        report, retry = _one_pass(manifest, rows, extractor, output, options, retry, plan)
        if previous is not None:
            report.extracted += previous.extracted
            report.seconds += previous.seconds
            report.audio_seconds += previous.audio_seconds
            report.resumed = previous.resumed
        if not retry:
            return report
        previous = report


def _one_pass(
    manifest: Manifest,
    rows: list[Utterance],
    extractor: Extractor,
    output: Path,
    options: RunOptions,
    retry: Collection[str],
    plan: Plan,
) -> tuple[RunReport, set[str]]:
    """Finish or extend the store of ``rows`` once; returns the report and the rejected ids of a resumed
    partial store that are in ``retry`` (for the next pass, once the store is finished)."""
    seq_layers = extractor.spec.resolve_seq(options.seq)
    out = shard_output(output, options.shard)
    aside = set_aside_path(out)
    report = RunReport(output=out, rejects_file=rejects_path(out))
    layout, attrs = store_attrs(extractor, seq_layers, manifest, options.shard, options)
    scheme = fingerprint_scheme(out, output, aside=aside)
    if scheme is not None:
        attrs["fingerprint_scheme"] = scheme
    expected = row_fingerprints(manifest, rows, modality=extractor.spec.modality, scheme=scheme)
    if aside.exists() and out.exists():
        raise ExtractorError(
            f"{aside} is left over from an interrupted extension of {out}, but {out} exists "
            f"too; delete {aside} if {out} is the store to keep, then run again"
        )
    if aside.exists():
        report.extended = "an interrupted extension, resumed"
    else:
        merged = output  # a shard's work is also done when the merged store already exists
        finished = next((path for path in dict.fromkeys([out, merged]) if path.exists()), None)
        if finished is not None:
            check_same_config(finished, attrs)
            remove_stale_partial(finished)
            redo = rows_to_repair(finished, expected) if options.repair else set()
            pending = find_pending(finished, expected, retry=retry, redo=redo)
            if pending.nothing_to_do:
                return _already_complete(report, finished, pending), set()
            _set_aside(finished, out, aside, pending, options.shard)
            report.extended = pending.describe()
    if aside.exists():
        attrs = _with_extended_from(attrs, aside)
    earlier = fill_store(
        manifest,
        rows,
        extractor,
        out,
        layout,
        attrs,
        seq_layers,
        options,
        report,
        aside=aside if aside.exists() else None,
        retry=retry,
        expected=expected,
        plan=plan,
    )
    return report, earlier


def _set_aside(finished: Path, out: Path, aside: Path, pending: Pending, shard: tuple[int, int] | None) -> None:
    """Move the finished store ``out`` to ``aside`` to extend it by ``pending`` (a merged store is refused)."""
    if finished != out:
        raise ExtractorError(
            f"{finished} (merged from shards) lacks {pending.describe()} of shard "
            f"{shard[0] if shard else 0}; a merged store cannot be extended "
            "shard by shard. Run the same `ser extract` without --shard or torchrun (one "
            "process) to extend it, or delete it and extract the shards again"
        )
    logger.info("%s: extending the finished store (%s)", out, pending.describe())
    try:
        os.replace(out, aside)
    except FileNotFoundError:  # another run moved it aside a moment ago
        raise ExtractorError(
            f"another `ser extract` started extending {out} at the same moment (it moved the "
            f"store to {aside.name}); wait for it to finish, then run again if rows are "
            "still missing"
        ) from None


def _with_extended_from(attrs: dict[str, Any], aside: Path) -> dict[str, Any]:
    """``attrs`` with the provenance of the store set aside at ``aside``, which the new store extends."""
    previous = store_attrs_of(aside)
    return {
        **attrs,
        "extended_from": {
            key: previous.get(key) for key in ("manifest", "created", "finalized", "n_items", "extended_from")
        },
    }


def _already_complete(report: RunReport, finished: Path, pending: Pending) -> RunReport:
    """``report`` for the store ``finished``, which lacks nothing (its rejects table written if missing)."""
    report.output, report.already_complete = finished, True
    report.rejected, report.stored = dict(pending.rejected), pending.stored
    report.rejects_file = rejects_path(finished)
    if report.rejected and not report.rejects_file.exists():
        with CacheReader(finished) as reader:
            write_rejects(report.rejects_file, reader.rejected, reader.notes)
    return report
