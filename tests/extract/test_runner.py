"""The extraction runner: batching, bad inputs, values, resume, failures, shards, streaming memory, torchrun.

Most tests run the real log-mel extractor (preset ``64``, pure CPU DSP) over a small generated
corpus of tones with a few deliberately bad rows. Where a test needs control (an item that fails,
a crash after N batches) it wraps the real extractor in :class:`Hooked`, which keeps the spec and
the config (hence the config hash), so its rows are interchangeable with those of a plain run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ser.cache.format import CacheError, partial_path
from ser.cache.merge import merge_stores
from ser.cache.reader import CacheReader
from ser.cache.writer import partial_summary
from ser.extract.audio import load_audio
from ser.extract.base import ExtractorError, ExtractorSpec, Features, Item, ItemRejected
from ser.extract.logmel import LogMelExtractor
from ser.extract.logmel import build as build_logmel
from ser.extract.plan import plan_batches
from ser.extract.run_options import shard_output
from ser.extract.runner import RunOptions, run_extraction
from ser.extract.update import expected_fingerprints
from ser.manifests.schema import ManifestHeader, Utterance, read_manifest, write_manifest
from tests.fakes import write_tone

SR = 16000
HOP = 160
WIN = 400

# id -> (seconds, frequency, file sample rate, channels); g1 is resampled and down-mixed on load
GOOD_TONES = {
    "g0": (0.30, 220.0, SR, 1),
    "g1": (0.50, 330.0, 22050, 2),
    "g2": (0.50, 440.0, SR, 1),
    "g3": (1.20, 550.0, SR, 1),
    "g4": (0.02, 660.0, SR, 1),
}
SEGMENT = ("g3.wav", 0.2, 0.7)  # row "seg": part of g3's file
GOOD = sorted([*GOOD_TONES, "seg"])
BAD_REASONS = {"missing": "missing audio file", "empty": "empty audio", "silent": "silent audio", "noaudio": "no audio"}


def _options(**kwargs: Any) -> RunOptions:
    kwargs.setdefault("num_workers", 0)
    kwargs.setdefault("progress", False)
    return RunOptions(**kwargs)


def _logmel(preset: str = "64") -> LogMelExtractor:
    return build_logmel(preset)


@dataclass
class Corpus:
    manifest: Path
    root: Path
    rows: dict[str, Utterance]


def make_corpus(root: Path) -> Corpus:
    """Tones of varied lengths and rates, one segment row, and one row of each bad kind (no durations in rows)."""
    rows = []
    for uid, (seconds, frequency, rate, channels) in GOOD_TONES.items():
        write_tone(root / f"{uid}.wav", seconds=seconds, sample_rate=rate, channels=channels, frequency=frequency)
        rows.append(Utterance(id=uid, audio=f"{uid}.wav", text=f"tone {uid}"))
    rows.append(Utterance(id="seg", audio=SEGMENT[0], start=SEGMENT[1], end=SEGMENT[2]))
    write_tone(root / "empty.wav", seconds=0.0)
    soundfile.write(str(root / "silent.wav"), np.zeros(int(0.4 * SR)), SR, subtype="PCM_16")
    rows += [
        Utterance(id="missing", audio="nope.wav"),
        Utterance(id="empty", audio="empty.wav"),
        Utterance(id="silent", audio="silent.wav"),
        Utterance(id="noaudio", text="a row with a transcript only"),
    ]
    manifest = root / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="tones", root=str(root)), rows)
    return Corpus(manifest=manifest, root=root, rows={u.id: u for u in rows})


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    return make_corpus(tmp_path / "corpus")


def decoded(corpus: Corpus, uid: str) -> np.ndarray:
    row = corpus.rows[uid]
    return load_audio(corpus.root / str(row.audio), sample_rate=SR, start=row.start, end=row.end)


class Hooked:
    """The real log-mel extractor behind hooks, with its spec and config (so the same config hash).

    ``fail(id)`` True makes any batch holding that id raise RuntimeError (as a failing forward
    pass would); ``stop`` is called instead of extracting on call number ``stop_after + 1``.
    Every call's ids are kept in ``calls`` (and appended to ``log`` as JSON lines, if given).
    """

    def __init__(
        self,
        inner: LogMelExtractor,
        *,
        fail: Callable[[str], bool] = lambda uid: False,
        stop_after: int | None = None,
        stop: Callable[[], None] | None = None,
        log: Path | None = None,
    ) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.fail = fail
        self.stop_after = stop_after
        self.stop = stop
        self.log = log
        self.calls: list[list[str]] = []

    def config(self) -> dict[str, Any]:
        return self.inner.config()

    def upstream(self) -> dict[str, Any]:
        return self.inner.upstream()

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        if self.stop is not None and len(self.calls) == self.stop_after:
            self.stop()
        ids = [item.id for item in items]
        self.calls.append(ids)
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as out:
                out.write(json.dumps(ids) + "\n")
        failing = [uid for uid in ids if self.fail(uid)]
        if failing:
            raise RuntimeError(f"forward failed on {failing}")
        return self.inner.extract(items, seq_layers)


def _interrupt() -> None:
    raise KeyboardInterrupt


@dataclass
class Stored:
    """Everything a finished store holds, keyed by id (row order is not part of the contract)."""

    pooled: dict[str, dict[str, np.ndarray]]
    seq: dict[str, dict[str, np.ndarray]]
    fingerprints: dict[str, str]
    rejected: dict[str, str]
    notes: dict[str, str]
    config_hash: str


def read_stored(path: Path) -> Stored:
    with CacheReader(path) as reader:
        pooled = {stat: dict(zip(reader.ids, reader.pooled(stat), strict=True)) for stat in reader.layout.pooled}
        seq = {layer: {uid: reader.sequence(uid, layer) for uid in reader.ids} for layer in reader.layout.seq}
        return Stored(
            pooled=pooled,
            seq=seq,
            fingerprints=dict(zip(reader.ids, reader.fingerprints, strict=True)),
            rejected=dict(reader.rejected),
            notes=dict(reader.notes),
            config_hash=reader.attrs["extractor"]["config_hash"],
        )


def assert_same_stored(got: Stored, want: Stored) -> None:
    assert got.fingerprints == want.fingerprints
    assert got.rejected == want.rejected
    assert got.notes == want.notes
    assert got.config_hash == want.config_hash
    assert sorted(got.pooled) == sorted(want.pooled) and sorted(got.seq) == sorted(want.seq)
    for stat, rows in want.pooled.items():
        for uid, array in rows.items():
            np.testing.assert_array_equal(got.pooled[stat][uid], array, err_msg=f"{stat} {uid}")
    for layer, rows in want.seq.items():
        for uid, array in rows.items():
            np.testing.assert_array_equal(got.seq[layer][uid], array, err_msg=f"{layer} {uid}")


# ------------------------------------------------------------------------------------------ batching


def _rows(n: int) -> list[Utterance]:
    return [Utterance(id=f"u{i:03d}") for i in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plan_batches_longest_first_within_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    durations = [float(d) for d in np.round(rng.uniform(0.1, 6.0, size=57), 1)] + [25.0, 0.0]  # 25 s > budget
    rows = _rows(len(durations))
    batches = plan_batches(rows, durations, batch_seconds=12.0, batch_items=4, same_length_only=False)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(rows)))  # every index exactly once
    assert [durations[i] for i in flat] == sorted(durations, reverse=True)  # longest first, throughout
    assert batches[0] == [len(durations) - 2]  # the over-long item comes first, alone
    for batch in batches:
        longest = max(durations[i] for i in batch)
        assert durations[batch[0]] == longest
        assert 1 <= len(batch) <= 4
        if len(batch) > 1:
            assert len(batch) * longest <= 12.0, batch
    # greedy: a batch is only closed when the next item does not fit any more
    for batch in batches[:-1]:
        longest = durations[batch[0]]
        assert len(batch) == 4 or (len(batch) + 1) * longest > 12.0


def test_plan_batches_same_length_only_groups_equal_durations() -> None:
    durations = [2.0, 1.5, 2.0, 1.5, 1.5, 3.0, 2.0, 2.0, 2.0, 1.0]
    rows = _rows(len(durations))
    mixed = plan_batches(rows, durations, batch_seconds=100.0, batch_items=4, same_length_only=False)
    assert any(len({durations[i] for i in batch}) > 1 for batch in mixed)  # without the flag lengths mix
    batches = plan_batches(rows, durations, batch_seconds=100.0, batch_items=4, same_length_only=True)
    assert sorted(i for batch in batches for i in batch) == list(range(len(rows)))
    assert all(len({durations[i] for i in batch}) == 1 for batch in batches)
    assert all(len(batch) <= 4 for batch in batches)
    sizes = {durations[batch[0]]: [] for batch in batches}
    for batch in batches:
        sizes[durations[batch[0]]].append(len(batch))
    assert sizes == {3.0: [1], 2.0: [4, 1], 1.5: [3], 1.0: [1]}
    assert [durations[b[0]] for b in batches] == [3.0, 2.0, 2.0, 1.5, 1.0]


# ------------------------------------------------------------------------------------------ a full run


def test_run_stores_good_rows_rejects_bad_ones_with_reasons(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "feats.h5"
    extractor = _logmel()
    report = run_extraction(corpus.manifest, extractor, out, _options(seq="logmel"))
    assert report.output == out and not report.already_complete and report.resumed == 0
    assert report.extracted == len(GOOD)
    assert sorted(report.rejected) == sorted(BAD_REASONS)
    for uid, reason in BAD_REASONS.items():
        assert reason in report.rejected[uid], (uid, report.rejected[uid])
    assert str(corpus.root / "nope.wav") in report.rejected["missing"]
    assert not partial_path(out).exists()

    with CacheReader(out) as reader:
        assert reader.attrs["status"] == "complete"
        assert sorted(reader.ids) == GOOD
        assert reader.rejected == report.rejected
        assert reader.attrs["extractor"]["name"] == "logmel" and reader.attrs["extractor"]["preset"] == "64"
        assert reader.attrs["manifest"]["n_items"] == len(corpus.rows)
        assert "g4" in reader.notes and "padded" in reader.notes["g4"]  # 320 samples < the 400-sample window
        current = expected_fingerprints(out, read_manifest(corpus.manifest))
        assert reader.check_rows({uid: current[uid] for uid in GOOD}) is None
        for uid in GOOD:
            audio = decoded(corpus, uid)
            (direct,) = extractor.extract([Item(id=uid, audio=audio)], ["logmel"])
            assert isinstance(direct, Features)
            for stat in ("mean", "std"):
                got = reader.pooled(stat, ids=[uid])[0]
                assert got.shape == (1, 64) and got.dtype == np.float32
                np.testing.assert_array_equal(got, direct.pooled[stat], err_msg=f"{stat} {uid}")
            frames = reader.sequence(uid, "logmel")
            assert frames.shape == (1 + max(audio.size, WIN) // HOP, 64)  # T = 1 + n // hop (n padded to 400)
            assert frames.dtype == np.float16
            np.testing.assert_array_equal(frames, direct.seq["logmel"].astype(np.float16), err_msg=uid)
        # the resampled, down-mixed 22.05 kHz stereo file and the segment have their 16 kHz lengths
        assert reader.sequence("g1", "logmel").shape[0] == 1 + 8000 // HOP
        assert reader.sequence("seg", "logmel").shape[0] == 1 + 8000 // HOP

    assert report.rejects_file == out.with_name("feats.h5.rejects.tsv")
    lines = report.rejects_file.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\tstatus\treason"
    table = [line.split("\t") for line in lines[1:]]
    assert {(uid, status) for uid, status, _ in table} == {*((uid, "rejected") for uid in BAD_REASONS), ("g4", "note")}
    for uid, status, reason in table:
        if status == "rejected":
            assert reason == report.rejected[uid]


def test_seq_none_stores_only_pooled_and_seq_names_are_checked(corpus: Corpus, tmp_path: Path) -> None:
    with_seq = tmp_path / "seq.h5"
    without = tmp_path / "noseq.h5"
    run_extraction(corpus.manifest, _logmel(), with_seq, _options(seq="last"))  # last == the only layer, logmel
    run_extraction(corpus.manifest, _logmel(), without, _options(seq="none"))
    with CacheReader(with_seq) as a, CacheReader(without) as b:
        assert a.layout.seq == {"logmel": 64}
        assert b.layout.seq == {} and b.lengths.tolist() == [0] * len(GOOD)
        with pytest.raises(CacheError, match="stores no sequence"):
            b.sequence("g0", "logmel")
        assert sorted(b.ids) == GOOD
        for stat in ("mean", "std"):  # pooled statistics do not depend on --seq
            np.testing.assert_array_equal(a.pooled(stat, ids=GOOD), b.pooled(stat, ids=GOOD))
        assert a.attrs["extractor"]["config_hash"] != b.attrs["extractor"]["config_hash"]
    with pytest.raises(ExtractorError, match="no layer '6' to store as a sequence"):
        run_extraction(corpus.manifest, _logmel(), tmp_path / "bad.h5", _options(seq="6"))
    assert not (tmp_path / "bad.h5").exists() and not partial_path(tmp_path / "bad.h5").exists()


# ------------------------------------------------------------------------------------------ resume


def test_interrupted_run_resumes_to_the_same_store(corpus: Corpus, tmp_path: Path) -> None:
    reference = tmp_path / "reference.h5"
    run_extraction(corpus.manifest, _logmel(), reference, _options(seq="logmel"))

    out = tmp_path / "feats.h5"
    crashing = Hooked(_logmel(), stop_after=2, stop=_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_extraction(corpus.manifest, crashing, out, _options(seq="logmel", batch_items=2, segment_bytes=1))
    assert not out.exists()
    with pytest.raises(CacheError, match="not finished yet"):
        CacheReader(out)
    summary = partial_summary(out)
    assert summary is not None
    first_ids = {uid for call in crashing.calls[:2] for uid in call}
    assert summary["rows"] == len(first_ids) > 0  # every extracted row was flushed before the crash

    resuming = Hooked(_logmel())
    report = run_extraction(corpus.manifest, resuming, out, _options(seq="logmel", batch_items=2, segment_bytes=1))
    assert report.resumed == summary["rows"] + summary["rejected"] > 0
    assert report.extracted == len(GOOD) - len(first_ids)
    assert not first_ids & {uid for call in resuming.calls for uid in call}  # done rows are not extracted again
    assert not partial_path(out).exists()
    assert_same_stored(read_stored(out), read_stored(reference))
    assert sorted(report.rejected) == sorted(BAD_REASONS)


def test_hard_kill_keeps_flushed_rows_and_resume_completes(corpus: Corpus, tmp_path: Path) -> None:
    """The writer process dies with os._exit (no clean-up at all) during its third batch."""
    reference = tmp_path / "reference.h5"
    run_extraction(corpus.manifest, _logmel(), reference, _options(seq="logmel"))
    out = tmp_path / "killed.h5"
    log = tmp_path / "calls.jsonl"
    options = _options(seq="logmel", batch_items=2, segment_bytes=1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        code = 1
        try:
            run_extraction(
                corpus.manifest, Hooked(_logmel(), stop_after=2, stop=lambda: os._exit(17), log=log), out, options
            )
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 17
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(calls) == 2
    summary = partial_summary(out)
    assert summary is not None and summary["rows"] == sum(len(call) for call in calls) > 0

    report = run_extraction(corpus.manifest, _logmel(), out, options)
    assert report.resumed == summary["rows"] + summary["rejected"]
    assert report.extracted == len(GOOD) - summary["rows"]
    assert_same_stored(read_stored(out), read_stored(reference))


def test_finished_store_is_not_redone_and_config_changes_are_refused(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "feats.h5"
    run_extraction(corpus.manifest, _logmel(), out, _options())
    before = read_stored(out)
    partial_path(out).mkdir()  # as left by a writer killed between the final rename and its clean-up
    counting = Hooked(_logmel())
    report = run_extraction(corpus.manifest, counting, out, _options())
    assert report.already_complete and report.extracted == 0 and counting.calls == []
    assert not partial_path(out).exists()
    assert_same_stored(read_stored(out), before)

    with pytest.raises(ExtractorError, match="another extractor config"):
        run_extraction(corpus.manifest, _logmel("librosa"), out, _options())
    with pytest.raises(ExtractorError, match="another extractor config"):
        run_extraction(corpus.manifest, _logmel(), out, _options(seq="logmel"))  # --seq is part of the config
    assert_same_stored(read_stored(out), before)

    # an unfinished store refuses rows of another config too
    unfinished = tmp_path / "unfinished.h5"
    with pytest.raises(KeyboardInterrupt):
        run_extraction(
            corpus.manifest, Hooked(_logmel(), stop_after=1, stop=_interrupt), unfinished, _options(batch_items=2)
        )
    with pytest.raises(CacheError, match="another extractor config"):
        run_extraction(corpus.manifest, _logmel("librosa"), unfinished, _options(batch_items=2))
    assert partial_summary(unfinished) is not None


# ------------------------------------------------------------------------------------------ failures


def test_one_failing_item_is_rejected_and_the_rest_stored(corpus: Corpus, tmp_path: Path) -> None:
    reference = read_stored(run_extraction(corpus.manifest, _logmel(), tmp_path / "ref.h5", _options()).output)
    hooked = Hooked(_logmel(), fail=lambda uid: uid == "g2")
    report = run_extraction(corpus.manifest, hooked, tmp_path / "feats.h5", _options())
    assert report.rejected["g2"].startswith("extraction failed: RuntimeError: forward failed on ['g2']")
    assert report.extracted == len(GOOD) - 1
    assert any(len(call) > 1 and "g2" in call for call in hooked.calls)  # failed as part of a batch ...
    assert ["g2"] in hooked.calls  # ... then alone
    got = read_stored(tmp_path / "feats.h5")
    assert sorted(got.fingerprints) == sorted(set(GOOD) - {"g2"})
    for stat, rows in got.pooled.items():
        for uid, array in rows.items():
            np.testing.assert_array_equal(array, reference.pooled[stat][uid])


def _many_tones(root: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        write_tone(root / f"t{i:02d}.wav", seconds=0.05 + 0.01 * i, frequency=200.0 + 10 * i)
        rows.append(Utterance(id=f"t{i:02d}", audio=f"t{i:02d}.wav", duration=0.05 + 0.01 * i))
    write_manifest(root / "m.jsonl", ManifestHeader(corpus="tones", root=str(root)), rows)
    return root / "m.jsonl"


def _always_failing() -> Hooked:
    return Hooked(_logmel(), fail=lambda uid: True)


def test_twenty_failures_in_a_row_abort_naming_the_partial_folder(tmp_path: Path) -> None:
    manifest = _many_tones(tmp_path / "tones", 30)
    out = tmp_path / "feats.h5"
    with pytest.raises(ExtractorError) as caught:
        run_extraction(manifest, _always_failing(), out, _options(batch_items=4))
    message = str(caught.value)
    assert "20 items failed in a row" in message and "RuntimeError: forward failed" in message
    assert str(partial_path(out)) in message
    assert partial_path(out).is_dir() and not out.exists()
    summary = partial_summary(out)
    assert summary is not None and summary["rows"] == 0


def test_items_of_an_aborted_failure_streak_are_retried_on_resume(tmp_path: Path) -> None:
    manifest = _many_tones(tmp_path / "tones", 30)
    out = tmp_path / "feats.h5"
    with pytest.raises(ExtractorError, match="failed in a row"):
        run_extraction(manifest, _always_failing(), out, _options(batch_items=4))
    report = run_extraction(manifest, _logmel(), out, _options(batch_items=4))  # the device works again
    assert report.rejected == {}
    with CacheReader(out) as reader:
        assert len(reader) == 30


# ------------------------------------------------------------------------------------------ shards


def test_shards_cover_all_rows_and_merge_to_the_unsharded_store(corpus: Corpus, tmp_path: Path) -> None:
    full = run_extraction(corpus.manifest, _logmel(), tmp_path / "full.h5", _options(seq="logmel")).output
    out = tmp_path / "x.h5"
    reports = [
        run_extraction(corpus.manifest, _logmel(), out, _options(seq="logmel", shard=(0, 2), num_workers=1)),
        run_extraction(corpus.manifest, _logmel(), out, _options(seq="logmel", shard=(1, 2))),
    ]
    paths = [tmp_path / "x.shard0of2.h5", tmp_path / "x.shard1of2.h5"]
    assert [r.output for r in reports] == paths and shard_output(out, (1, 2)) == paths[1]
    assert not out.exists()
    order = list(corpus.rows)
    shard_ids = []
    for index, path in enumerate(paths):
        with CacheReader(path) as reader:
            assert reader.attrs["extractor"]["shard"] == [index, 2]
            expected = {uid for i, uid in enumerate(order) if i % 2 == index}
            assert set(reader.ids) | set(reader.rejected) == expected
            shard_ids.append(set(reader.ids))
        assert path.with_name(path.name + ".rejects.tsv").exists()
    assert not shard_ids[0] & shard_ids[1] and shard_ids[0] | shard_ids[1] == set(GOOD)

    merged = merge_stores(paths, tmp_path / "merged.h5")
    got, want = read_stored(merged), read_stored(full)
    assert_same_stored(got, want)
    with CacheReader(merged) as reader:
        assert reader.attrs["extractor"].get("shard") is None
        assert [entry["shard"] for entry in reader.attrs["merged_from"]] == [[0, 2], [1, 2]]


# ------------------------------------------------------------------------------------------ streaming memory

RSS_SCRIPT = textwrap.dedent("""
    import resource
    import sys

    from ser.extract.logmel import build
    from ser.extract.runner import RunOptions, run_extraction

    options = RunOptions(seq="logmel", num_workers=0, progress=False, segment_bytes=1 << 20)
    report = run_extraction(sys.argv[1], build("64"), sys.argv[2], options)
    assert report.extracted == int(sys.argv[3]) and not report.rejected, report
    print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def test_peak_rss_does_not_grow_with_the_corpus(tmp_path: Path) -> None:
    """30 vs 120 rows of 3 s: the 90 extra rows hold 17 MB of decoded audio and 7 MB of float32 frames
    (3.5 MB as stored float16), so keeping batches or features around would show; flushing does not."""
    seconds, n = 3.0, 30
    for k in range(3):
        write_tone(tmp_path / f"a{k}.wav", seconds=seconds, frequency=200.0 + 150 * k)
    procs = []
    for rows in (n, 4 * n):
        manifest = tmp_path / f"m{rows}.jsonl"
        write_manifest(
            manifest,
            ManifestHeader(corpus="tones", root=str(tmp_path)),
            [Utterance(id=f"u{i:04d}", audio=f"a{i % 3}.wav", duration=seconds) for i in range(rows)],
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RSS_SCRIPT, str(manifest), str(tmp_path / f"o{rows}.h5"), str(rows)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        )
    peaks = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-3000:]
        peaks.append(int(re.search(r"maxrss_kb (\d+)", stdout).group(1)) / 1024)
    print(f"peak RSS: {n} rows {peaks[0]:.1f} MB, {4 * n} rows {peaks[1]:.1f} MB")
    with CacheReader(tmp_path / f"o{4 * n}.h5") as reader:
        assert len(reader) == 4 * n and int(reader.offsets[-1]) == 4 * n * (1 + int(seconds * SR) // HOP)
    assert peaks[1] <= peaks[0] + 20.0, peaks


class BigTokens:
    """A text 'extractor' returning a 512 KB float32 sequence per item (256 KB stored as float16)."""

    spec = ExtractorSpec(
        name="bigtokens", preset="t", modality="text", pooled={"mean": (1, 8)}, seq_layers={"tokens": 512}
    )

    def config(self) -> dict[str, Any]:
        return {"frames": 256}

    def upstream(self) -> dict[str, Any]:
        return {"model": "none"}

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        out: list[Features | ItemRejected] = []
        for item in items:
            value = float(int(item.id[1:]) % 100)
            out.append(
                Features(
                    pooled={"mean": np.full((1, 8), value, np.float32)},
                    seq={"tokens": np.full((256, 512), value, np.float32)} if seq_layers else {},
                )
            )
        return out


def test_traced_peak_memory_is_flat_in_corpus_size(tmp_path: Path) -> None:
    """In-process and precise (numpy allocations are traced): 40 vs 160 rows of 512 KB features."""
    peaks = []
    for rows in (40, 160):
        manifest = tmp_path / f"m{rows}.jsonl"
        write_manifest(
            manifest,
            ManifestHeader(corpus="text", root=str(tmp_path)),
            [Utterance(id=f"t{i:04d}", text="some words") for i in range(rows)],
        )
        tracemalloc.start()
        try:
            report = run_extraction(
                manifest, BigTokens(), tmp_path / f"o{rows}.h5", _options(seq="tokens", segment_bytes=1 << 20)
            )
            peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        finally:
            tracemalloc.stop()
        assert report.extracted == rows
    print(f"traced peak: 40 rows {peaks[0]:.1f} MB, 160 rows {peaks[1]:.1f} MB")
    with CacheReader(tmp_path / "o160.h5") as reader:
        assert int(reader.offsets[-1]) == 160 * 256
        np.testing.assert_array_equal(reader.sequence("t0123", "tokens"), np.full((256, 512), 23, np.float16))
    # retaining the 120 extra rows would add 30 MB (float16) to 90 MB (float32 + float16)
    assert peaks[1] <= peaks[0] + 5.0, peaks


# ------------------------------------------------------------------------------------------ torchrun


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RENDEZVOUS_TROUBLE = (
    "rendezvous",
    "DistNetworkError",
    "Address already in use",
    "Connection refused",
    "failed to bind",
    "TCPStore",
    "Network is unreachable",
)


def _torchrun(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "ser.cli",
        "extract",
        *args,
        "--num-workers",
        "0",
        "--no-progress",
    ]
    return subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )


