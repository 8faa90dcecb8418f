"""The extraction runner: manifest rows in, a finished cache store out
([`run_extraction`][ser.extract.runner.run_extraction]).

* Batches are duration-bucketed, longest first ([`ser.extract.plan`][ser.extract.plan]).
* Decoding and resampling run in DataLoader worker processes, ahead of the model
  ([`ser.extract.decode`][ser.extract.decode]); rows go through [`ser.extract.sink`][ser.extract.sink] into the
  crash-safe [`CacheWriter`][ser.cache.writer.CacheWriter], flushed on schedule
  ([`ser.extract.fill`][ser.extract.fill]): memory does not grow with the corpus, a killed run loses at most the last
  interval, and re-running the same command resumes.
* A finished store is brought up to date with its manifest (new rows, changed rows, rejected rows
  with ``retry_rejected``) instead of being taken as complete ([`ser.extract.lifecycle`][ser.extract.lifecycle]).
* Bad inputs never stop the run: unreadable, empty, silent or absurdly long audio, any error while
  decoding one row, missing text, NaN features, and an item whose forward pass fails on its own
  are rejected with the reason (kept in the store and written to ``<store>.rejects.tsv``). Only a
  run of consecutive failures (a broken model or device) aborts.
* ``shard=(i, n)`` extracts rows ``i, i+n, i+2n, ...`` of the manifest into its own store.
* Waveform augmentation (``augment``) appends augmented copies of rows; a test-time corruption
  (``corrupt``) transforms every row ([`ser.extract.augment`][ser.extract.augment]).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ser.cache.format import check_compression
from ser.extract.augment import AugmentError, Plan, augmented_rows, corruption_plan
from ser.extract.base import Extractor, ExtractorError
from ser.extract.fill import ExtractionInterrupted
from ser.extract.lifecycle import run_passes
from ser.extract.run_options import RunOptions, RunReport
from ser.manifests.labels import choose_label_set
from ser.manifests.schema import Manifest, Utterance, read_manifest
from ser.threads import cap_torch_threads

__all__ = [
    # the extraction API in one place: the entry point, its options, its report and its one stop signal
    "ExtractionInterrupted",
    "RunOptions",
    "RunReport",
    "run_extraction",
]

logger = logging.getLogger(__name__)


def run_extraction(
    manifest_path: str | os.PathLike[str],
    extractor: Extractor,
    output: str | os.PathLike[str],
    options: RunOptions | None = None,
) -> RunReport:
    """Extract every (remaining) row of a manifest into ``output``; see the module docstring."""
    options = options or RunOptions()
    options.check()
    check_compression(Path(output), options.compression)  # refused now, not after hours of extraction
    manifest = read_manifest(manifest_path)
    if not manifest.utterances:
        raise ExtractorError(
            f"{manifest_path}: the manifest holds no rows; rebuild it with `ser manifest CORPUS ROOT "
            "-o FILE` and check that ROOT is the corpus folder"
        )
    rows = [
        u
        for i, u in enumerate(manifest.utterances)
        if options.shard is None or i % options.shard[1] == options.shard[0]
    ]
    rows, plan = _waveform_plan(manifest, rows, extractor, options)
    retry = {u.id for u in rows} if options.retry_rejected else set()
    cap_torch_threads()
    return run_passes(manifest, rows, extractor, Path(output), options, retry, plan)


def _waveform_plan(
    manifest: Manifest, rows: list[Utterance], extractor: Extractor, options: RunOptions
) -> tuple[list[Utterance], Plan]:
    """The rows to extract (augmented copies appended) and which of them are transformed, how."""
    if options.augment is None and options.corrupt is None:
        return rows, {}
    if extractor.spec.modality != "audio":
        raise AugmentError(
            f"--augment and --corrupt transform audio; {extractor.spec.name} reads {extractor.spec.modality}"
        )
    if options.augment is not None and options.corrupt is not None:
        raise AugmentError("--augment makes training copies and --corrupt evaluation copies: use one per store")
    if options.corrupt is not None:
        return rows, corruption_plan(rows, options.corrupt)

    assert options.augment is not None
    label_set = choose_label_set(manifest, options.augment.label_set).label_set
    class_of = label_set.class_of if label_set is not None else (lambda row: row.label)
    known = label_set.classes if label_set is not None else sorted({u.label for u in manifest.utterances if u.label})
    name = label_set.name if label_set is not None else None
    extra, plan = augmented_rows(
        rows, options.augment, class_of, splits=options.augment_splits, classes=known, label_set=name
    )
    logger.info("augmentation: %d extra rows from %d source rows", len(extra), len(rows))
    return rows + extra, plan
