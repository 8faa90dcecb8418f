"""SIGKILL at random instants, resume, and the final store equals one uninterrupted run (both backends).

A helper script writes 300 deterministic rows (skipping ``writer.done_ids``: the resume contract)
with small segments and a tiny sleep per row, then finalizes. It is killed with SIGKILL several
times (very early, mid-way during writing, during finalize), then run to completion.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ser.cache.format import partial_path
from tests.cache.storeutil import assert_same_content, read_content, subprocess_env

HELPER = textwrap.dedent("""
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from ser.cache.format import StoreLayout
    from ser.cache.writer import CacheWriter

    LAYOUT = StoreLayout(pooled={"mean": (3, 8), "std": (3, 8)}, seq={"layer_01": 8, "layer_03": 4})
    ATTRS = {"extractor": {"name": "crash", "config_hash": "c0ffee"}, "manifest": {"sha256": "ab" * 32}}
    N_ROWS = 300


    def row(i):
        rng = np.random.default_rng(i)
        length = int(rng.integers(0, 9))
        pooled = {"mean": rng.standard_normal((3, 8)), "std": rng.random((3, 8))}
        seq = {"layer_01": rng.standard_normal((length, 8)), "layer_03": rng.standard_normal((length, 4))}
        if i % 41 == 7:
            pooled["std"][1, 2] = np.nan  # rejected by the writer
        return pooled, seq


    def main(path, sleep):
        path = Path(path)
        if path.exists():
            print("already complete", flush=True)
            return
        writer = CacheWriter.open(path, layout=LAYOUT, attrs=ATTRS, segment_bytes=4096)
        done = writer.done_ids
        print(f"opened {len(done)}", flush=True)
        for i in range(N_ROWS):
            uid = f"u{i:04d}"
            if uid in done:
                continue
            if i % 29 == 3:
                writer.reject(uid, f"too short ({i})")
                continue
            pooled, seq = row(i)
            writer.add(uid, f"fp{i}", pooled, seq)
            if i % 25 == 0:
                print(f"row {i:04d}", flush=True)
            if sleep:
                time.sleep(sleep)
        print("finalizing", flush=True)
        writer.finalize()
        print("finalized", flush=True)


    if __name__ == "__main__":
        main(sys.argv[1], float(sys.argv[2]))
""")

SLEEP = 0.002
ROW_EVENTS = ["row 0050", "row 0125", "row 0200", "row 0275"]  # spaced wider than a kill delay's worth of rows


def _kill_plan(seed: int) -> list[tuple[str, float]]:
    """(event to wait for, then seconds before SIGKILL): very early, early, mid-run, late, during finalize."""
    rng = random.Random(seed)
    return [
        ("start", rng.uniform(0.0, 0.05)),  # while the interpreter starts: nothing written yet
        ("opened", 0.0),  # right after open: meta.json and lock only
        ("opened", rng.uniform(0.0, 0.03)),
        *[(event, rng.uniform(0.0, 0.04)) for event in ROW_EVENTS],
        ("finalizing", rng.uniform(0.0, 0.02)),  # while the final store is being assembled
    ]


def _launch_and_kill(script: Path, store: Path, event: str, delay: float) -> tuple[int | None, int]:
    """Run the helper, SIGKILL it ``delay`` s after ``event``; (rows done at open or None, return code)."""
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store), str(SLEEP)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert proc.stdout is not None
    done_at_open = None
    if event != "start":
        for line in proc.stdout:
            if line.startswith("opened"):
                done_at_open = int(line.split()[1])
            if line.startswith((event, "finalizing", "already complete")):
                break
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGKILL), stderr
    return done_at_open, proc.returncode


def _flushed_ids(store: Path) -> list[str]:
    """Ids (stored or rejected) in the acknowledged segments of the partial folder, in segment order."""
    ids: list[str] = []
    for segment in sorted(partial_path(store).glob("seg-*")):
        if segment.name.endswith(".tmp"):
            continue  # an interrupted flush: never acknowledged, removed on resume
        record = json.loads((segment / "rows.json").read_text())
        ids.extend(sorted([*record["ids"], *record["rejected"]]))
    return ids


@pytest.mark.parametrize(("suffix", "seed"), [(".h5", 1), (".zarr", 2), (".h5", 3)])
def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(tmp_path: Path, suffix: str, seed: int) -> None:
    script = tmp_path / "helper.py"
    script.write_text(HELPER)

    # The reference: the same helper code, uninterrupted and without sleeping, in this process.
    namespace: dict[str, object] = {"__name__": "crash_helper"}
    exec(compile(HELPER, str(script), "exec"), namespace)
    reference = tmp_path / f"reference{suffix}"
    namespace["main"](str(reference), 0.0)  # type: ignore[operator]
    want = read_content(reference)
    assert len(want.ids) > 250 and len(want.rejected) >= 10
    assert any(reason.startswith("non-finite values in std") for _, reason in want.rejected)

    store = tmp_path / f"crashed{suffix}"
    progress = []
    killed = 0
    for event, delay in _kill_plan(seed):
        done_at_open, returncode = _launch_and_kill(script, store, event, delay)
        if done_at_open is not None:
            progress.append(done_at_open)
        killed += returncode == -signal.SIGKILL
        if not store.exists():
            # What survived the kill is exactly a prefix of the rows, each once, ready to resume from.
            flushed = _flushed_ids(store)
            assert flushed == [f"u{i:04d}" for i in range(len(flushed))]
    # Every kill but perhaps the one during finalize hit a live writer; each launch resumed from the rows the
    # previous ones flushed (the last one from late in the run: the kill after row 275 lost at most a segment).
    assert killed >= len(_kill_plan(seed)) - 1
    assert progress == sorted(progress)
    assert progress[-1] >= 250

    finish = subprocess.run(
        [sys.executable, str(script), str(store), "0"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert finish.returncode == 0, finish.stderr
    assert finish.stdout.splitlines()[-1] in ("finalized", "already complete")
    if finish.stdout.splitlines()[-1] == "finalized":
        assert not partial_path(store).exists()
    assert not store.with_name(store.name + ".assembling").exists()

    got = read_content(store)
    assert_same_content(got, want)
