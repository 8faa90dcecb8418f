"""``ser extract`` killed or interrupted at random points: no process is left behind, nothing blocks the
re-run, and the resumed store holds exactly the features of an uninterrupted run.

60 real RAVDESS clips (the packaged actor 01) through eGeMAPS, flushed after every batch of 4.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ser.cache.reader import CacheReader
from tests.fakes.demo import demo_manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    folder = tmp_path_factory.mktemp("kills")
    manifest = demo_manifest(folder, speakers=["Actor_01"])
    reference = folder / "reference.h5"
    run_extraction(manifest, build_extractor("egemaps"), reference, RunOptions(num_workers=0, progress=False))
    return {"manifest": manifest, "reference": reference}


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent:
                found.append(int(entry.name))
                frontier.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _extract(manifest: Path, store: Path, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ser.cli",
            "extract",
            "--model",
            "egemaps",
            "-m",
            str(manifest),
            "-o",
            str(store),
            "--num-workers",
            str(workers),
            "--batch-items",
            "4",
            "--flush-seconds",
            "0",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _same_as_reference(store: Path, reference: Path) -> None:
    with CacheReader(store) as got, CacheReader(reference) as want:
        assert sorted(got.ids) == sorted(want.ids) and not got.rejected
        for stat in want.layout.pooled:
            np.testing.assert_array_equal(got.pooled(stat, ids=want.ids), want.pooled(stat, ids=want.ids))


TRIALS = [
    (sig, workers, seed)
    for sig, workers in (
        (signal.SIGKILL, 2),
        (signal.SIGTERM, 2),
        (signal.SIGINT, 0),
        (signal.SIGINT, 2),
        (signal.SIGKILL, 0),
    )
    for seed in range(1)
]


@pytest.mark.parametrize(
    ("sig", "workers", "seed"), TRIALS, ids=[f"{signal.Signals(s).name}-workers{w}-{k}" for s, w, k in TRIALS]
)
@pytest.mark.slow
def test_killed_or_interrupted_extraction_leaves_no_process_and_resumes_identically(
    corpus: dict[str, Path], tmp_path: Path, sig: int, workers: int, seed: int
) -> None:
    store = tmp_path / "f.h5"
    process = _extract(corpus["manifest"], store, workers)
    deadline = time.monotonic() + 60
    while not (Path(f"{store}.partial") / "lock").exists() and time.monotonic() < deadline:  # extraction started
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.3, 1.5))
    family = [process.pid, *_children(process.pid)]
    os.kill(process.pid, sig)
    _, stderr = process.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    elif process.returncode != 0:  # 0: it finished before the signal arrived
        assert process.returncode == 130, stderr
        assert "Run the same command again to resume" in stderr or "run the same command again" in stderr
        assert "Traceback" not in stderr
    time.sleep(1.0)
    assert not [pid for pid in family if _alive(pid)], "processes outlived the killed command"
    again = _extract(corpus["manifest"], store, workers)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    _same_as_reference(store, corpus["reference"])


@pytest.mark.parametrize("damage", ["truncated-array", "bad-rows-json", "bad-meta"])
def test_a_damaged_partial_store_is_named_at_open(corpus: dict[str, Path], tmp_path: Path, damage: str) -> None:
    store = tmp_path / "f.h5"
    process = _extract(corpus["manifest"], store, 0)
    partial = Path(f"{store}.partial")
    deadline = time.monotonic() + 60
    while len(list(partial.glob("seg-*[0-9]"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    segment = sorted(partial.glob("seg-*[0-9]"))[0]
    if damage == "truncated-array":
        array = segment / "seq-lld.npy" if (segment / "seq-lld.npy").exists() else segment / "pooled-functionals.npy"
        array.write_bytes(array.read_bytes()[:-40])
        expected = f"{segment} is damaged"
    elif damage == "bad-rows-json":
        (segment / "rows.json").write_text("{not json")
        expected = f"{segment} is damaged"
    else:
        (partial / "meta.json").write_text("[]")
        expected = f"{partial / 'meta.json'} is damaged"
    again = _extract(corpus["manifest"], store, 0)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2 and expected in err and "Traceback" not in err, err
    assert err.count("\n") == 1


@pytest.mark.slow
def test_a_killed_decoding_worker_is_one_line_and_the_run_resumes(corpus: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "f.h5"
    process = _extract(corpus["manifest"], store, 2)
    deadline = time.monotonic() + 60
    while not list(Path(f"{store}.partial").glob("seg-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(process.pid)
    assert workers
    os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer would
    _, err = process.communicate(timeout=60)
    if process.returncode != 0:  # 0: the worker had finished its last batch already
        assert process.returncode == 2 and "a decoding worker process died" in err and "Traceback" not in err, err
        assert "out-of-memory killer" in err and err.count("\n") == 1
    again = _extract(corpus["manifest"], store, 0)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    _same_as_reference(store, corpus["reference"])
