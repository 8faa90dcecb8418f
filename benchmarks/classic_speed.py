"""``ser fit --fusion logreg`` on RAVDESS eGeMAPS, leave-one-speaker-out, against a bare scikit-learn loop
doing the same fits on one BLAS thread: what the harness costs on top of the estimator.

Data: the RAVDESS folder given (default ``../shared/data/ravdess16k``: actors 01-20, 1200 clips); its
eGeMAPS store is extracted once into ``--work`` and reused (not timed).

Printed, in one run:

1. the bare loop (the limit): a fresh Python process that reads the same folds and the store's
   functionals, and per fold z-scores on the training rows, fits the head's 5-point ``C`` grid
   (class-balanced ``LogisticRegression``), keeps the best validation UA, refits on train +
   validation and predicts the test rows: once with one BLAS thread (``OPENBLAS_NUM_THREADS=1``,
   ``OMP_NUM_THREADS=1``) and once with the library's default threads (one per core), for scale;
2. ``ser fit --fusion logreg ... --quiet`` (a fresh process: start-up, reading the store, the fits,
   testing, writing the run directory and the 20 model files), ``--repeats`` times, best kept;
3. both loops' mean test UA (they must agree: the same fits).

``--busy N`` starts N processes that spin on a core each for the whole measurement (a shared machine).
Last line: ``ser fit`` seconds / bare-loop (one thread) seconds; the target is 1.2 or less.

    python benchmarks/classic_speed.py [--data DIR] [--work DIR] [--busy 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BARE_LOOP = r"""
import json, sys, time
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler
from ser.cache.reader import CacheReader
from ser.manifests.labels import load_label_set
from ser.manifests.protocols import ValidationRule, make_folds
from ser.manifests.schema import read_manifest

manifest, store, grid = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
labels = load_label_set("ravdess8")
folds = make_folds(read_manifest(manifest), "speaker-loso", label_set=labels, rule=ValidationRule(by="utterance"))
with CacheReader(store) as reader:
    features = dict(zip(reader.ids, reader.pooled("functionals")[:, 0].astype(np.float64), strict=True))
start = time.perf_counter()
scores = []
for fold in folds.folds:
    def xy(ids):
        return np.stack([features[i] for i in ids]), np.array([labels.index_of(folds.utterances[i]) for i in ids])
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = xy(fold.train), xy(fold.validation), xy(fold.test)
    scaler = StandardScaler().fit(x_tr)
    fitted = [
        LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(x_tr), y_tr)
        for c in grid
    ]
    val = [balanced_accuracy_score(y_va, m.predict(scaler.transform(x_va))) for m in fitted]
    c = grid[int(np.argmax(val))]
    x_all, y_all = np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])
    scaler = StandardScaler().fit(x_all)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(x_all), y_all)
    scores.append(balanced_accuracy_score(y_te, model.predict(scaler.transform(x_te))))
print(json.dumps({"fit_seconds": time.perf_counter() - start, "ua": float(np.mean(scores)), "folds": len(scores)}))
"""


def prepare(data: Path, work: Path) -> tuple[Path, Path]:
    """The manifest and eGeMAPS store of ``data`` in ``work`` (extracted once, then reused)."""
    manifest, store = work / "rav.jsonl", work / "rav.egemaps.h5"
    if not manifest.exists():
        subprocess.run(["ser", "manifest", "ravdess", str(data), "-o", str(manifest)], check=True)
    if not store.exists():
        subprocess.run(
            ["ser", "extract", "--model", "egemaps", "-m", str(manifest), "-o", str(store), "--no-progress"],
            check=True,
        )
    return manifest, store


def bare_loop(manifest: Path, store: Path, grid: list[float], one_thread: bool) -> tuple[float, dict[str, float]]:
    """Wall seconds of the bare loop's process and what it printed."""
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
        if one_thread:
            env[name] = "1"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", BARE_LOOP, str(manifest), str(store), json.dumps(grid)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return time.perf_counter() - start, json.loads(done.stdout.strip().splitlines()[-1])


def ser_fit(manifest: Path, store: Path, out: Path) -> tuple[float, float]:
    """Wall seconds of ``ser fit --fusion logreg`` and its mean test UA."""
    start = time.perf_counter()
    subprocess.run(
        ["ser", "fit", "--fusion", "logreg", "-m", str(manifest), "-p", "speaker-loso", "--audio", str(store),
         "--set", "val_by=utterance", "-o", str(out), "--quiet"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    (run,) = out.glob("logreg-*")
    return seconds, json.loads((run / "metrics.json").read_text())["test"]["ua"]["mean"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ravdess16k")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ser-classic-speed")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning on a core each meanwhile")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each timed loop (best kept)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    manifest, store = prepare(args.data, args.work)

    from ser.fusion.heads import head_module

    grid = list(head_module("logreg").build({"audio": 88}, 8).C)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(2 if spinners else 0)
        print(f"load average at start: {os.getloadavg()[0]:.2f} ({args.busy} busy processes, {os.cpu_count()} cores)")
        bare = min(bare_loop(manifest, store, grid, one_thread=True) for _ in range(args.repeats))
        default = bare_loop(manifest, store, grid, one_thread=False)
        print(
            f"bare scikit-learn loop, 1 BLAS thread: {bare[0]:.2f} s wall ({bare[1]['fit_seconds']:.2f} s fitting "
            f"{bare[1]['folds']} folds x {len(grid)} grid points + refit), UA {100 * bare[1]['ua']:.2f}"
        )
        print(
            f"bare scikit-learn loop, default BLAS threads: {default[0]:.2f} s wall "
            f"({default[1]['fit_seconds']:.2f} s fitting)"
        )
        runs = []
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory(dir=args.work) as out:
                runs.append(ser_fit(manifest, store, Path(out) / f"runs{repeat}"))
        seconds, ua = min(runs)
        print(f"ser fit --fusion logreg: {seconds:.2f} s wall (runs: {', '.join(f'{s:.2f}' for s, _ in runs)}), "
              f"UA {100 * ua:.2f}")  # fmt: skip
        if abs(ua - bare[1]["ua"]) > 1e-9:
            print(f"warning: the two loops disagree on UA ({100 * ua:.4f} against {100 * bare[1]['ua']:.4f})")
        print(f"ser fit / bare loop (1 thread): {seconds / bare[0]:.2f}")
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


if __name__ == "__main__":
    main()
