"""``benchmarks/gpu_check.py --device cpu``, the smoke test of the one GPU check (issue 28): every row of the
table appears and the last line is the extraction overhead ratio (the benchmark convention)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

pytestmark = pytest.mark.slow  # about 30 s on 2 CPU cores; CI runs it (-m "")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_on_cpu_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=SCRIPT.parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert [cell.strip() for cell in table[0].split("|")[1:-1]] == ["row", "setting", "seconds", "result", "peak MiB"]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table[2:]]
    settings = [f"{row[0]}: {row[1]}" for row in rows]
    assert "extract: tiny hubert 2x32, 3 clips, asked float16, computed float32" in settings
    assert any(s.startswith("extract: tiny hubert 2x32, bare batched forward") for s in settings)
    for amp in ("off", "on"):
        for engine in ("stacked", "sequential"):
            assert f"fleser: 5 members, AMP {amp}, {engine}, 1 epochs" in settings
        row = rows[settings.index(f"fleser: 5 members, AMP {amp}, stacked vs sequential")]
        assert re.search(r"speed-up [\d.]+x; UA gap [\d.]+ (<=|>) spread [\d.]+", row[3])
    fleser = [row for row in rows if row[0] == "fleser" and "epochs" in row[1]]
    assert all(row[4] == "n/a" for row in fleser)  # no CUDA peak memory on CPU
    assert all(re.search(r"of the limit$", row[3]) for row in fleser)
    (ablate,) = [row for row in rows if row[0] == "ablate"]
    assert ablate[3].startswith("4 of 4 jobs finished (exit 0)")
    assert re.fullmatch(r"\d+\.\d{3}", lines[-1]) and float(lines[-1]) > 0