@dataclass
class TorchrunRun:
    workdir: Path
    manifest: Path
    out: Path
    result: subprocess.CompletedProcess[str]
    listing: list[str]


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory: pytest.TempPathFactory) -> TorchrunRun:
    """Two CPU ranks (gloo) over 7 tones and one missing file: each rank extracts a shard, rank 0 merges."""
    workdir = tmp_path_factory.mktemp("torchrun")
    rows = []
    for i in range(7):
        write_tone(workdir / f"t{i}.wav", seconds=0.1 + 0.05 * i, frequency=250.0 + 40 * i)
        rows.append(Utterance(id=f"t{i}", audio=f"t{i}.wav"))
    rows.append(Utterance(id="lost", audio="lost.wav"))
    manifest = workdir / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="tones", root=str(workdir)), rows)
    out = workdir / "out.h5"
    for _attempt in range(2):  # a second try on a fresh port, should the first one have been taken meanwhile
        result = _torchrun(workdir, "--model", "logmel", "-m", str(manifest), "-o", str(out))
        output = result.stdout + result.stderr
        if out.exists() or not any(marker in output for marker in RENDEZVOUS_TROUBLE):
            break
    else:
        pytest.skip(f"torchrun could not start its ranks here: {output[-1500:]}")
    return TorchrunRun(
        workdir=workdir, manifest=manifest, out=out, result=result, listing=sorted(p.name for p in workdir.iterdir())
    )


