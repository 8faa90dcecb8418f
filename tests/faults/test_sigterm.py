"""``ser extract`` cancelled the way a cluster scheduler cancels a job: SIGTERM to the whole process group,
decoding workers included. It is a stop like Ctrl-C (exit 130, the rows kept, the resume identical), not a
"decoding worker died" crash.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ser.cache.reader import CacheReader
from tests.fakes.demo import demo_manifest


def _extract(manifest: Path, store: Path) -> subprocess.Popen:
    """``ser extract`` with two decoding workers, in a process group of its own (as a batch job runs)."""
    command = [sys.executable, "-m", "ser.cli", "extract", "--model", "egemaps", "-m", str(manifest), "-o", str(store)]
    options = ["--num-workers", "2", "--batch-items", "4", "--flush-seconds", "0", "--no-progress"]
    return subprocess.Popen(
        [*command, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


@pytest.mark.slow
def test_sigterm_to_the_process_group_stops_the_extraction_and_the_resume_is_identical(tmp_path: Path) -> None:
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    manifest = demo_manifest(tmp_path, speakers=["Actor_01"])
    reference = tmp_path / "reference.h5"
    run_extraction(manifest, build_extractor("egemaps"), reference, RunOptions(num_workers=0, progress=False))

    store = tmp_path / "f.h5"
    process = _extract(manifest, store)
    partial = Path(f"{store}.partial")
    deadline = time.monotonic() + 120
    while not list(partial.glob("seg-*[0-9]")) and time.monotonic() < deadline:  # some rows are written
        time.sleep(0.02)
    assert list(partial.glob("seg-*[0-9]")), "no rows were written"
    os.killpg(process.pid, signal.SIGTERM)  # start_new_session: the group id is the command's pid
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "run the same command again to resume" in err.lower() and "Traceback" not in err, err
    assert "decoding worker process died" not in err and "out-of-memory" not in err, err
    kept = re.search(r"(\d+) rows are kept", err)
    assert kept and int(kept.group(1)) > 0, err

    again = _extract(manifest, store)
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    assert f"({kept.group(1)} were already done)" in out, out  # nothing extracted before the stop was lost
    with CacheReader(store) as got, CacheReader(reference) as want:
        assert sorted(got.ids) == sorted(want.ids) and not got.rejected
        for stat in want.layout.pooled:
            np.testing.assert_array_equal(got.pooled(stat, ids=want.ids), want.pooled(stat, ids=want.ids))
