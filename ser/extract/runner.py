"""The extraction runner: manifest rows in, a finished cache store out.

* Batches are duration-bucketed (longest first, so an out-of-memory error shows up at once): a
  batch holds at most ``batch_seconds`` of padded audio and ``batch_items`` items. Extractors that
  must not see padding only get items of identical length together.
* Decoding and resampling run in DataLoader worker processes (``num_workers``), ahead of the model.
* Rows stream into the crash-safe :class:`~ser.cache.writer.CacheWriter`: memory does not grow
  with the corpus, and re-running the same command resumes where a crash stopped it.
* Bad inputs never stop the run: unreadable, empty, silent or absurdly long audio, missing text,
  NaN features, and an item whose forward pass fails on its own are rejected with the reason
  (kept in the store and written to ``<store>.rejects.tsv``). Only a run of consecutive failures
  (a broken model or device) aborts.
* ``shard=(i, n)`` extracts rows ``i, i+n, i+2n, ...`` of the manifest into its own store.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ser.cache.format import StoreLayout, check_compression, config_hash
from ser.cache.provenance import environment, utc_now
from ser.cache.writer import CacheWriter, remove_stale_partial
from ser.extract.audio import DEFAULT_MAX_SECONDS, AudioError, load_audio
from ser.extract.base import Extractor, ExtractorError, Features, Item, ItemRejected
from ser.manifests.audio_info import AudioInfoError, probe_duration
from ser.manifests.schema import Manifest, Utterance, file_sha256, read_manifest

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 20


@dataclass(kw_only=True)
class RunOptions:
    """How to run an extraction (none of these change the features, except ``seq``)."""

    seq: str = "none"
    """Layers stored as sequences: none, last, all, numbers (6,12) or names; pooled stats are always written."""
    batch_seconds: float = 160.0
    """Most padded audio seconds in one batch (audio extractors)."""
    batch_items: int = 32
    """Most items in one batch."""
    num_workers: int = 2
    """Decoding/resampling worker processes (0 = decode in the main process)."""
    shard: tuple[int, int] | None = None
    """(index, count): extract only manifest rows index, index + count, ..."""
    max_total_seconds: float = DEFAULT_MAX_SECONDS
    """Audio longer than this is rejected as absurd (a whole podcast where an utterance was expected)."""
    compression: str | None = None
    """Compress the finished store (HDF5: gzip, lzf; Zarr: zstd, gzip, blosc)."""
    segment_bytes: int = 64 << 20
    """Rows are flushed to disk (and safe from crashes) every this many bytes."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class RunReport:
    """What a run did."""

    output: Path
    extracted: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    resumed: int = 0
    """Rows already in the partial store when the run started."""
    already_complete: bool = False
    seconds: float = 0.0
    audio_seconds: float = 0.0
    rejects_file: Path | None = None


def shard_output(output: Path, shard: tuple[int, int] | None) -> Path:
    """``feats.h5`` -> ``feats.shard2of4.h5`` for shard (2, 4); unchanged without shards."""
    if shard is None:
        return output
    index, count = shard
    return output.with_name(f"{output.stem}.shard{index}of{count}{output.suffix}")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/4"`` -> (2, 4), checking 0 <= i < N."""
    if not text:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ExtractorError(f"--shard takes i/N (e.g. 0/4), not {text!r}") from None
    if not 0 <= index < count:
        raise ExtractorError(f"--shard {text}: i must be between 0 and N-1")
    return index, count


# ------------------------------------------------------------------------------------------ batching


def plan_batches(rows: Sequence[Utterance], durations: Sequence[float], *, batch_seconds: float, batch_items: int,
                 same_length_only: bool) -> list[list[int]]:
    """Indices of ``rows`` grouped into batches, longest first.

    A batch's cost is its padded size: ``len(batch) * longest``. With ``same_length_only`` a batch
    holds items of identical duration only.
    """
    order = sorted(range(len(rows)), key=lambda i: (-durations[i], rows[i].id))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current:
            longest = durations[current[0]]
            fits = (len(current) + 1) * longest <= batch_seconds and len(current) < batch_items
            if same_length_only and durations[index] != longest:
                fits = False
            if not fits:
                batches.append(current)
                current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


Decoded = list[Item | tuple[str, str]]
"""A decoded batch: items, or (id, rejection reason) for rows that could not be decoded."""