def test_torchrun_ranks_extract_shards_and_rank0_merges(torchrun_run: TorchrunRun) -> None:
    run = torchrun_run
    output = run.result.stdout + run.result.stderr
    assert "rank 0 merged the 2 shards into" in run.result.stdout, output[-4000:]
    # the rank whose shard holds the missing file exits with status 3, which torchrun reports as a failed child
    assert run.result.returncode != 0 and re.search(r"exitcode\s*:\s*3", output)
    with CacheReader(run.out) as reader:
        assert reader.attrs["status"] == "complete"
        assert sorted(reader.ids) == [f"t{i}" for i in range(7)]
        assert list(reader.rejected) == ["lost"] and "missing audio file" in reader.rejected["lost"]
        assert [entry["shard"] for entry in reader.attrs["merged_from"]] == [[0, 2], [1, 2]]
        for uid in ("t0", "t6"):
            audio = load_audio(run.workdir / f"{uid}.wav", sample_rate=SR)
            (direct,) = build_logmel("64").extract([Item(id=uid, audio=audio)], [])
            np.testing.assert_array_equal(reader.pooled("mean", ids=[uid])[0], direct.pooled["mean"])
    for name in (
        "out.shard0of2.h5",
        "out.shard1of2.h5",
        "out.shard0of2.h5.partial",
        "out.shard1of2.h5.partial",
        "out.h5.partial",
    ):
        assert name not in run.listing


