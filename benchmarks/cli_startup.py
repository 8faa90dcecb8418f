"""Wall time of `ser --help` against its 0.5 s budget.

Runs the console script in fresh interpreters (best of N, after one warm-up to fill the OS file
cache) and prints the ratio time / budget as the last line: below 1.0 meets the budget.

    python benchmarks/cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

BUDGET_SECONDS = 0.5


def time_help(repeat: int) -> float:
    """Best wall time of `ser --help` over ``repeat`` runs, in seconds."""
    ser = shutil.which("ser")
    command = [ser, "--help"] if ser else [sys.executable, "-m", "ser.cli", "--help"]
    subprocess.run(command, check=True, capture_output=True)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    seconds = time_help(args.repeat)
    print(f"ser --help: best of {args.repeat}: {seconds * 1000:.0f} ms (budget {BUDGET_SECONDS * 1000:.0f} ms)")
    print(f"{seconds / BUDGET_SECONDS:.3f}")


if __name__ == "__main__":
    main()