class _BatchDataset(Dataset):
    """Decodes one planned batch per index (runs in DataLoader workers).

    With ``extractor`` set (extractors whose spec says ``in_workers``) the features are computed
    here too, and the batch comes back as (decoded, results).
    """

    def __init__(self, manifest: Manifest, rows: Sequence[Utterance], batches: list[list[int]],
                 extractor_modality: str, sample_rate: int | None, max_total_seconds: float,
                 extractor: Extractor | None = None, seq_layers: Sequence[str] = ()) -> None:
        self.extractor = extractor
        self.seq_layers = tuple(seq_layers)
        self.root = str(manifest.root)
        self.paths = [str(manifest.audio_path(u)) if u.audio else None for u in rows]
        self.rows = rows
        self.batches = batches
        self.modality = extractor_modality
        self.sample_rate = sample_rate
        self.max_total_seconds = max_total_seconds

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[Decoded, list[Features | ItemRejected] | None]:
        decoded = self._decode(index)
        if self.extractor is None:
            return decoded, None
        items = [entry for entry in decoded if isinstance(entry, Item)]
        return decoded, _extract_batch(self.extractor, items, self.seq_layers) if items else []

    def _decode(self, index: int) -> Decoded:
        out: Decoded = []
        for row_index in self.batches[index]:
            row = self.rows[row_index]
            if self.modality != "audio":
                out.append(Item(id=row.id, text=row.text, extra={**row.extra, "root": self.root}))
                continue
            path = self.paths[row_index]
            if path is None:
                out.append((row.id, "the manifest row has no audio"))
                continue
            try:
                audio = load_audio(path, sample_rate=self.sample_rate or 16000, start=row.start, end=row.end,
                                   max_seconds=self.max_total_seconds)
            except AudioError as err:
                out.append((row.id, str(err)))
                continue
            out.append(Item(id=row.id, audio=audio, text=row.text, extra={**row.extra, "root": self.root}))
        return out


def _durations(manifest: Manifest, rows: Sequence[Utterance]) -> list[float]:
    """Duration of each row, from the manifest or (when missing) the audio header; text rows use length."""
    durations = []
    for row in rows:
        if row.duration is not None:
            durations.append(float(row.duration))
        elif row.audio is not None and row.start is not None and row.end is not None:
            durations.append(row.end - row.start)
        elif row.audio is not None:
            try:
                durations.append(probe_duration(manifest.audio_path(row)))  # type: ignore[arg-type]
            except AudioInfoError:
                durations.append(0.0)  # decoding will reject it with the precise reason
        else:
            durations.append(float(len(row.text or "")))
    return durations


# ------------------------------------------------------------------------------------------ running


def store_attrs(extractor: Extractor, seq_layers: Sequence[str], manifest: Manifest,
                shard: tuple[int, int] | None) -> tuple[StoreLayout, dict[str, Any]]:
    """The layout and provenance attributes of the store an extraction writes."""
    spec = extractor.spec
    config = {**extractor.config(), "seq_layers": list(seq_layers)}
    layout = StoreLayout(pooled=dict(spec.pooled), seq={layer: spec.seq_layers[layer] for layer in seq_layers})
    attrs = {
        "extractor": {"name": spec.name, "preset": spec.preset, "modality": spec.modality, "config": config,
                      "config_hash": config_hash(config), "shard": list(shard) if shard else None},
        "upstream": extractor.upstream(),
        "manifest": {"path": str(manifest.path.resolve()) if manifest.path else None,
                     "sha256": file_sha256(manifest.path) if manifest.path else None,
                     "n_items": len(manifest), "corpus": manifest.header.corpus},
        "environment": environment(),
        "created": utc_now(),
    }
    return layout, attrs


def _extract_batch(extractor: Extractor, items: list[Item], seq_layers: Sequence[str]
                   ) -> list[Features | ItemRejected]:
    """Run a batch; if it fails as a whole, retry item by item so one bad item cannot sink the rest."""
    try:
        return extractor.extract(items, seq_layers)
    except (RuntimeError, ValueError, ExtractorError) as batch_error:
        if len(items) == 1:
            return [ItemRejected(f"extraction failed: {type(batch_error).__name__}: {batch_error}")]
        logger.warning("batch of %d failed (%s); retrying one by one", len(items), batch_error)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return [result for item in items for result in _extract_batch(extractor, [item], seq_layers)]


def write_rejects(path: Path, rejected: dict[str, str], notes: dict[str, str]) -> None:
    buffer = io.StringIO()
    table = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    table.writerow(["id", "status", "reason"])
    table.writerows([uid, "rejected", reason] for uid, reason in sorted(rejected.items()))
    table.writerows([uid, "note", text] for uid, text in sorted(notes.items()))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="utt", disable=not enabled, dynamic_ncols=True, smoothing=0.1)