def test_torchrun_writes_the_rejects_file_of_the_merged_store(torchrun_run: TorchrunRun) -> None:
    assert "out.h5.rejects.tsv" in torchrun_run.listing
    assert not [name for name in torchrun_run.listing if ".shard" in name]


def test_torchrun_refuses_another_config_into_a_finished_store(torchrun_run: TorchrunRun) -> None:
    result = _torchrun(
        torchrun_run.workdir,
        "--model",
        "logmel",
        "--preset",
        "librosa",
        "-m",
        str(torchrun_run.manifest),
        "-o",
        str(torchrun_run.out),
    )
    output = result.stdout + result.stderr
    with CacheReader(torchrun_run.out) as reader:
        assert reader.attrs["extractor"]["preset"] == "64"  # the finished store is untouched either way
    assert "another extractor config" in output, output[-3000:]
    assert "merged" not in result.stdout


# ------------------------------------------------------------------------------------------ flushing by time and rows


def _tone_manifest(root: Path, n: int, *, seconds: float = 3.0, files: int = 4, bad: bool = False) -> Path:
    """``n`` rows over ``files`` distinct tones (row i reads a{i % files}.wav), plus a missing file with ``bad``."""
    for k in range(files):
        write_tone(root / f"a{k}.wav", seconds=seconds, frequency=200.0 + 110 * k)
    rows = [Utterance(id=f"u{i:04d}", audio=f"a{i % files}.wav", duration=seconds) for i in range(n)]
    if bad:
        rows.append(Utterance(id="gone", audio="gone.wav", duration=seconds))
    write_manifest(root / "m.jsonl", ManifestHeader(corpus="tones", root=str(root)), rows)
    return root / "m.jsonl"


