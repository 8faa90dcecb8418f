"""The sink of a run: decoded batches in, rows and rejections into the [`CacheWriter`][ser.cache.writer.CacheWriter].

Items the decoding workers did not compute are extracted here (a failing batch is retried item by
item). Bad rows are rejected with their reason; forward failures are held back until a later item
succeeds, so that only a streak of ``MAX_CONSECUTIVE_FAILURES`` (a broken model or device) stops
the run, without leaving the healthy items of that streak rejected for good.
"""

from __future__ import annotations

from collections.abc import Sequence

from ser.cache.writer import CacheWriter
from ser.extract.base import Extractor, ExtractorError, ItemRejected
from ser.extract.decode import Decoded, extract_batch
from ser.extract.run_options import RunReport

MAX_CONSECUTIVE_FAILURES = 20


class Sink:
    """Takes decoded batches: extracts what still needs it, writes rows and rejections, counts them."""

    def __init__(
        self,
        writer: CacheWriter,
        report: RunReport,
        extractor: Extractor,
        seq_layers: Sequence[str],
        fingerprints: dict[str, str],
    ) -> None:
        self.writer = writer
        self.report = report
        self.extractor = extractor
        self.seq_layers = seq_layers
        self.fingerprints = fingerprints
        # Forward failures are only recorded once a later item succeeds: a streak that ends the run
        # (broken model or device) must not leave healthy items rejected for good.
        self.failed: dict[str, str] = {}

    def take(self, decoded: list[Decoded]) -> int:
        """Handle one batch; returns its number of rows."""
        writer = self.writer
        for entry in decoded:
            if entry.error is not None:
                writer.reject(entry.id, entry.error)
        waiting = [entry for entry in decoded if entry.item is not None]
        items = [entry.item for entry in waiting if entry.item is not None]
        computed = extract_batch(self.extractor, items, self.seq_layers) if items else []
        for entry, outcome in zip(waiting, computed, strict=True):
            entry.result = outcome
        for entry in decoded:
            result = entry.result
            if result is None:
                continue
            if isinstance(result, ItemRejected):
                if str(result).startswith("extraction failed"):
                    self.failed[entry.id] = str(result)
                else:
                    writer.reject(entry.id, str(result))
                continue
            self._reject_failed()
            if writer.add(entry.id, self.fingerprints[entry.id], result.pooled, result.seq, note=result.note):
                self.report.extracted += 1
                self.report.audio_seconds += entry.seconds
        if len(self.failed) >= MAX_CONSECUTIVE_FAILURES:
            raise ExtractorError(
                f"{len(self.failed)} items failed in a row (last: {list(self.failed.values())[-1]}); "
                f"stopping. Rows written so far are kept in {writer.partial} and the run "
                "resumes from there (the failed items will be tried again)"
            )
        return len(decoded)

    def _reject_failed(self) -> None:
        for uid, reason in self.failed.items():
            self.writer.reject(uid, reason)
        self.failed.clear()

    def close(self) -> None:
        """At the end of the rows: failures still pending are rejections."""
        self._reject_failed()