def run_extraction(manifest_path: str | os.PathLike[str], extractor: Extractor, output: str | os.PathLike[str],
                   options: RunOptions | None = None) -> RunReport:
    """Extract every (remaining) row of a manifest into ``output``; see the module docstring."""
    options = options or RunOptions()
    check_compression(Path(output), options.compression)  # refused now, not after hours of extraction
    manifest = read_manifest(manifest_path)
    spec = extractor.spec
    seq_layers = spec.resolve_seq(options.seq)
    out = shard_output(Path(output), options.shard)
    report = RunReport(output=out, rejects_file=out.with_name(out.name + ".rejects.tsv"))
    layout, attrs = store_attrs(extractor, seq_layers, manifest, options.shard)
    merged = Path(output)  # a shard's work is also done when the merged store already exists
    for finished in dict.fromkeys([out, merged]):
        if finished.exists():
            _check_complete_store(finished, attrs)
            remove_stale_partial(finished)
            report.output, report.already_complete = finished, True
            return report
    rows = [u for i, u in enumerate(manifest.utterances)
            if options.shard is None or i % options.shard[1] == options.shard[0]]
    start_time = time.perf_counter()
    with CacheWriter.open(out, layout=layout, attrs=attrs, segment_bytes=options.segment_bytes) as writer:
        done = writer.done_ids
        report.resumed = len(done)
        todo = [u for u in rows if u.id not in done]
        durations = _durations(manifest, todo)
        batches = plan_batches(todo, durations, batch_seconds=options.batch_seconds,
                               batch_items=options.batch_items,
                               same_length_only=spec.modality == "audio" and not spec.supports_padding)
        in_workers = spec.in_workers and options.num_workers > 0
        dataset = _BatchDataset(manifest, todo, batches, spec.modality, spec.sample_rate, options.max_total_seconds,
                                extractor=extractor if in_workers else None, seq_layers=seq_layers)
        loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=options.num_workers,
                            prefetch_factor=2 if options.num_workers else None,
                            persistent_workers=False)
        fingerprints = {u.id: u.fingerprint() for u in todo}
        # Forward failures are only recorded once a later item succeeds: a streak that ends the run
        # (broken model or device) must not leave healthy items rejected for good.
        failed: dict[str, str] = {}
        with _progress(len(todo), options.progress) as bar:
            for decoded, computed in loader:
                items = [entry for entry in decoded if isinstance(entry, Item)]
                for entry in decoded:
                    if not isinstance(entry, Item):
                        writer.reject(*entry)
                if computed is not None:
                    results = computed
                else:
                    results = _extract_batch(extractor, items, seq_layers) if items else []
                for item, result in zip(items, results, strict=True):
                    if isinstance(result, ItemRejected):
                        if str(result).startswith("extraction failed"):
                            failed[item.id] = str(result)
                        else:
                            writer.reject(item.id, str(result))
                        continue
                    for uid, reason in failed.items():
                        writer.reject(uid, reason)
                    failed.clear()
                    if writer.add(item.id, fingerprints[item.id], result.pooled, result.seq, note=result.note):
                        report.extracted += 1
                        if item.audio is not None:
                            report.audio_seconds += item.audio.size / (spec.sample_rate or 1)
                if len(failed) >= MAX_CONSECUTIVE_FAILURES:
                    raise ExtractorError(f"{len(failed)} items failed in a row (last: {list(failed.values())[-1]}); "
                                         f"stopping. Rows written so far are kept in {writer.partial} and the run "
                                         "resumes from there (the failed items will be tried again)")
                bar.update(len(decoded))
                elapsed = max(time.perf_counter() - start_time, 1e-9)
                bar.set_postfix_str(f"{report.audio_seconds / 3600 / elapsed * 3600:.2f} audio-h/h "
                                    f"({report.audio_seconds / elapsed:.1f} audio-s/s)", refresh=False)
        for uid, reason in failed.items():
            writer.reject(uid, reason)
        report.rejected = dict(writer.rejected)
        notes = dict(writer.notes)
        writer.finalize(compression=options.compression)
    report.seconds = time.perf_counter() - start_time
    if report.rejects_file is not None:
        write_rejects(report.rejects_file, report.rejected, notes)
    return report


def _check_complete_store(out: Path, attrs: dict[str, Any]) -> None:
    from ser.cache.reader import CacheReader

    with CacheReader(out) as reader:
        existing = reader.attrs.get("extractor", {}).get("config_hash")
    if existing != attrs["extractor"]["config_hash"]:
        raise ExtractorError(f"{out} already exists with another extractor config (hash {existing}, now "
                             f"{attrs['extractor']['config_hash']}); write to another path or delete it")


def audio_hours_per_hour(report: RunReport) -> float:
    """Throughput in audio hours per wall-clock hour (NaN when nothing was timed)."""
    return report.audio_seconds / report.seconds if report.seconds else math.nan