def test_killed_cli_run_with_default_flush_settings_keeps_rows_and_resumes(tmp_path: Path) -> None:
    """SIGKILL a real `ser extract` (default segment size and batching; only the flush interval shortened).

    The 240 rows hold 9 MB of features, far below the 64 MB segment size: before the time-based
    flush, a run killed at any point before the end kept nothing.
    """
    import signal
    import time

    manifest = _tone_manifest(tmp_path / "tones", 240, bad=True)
    out = tmp_path / "killed.h5"
    command = [
        sys.executable,
        "-m",
        "ser.cli",
        "extract",
        "--model",
        "logmel",
        "-m",
        str(manifest),
        "-o",
        str(out),
        "--seq",
        "logmel",
        "--no-progress",
        "--flush-seconds",
        "0.3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 120
    summary = None
    while time.monotonic() < deadline and proc.poll() is None:
        summary = partial_summary(out)
        if summary is not None and summary["rows"] > 0:
            break
        time.sleep(0.01)
    finished_first = proc.poll() is not None
    if not finished_first:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its decoding workers, without any clean-up
    _, stderr = proc.communicate(timeout=60)
    assert not finished_first, f"the run ended before rows were flushed (exit {proc.returncode}): {stderr[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    kept = partial_summary(out)
    assert kept is not None and 0 < kept["rows"] < 240  # rows flushed by time survived the kill

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 3, resumed.stderr[-3000:]  # finished, with the missing file rejected
    done_before = kept["rows"] + kept["rejected"]
    assert f"{241 - done_before} extracted ({done_before} were already done), 1 rejected" in resumed.stdout
    extractor = _logmel()
    direct = {}
    for k in range(4):
        audio = load_audio(tmp_path / "tones" / f"a{k}.wav", sample_rate=SR)
        result = extractor.extract([Item(id=f"a{k}", audio=audio)], ["logmel"])[0]
        assert isinstance(result, Features)
        direct[k] = result
    stored = read_stored(out)
    assert sorted(stored.fingerprints) == [f"u{i:04d}" for i in range(240)]
    assert list(stored.rejected) == ["gone"] and "missing audio file" in stored.rejected["gone"]
    for uid in stored.fingerprints:
        want = direct[int(uid[1:]) % 4]
        np.testing.assert_array_equal(stored.pooled["mean"][uid], want.pooled["mean"], err_msg=uid)
        np.testing.assert_array_equal(stored.pooled["std"][uid], want.pooled["std"], err_msg=uid)
        np.testing.assert_array_equal(stored.seq["logmel"][uid], want.seq["logmel"].astype(np.float16), err_msg=uid)


class Snooping(Hooked):
    """Records, at every extract call, how many rows the partial store holds on disk."""

    def __init__(self, inner: LogMelExtractor, out: Path) -> None:
        super().__init__(inner)
        self.out = out
        self.on_disk: list[int] = []

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        summary = partial_summary(self.out)
        self.on_disk.append(summary["rows"] if summary else 0)
        return super().extract(items, seq_layers)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, [0, 0, 0, 0, 0, 0]),  # 30 s never pass here, and 18 small rows never fill 64 MB
        ({"flush_seconds": 0.0}, [0, 3, 6, 9, 12, 15]),  # flushed after every batch
        ({"flush_rows": 6}, [0, 0, 6, 6, 12, 12]),  # flushed once 6 rows were taken
    ],
    ids=["defaults", "every-batch", "every-6-rows"],
)
def test_rows_are_flushed_by_time_and_by_row_count(
    tmp_path: Path, settings: dict[str, Any], expected: list[int]
) -> None:
    manifest = _tone_manifest(tmp_path / "tones", 18, seconds=0.2)
    out = tmp_path / "feats.h5"
    snooping = Snooping(_logmel(), out)
    report = run_extraction(manifest, snooping, out, _options(batch_items=3, **settings))
    assert report.extracted == 18
    assert [len(call) for call in snooping.calls] == [3] * 6
    assert snooping.on_disk == expected


