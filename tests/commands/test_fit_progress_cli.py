"""``ser fit`` talks: its first line on stderr at once, a bar, each member's line as it ends; ``--quiet``
keeps stderr silent. On the real RAVDESS eGeMAPS cache, with the classic head of the README."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def _fit(manifest: Path, store: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    command = [
        sys.executable, "-m", "ser.cli", "fit", "--fusion", "logreg", "-m", str(manifest), "-p", "speaker-loso",
        "--audio", str(store), "--set", "val_by=utterance", "--folds", "Actor_01,Actor_02", "--seeds", "0,1",
        "-o", str(out), *extra,
    ]  # fmt: skip
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    first = process.stderr.readline() if "--quiet" not in extra else ""
    first_seconds = time.monotonic() - start
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(command, process.returncode, stdout, first + stderr), first_seconds


def test_fit_prints_progress_on_stderr_and_quiet_silences_it(
    ravdess_egemaps: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, store = ravdess_egemaps
    done, first_seconds = _fit(manifest, store, tmp_path / "talk")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "ser fit: logreg, checking the inputs and reading the stores"
    assert first_seconds < 5  # the interpreter start and the CLI imports only (0.2 s on an idle machine)
    members = [line.split("\r")[-1] for line in done.stderr.replace("\r", "\n").splitlines() if "fold Actor_" in line]
    assert sorted(m.split(":")[0] for m in members) == ["fold Actor_01 seed 0", "fold Actor_02 seed 0"]
    assert all("validation UA" in m and "C=" in m for m in members)
    assert "training 2 members (classic heads: one fit serves every seed)" in done.stderr
    # the results table (stdout): both seeds, no epoch for a classic head, the spread over folds only
    table = [line for line in done.stdout.splitlines() if line.startswith("Actor_0")]
    assert len(table) == 4 and all(line.split()[-1] == "-" for line in table)
    assert "mean ± std over folds (every seed shares the deterministic fit): UA " in done.stdout

    quiet, _ = _fit(manifest, store, tmp_path / "quiet", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.splitlines()[-2:-1] == done.stdout.splitlines()[-2:-1]  # the same pooled numbers
