"""Filling a store in one pass: open (or resume) its partial store, seed it from a finished store set
aside for extension, stream the remaining rows through the decoding workers into the sink, and
finalize it atomically.

Rows are flushed every ``flush_seconds`` (and ``segment_bytes``, ``flush_rows``): memory does not
grow with the corpus and a killed run loses at most the last interval. SIGINT / SIGTERM (between
batches) and a decoding worker's death flush what is done and end the pass with one line; the same
command resumes from the partial store.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ser.cache.format import StoreLayout, source_of
from ser.cache.writer import CacheWriter
from ser.extract.augment import Plan
from ser.extract.base import Extractor, ExtractorError
from ser.extract.decode import BatchDataset, Decoded, batch_loader
from ser.extract.plan import plan_extractor_batches
from ser.extract.run_options import RunOptions, RunReport, progress_rates, write_rejects
from ser.extract.sink import Sink
from ser.extract.update import remove_store, rows_to_repair, seed_from_store
from ser.manifests.schema import Manifest, Utterance
from ser.processes import StopRequest

logger = logging.getLogger(__name__)


class ExtractionInterrupted(Exception):  # noqa: N818 (a stop the user asked for, not a failure)
    """SIGINT / SIGTERM stopped an extraction between batches; everything extracted is kept."""


def fill_store(
    manifest: Manifest,
    rows: list[Utterance],
    extractor: Extractor,
    out: Path,
    layout: StoreLayout,
    attrs: dict[str, Any],
    seq_layers: Sequence[str],
    options: RunOptions,
    report: RunReport,
    *,
    aside: Path | None,
    retry: Collection[str],
    expected: dict[str, str],
    plan: Plan,
) -> set[str]:
    """Open (or resume) the partial store, seed it from ``aside`` if given, extract the rest, finalize.

    Returns the rejected ids of a resumed partial store that are in ``retry`` (to be tried again
    once this store is finished); empty otherwise.
    """
    spec = extractor.spec
    start_time = time.perf_counter()
    earlier: set[str] = set()
    redo = rows_to_repair(aside, expected) if aside is not None and options.repair else set()
    with CacheWriter.open(out, layout=layout, attrs=attrs, segment_bytes=options.segment_bytes) as writer:
        if aside is not None:
            seed_from_store(writer, aside, expected, retry=retry, redo=redo)
            writer.flush()
            remove_store(aside)
        elif retry:
            earlier = {uid for uid in writer.rejected if uid in retry}
        done = writer.done_ids
        report.resumed = len(done)
        todo = [u for u in rows if u.id not in done]
        batches = plan_extractor_batches(
            manifest, todo, spec, batch_seconds=options.batch_seconds, batch_items=options.batch_items
        )
        in_workers = spec.in_workers and options.num_workers > 0
        dataset = BatchDataset(
            manifest,
            todo,
            batches,
            spec.modality,
            spec.sample_rate,
            options.max_total_seconds,
            extractor=extractor if in_workers else None,
            seq_layers=seq_layers,
            plan=plan,
        )
        sink = Sink(writer, report, extractor, seq_layers, {u.id: expected[u.id] for u in todo})
        _stream(batch_loader(dataset, options.num_workers), writer, sink, options, len(todo), start_time)
        sink.close()
        report.rejected = {uid: reason for uid, reason in writer.rejected.items() if uid in expected}
        rejected_all = dict(writer.rejected)
        notes = dict(writer.notes)
        writer.finalize(
            compression=options.compression,
            links={u.id: source for u in rows if (source := source_of(u.id)) is not None},
        )
    report.seconds = time.perf_counter() - start_time
    if report.rejects_file is not None:
        write_rejects(report.rejects_file, rejected_all, notes)
    return earlier


def _stream(
    batches: Iterable[list[Decoded]],
    writer: CacheWriter,
    sink: Sink,
    options: RunOptions,
    total: int,
    start_time: float,
) -> None:
    """Hand every decoded batch to ``sink``, flushing ``writer`` on schedule and showing progress."""
    report = sink.report
    flushed_at, unflushed, seen = time.monotonic(), 0, 0
    with (
        _progress(total, options.progress) as bar,
        StopRequest("extraction") as stop,
        _worker_deaths(writer, options.num_workers, stop),
    ):
        for decoded in batches:
            if stop.requested:  # between batches: the rows so far are flushed on the way out
                del decoded
                raise _interrupted(writer, stop.requested)
            count = sink.take(decoded)
            del decoded  # the batch's audio and features must not outlive it (flat memory)
            seen += count
            unflushed += count
            now = time.monotonic()
            if now - flushed_at >= options.flush_seconds or 0 < options.flush_rows <= unflushed:
                writer.flush()
                flushed_at, unflushed = now, 0
            bar.update(count)
            bar.set_postfix_str(
                progress_rates(seen, report.audio_seconds, time.perf_counter() - start_time), refresh=False
            )
            if stop.requested:
                raise _interrupted(writer, stop.requested)


def _progress(total: int, enabled: bool) -> Any:
    """A progress bar over ``total`` utterances (hidden unless ``enabled``)."""
    from tqdm import tqdm

    # the rates are whole-run averages in the postfix (progress_rates), not tqdm's smoothed items/s
    return tqdm(
        total=total,
        unit="utt",
        disable=not enabled,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} utt [{elapsed}<{remaining}{postfix}]",
    )


@contextlib.contextmanager
def _worker_deaths(writer: CacheWriter, workers: int, stop: StopRequest) -> Iterator[None]:
    """A decoding worker that died (killed by the out-of-memory killer, most often) becomes one line.

    While a stop is under way its death is part of the stop, not a crash: a scheduler's cancel (or the
    terminal's Ctrl-C) signals the whole process group, so the workers get the SIGTERM / SIGINT too and
    may die before this process reaches the next batch."""
    try:
        yield
    except RuntimeError as err:
        if "DataLoader worker" not in str(err):
            raise
        if stop.requested:
            logger.info("decoding worker gone during the stop (%s)", str(err).splitlines()[0])
            raise _interrupted(writer, stop.requested) from None
        writer.flush()
        raise ExtractorError(
            f"a decoding worker process died ({str(err).splitlines()[0]}); usually the "
            f"out-of-memory killer: lower --num-workers (now {workers}) or --batch-seconds. The "
            f"{len(writer.done_ids)} rows done are kept in {writer.partial}; run again to resume"
        ) from None


def _interrupted(writer: CacheWriter, signal_name: str) -> ExtractionInterrupted:
    """Flush what is done and say how to resume."""
    writer.flush()
    return ExtractionInterrupted(
        f"{signal_name}: extraction stopped; {len(writer.done_ids)} rows are kept in "
        f"{writer.partial}. Run the same command again to resume"
    )