def test_run_options_flush_defaults() -> None:
    options = RunOptions()
    assert (options.flush_seconds, options.flush_rows, options.segment_bytes) == (30.0, 0, 64 << 20)


# ------------------------------------------------------------------------------------------ batch planning by modality


class Recording:
    """A cheap extractor of any modality that records its batches (pooled mean = row number)."""

    def __init__(self, modality: str, *, window_seconds: float | None = None) -> None:
        self.spec = ExtractorSpec(
            name="rec",
            preset="p",
            modality=modality,  # type: ignore[arg-type]
            pooled={"mean": (1, 2)},
            seq_layers={},
            sample_rate=SR if modality == "audio" else None,
            window_seconds=window_seconds,
        )
        self.calls: list[list[str]] = []

    def config(self) -> dict[str, Any]:
        return {"rec": self.spec.modality}

    def upstream(self) -> dict[str, Any]:
        return {"model": "none"}

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        self.calls.append([item.id for item in items])
        return [Features(pooled={"mean": np.full((1, 2), float(item.id[1:]), np.float32)}) for item in items]


def test_text_rows_are_batched_by_item_count_not_by_characters(tmp_path: Path) -> None:
    """MELD-like transcripts of ~80 characters: the audio budget (160 "seconds") would allow 2 per batch."""
    sentence = "Oh my God, I cannot believe you would do that to me after everything we went through!"
    rows = [Utterance(id=f"t{i:03d}", text=sentence[: 60 + i % 25]) for i in range(70)]
    manifest = tmp_path / "text.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="meld", root=str(tmp_path)), rows)
    recording = Recording("text")
    run_extraction(manifest, recording, tmp_path / "a.h5", _options())
    assert [len(call) for call in recording.calls] == [32, 32, 6]
    lengths = [len(next(r.text for r in rows if r.id == uid) or "") for call in recording.calls for uid in call]
    assert lengths == sorted(lengths, reverse=True)  # still longest first: similar lengths pad little
    recording = Recording("mocap")
    run_extraction(manifest, recording, tmp_path / "b.h5", _options(batch_items=10, batch_seconds=1.0))
    assert [len(call) for call in recording.calls] == [10] * 7


def test_plan_batches_with_a_fixed_window_counts_the_padded_cost() -> None:
    """Whisper pads every chunk to 30 s: 3 s clips cost 30 s each, a 65 s clip 90 s (three chunks)."""
    durations = [3.0] * 12 + [65.0, 31.0]
    rows = _rows(len(durations))
    batches = plan_batches(
        rows, durations, batch_seconds=160.0, batch_items=32, same_length_only=False, window_seconds=30.0
    )
    assert batches[0] == [12, 13]  # 90 s + 60 s = 150 s <= 160 s
    assert [len(b) for b in batches[1:]] == [5, 5, 2]  # 5 x 30 s = 150 s; a sixth would make 180 s
    by_duration = plan_batches(rows, durations, batch_seconds=160.0, batch_items=32, same_length_only=False)
    assert [len(b) for b in by_duration] == [2, 12]  # what planning by real duration did: 12 windows = 360 s


def test_runner_plans_whisper_style_extractors_by_window(tmp_path: Path) -> None:
    manifest = _tone_manifest(tmp_path / "tones", 12, seconds=0.5, files=2)
    windowed = Recording("audio", window_seconds=30.0)
    run_extraction(manifest, windowed, tmp_path / "w.h5", _options(batch_seconds=100.0))
    assert [len(call) for call in windowed.calls] == [3, 3, 3, 3]  # 3 x 30 s <= 100 s
    plain = Recording("audio")
    run_extraction(manifest, plain, tmp_path / "p.h5", _options(batch_seconds=100.0))
    assert [len(call) for call in plain.calls] == [12]


# ------------------------------------------------------------------------------------------ decoding, workers, rates


def test_any_decoding_error_rejects_only_that_row(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ser.extract.decode as decode_module

    real = decode_module.load_audio

    def flaky(path: str, **kwargs: Any) -> np.ndarray:
        if path.endswith("g2.wav"):
            raise TypeError("a decoder bug")
        return real(path, **kwargs)

    monkeypatch.setattr(decode_module, "load_audio", flaky)
    report = run_extraction(corpus.manifest, _logmel(), tmp_path / "feats.h5", _options())
    assert report.rejected["g2"] == "decoding failed: TypeError: a decoder bug"
    assert report.extracted == len(GOOD) - 1
    assert sorted(report.rejected) == sorted([*BAD_REASONS, "g2"])


def test_in_worker_extraction_sends_durations_not_audio(corpus: Corpus) -> None:
    from ser.extract.decode import BatchDataset
    from ser.manifests.schema import read_manifest

    manifest = read_manifest(corpus.manifest)
    rows = [corpus.rows[uid] for uid in ("g1", "missing", "g3")]
    extractor = _logmel()
    dataset = BatchDataset(manifest, rows, [[0, 1, 2]], "audio", SR, 3600.0, extractor=extractor)
    g1, missing, g3 = dataset[0]
    assert missing.error is not None and "missing audio file" in missing.error and missing.result is None
    for entry, seconds in ((g1, 0.5), (g3, 1.2)):
        assert entry.item is None and isinstance(entry.result, Features)  # no decoded audio comes back
        assert entry.seconds == pytest.approx(seconds, abs=1 / SR)
    plain = BatchDataset(manifest, rows, [[0, 1, 2]], "audio", SR, 3600.0)
    first = plain[0][0]
    assert first.item is not None and first.item.audio is not None and first.result is None
    assert first.item.audio.size == 8000


def test_progress_rates_are_utterances_and_audio_hours_per_second() -> None:
    from ser.extract.run_options import progress_rates

    assert progress_rates(100, 7200.0, 10.0) == "10.0 utt/s, 0.2 audio-h/s"
    assert progress_rates(3, 90.0, 2.0) == "1.5 utt/s, 0.0125 audio-h/s"
