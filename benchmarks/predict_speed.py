"""``ser predict`` speed against the bare extractor on the same files (target: under 10 % overhead).

Two models, each fitted here on the packaged RAVDESS clips (a few epochs; speed does not depend on
accuracy): eGeMAPS functionals + mlp (audio) and MiniLM mean + mlp (text). For each, over the same
inputs and the same batches of ``--batch`` items:

  extract  decode + resample + ``extractor.extract`` of every batch, nothing else (the limit:
           a prediction cannot skip the features)
  predict  ``SerModel.predict_many``: the same extraction plus the recorded view, float rounding,
           z-scoring, the head, probabilities and the per-input result objects

Both run in this process after one warm-up pass; each is timed ``--rounds`` times, alternately,
and the best time counts. Also printed: the latency of one ``model.predict(path)`` call (warm,
median of 20 files) and the wall time of the whole ``ser predict RUN FILE`` command for one file
(a new process: interpreter, imports, model and extractor loading; informational).

Last line (the tracked number, lower is better): the worst predict / extract time ratio of the two
models. Target: <= 1.10.

    python benchmarks/predict_speed.py [--files 240] [--batch 16] [--rounds 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path


def _fit(manifest: Path, inputs: list[str], out: Path) -> Path:
    from ser.fusion.run import FitConfig, TrainConfig, run_fit

    modality, store = inputs
    config = FitConfig(
        fusion="mlp",
        manifest=str(manifest),
        protocol="speaker-loso",
        val_by="utterance",
        folds=["Actor_01"],
        train=TrainConfig(epochs=3, device="cpu"),
        out=str(out),
        **{modality: store},
    )
    return run_fit(config)


def _extract_only(model: object, requests: list, batch: int) -> None:
    """Decode and extract every batch exactly as predict does, and nothing else."""
    from ser.extract.audio import load_audio
    from ser.extract.base import Item

    (extractor,) = model.extractors.values()
    rate = extractor.spec.sample_rate or 16000
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        if extractor.spec.modality == "audio":
            items = [Item(id=r.id, audio=load_audio(r.path, sample_rate=rate)) for r in chunk]
        else:
            items = [Item(id=r.id, text=r.text) for r in chunk]
        extractor.extract(items, [])


def _best(fn: object, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction
    from ser.manifests.build import build_manifest
    from ser.manifests.schema import read_manifest
    from ser.predict.model import Request, load_model

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="ser-predict-bench-", dir=args.dir))
    corpus = Path(str(resources.files("ser").joinpath("demo_data", "ravdess16k")))
    manifest = work / "demo.jsonl"
    build_manifest("ravdess", corpus, manifest)
    rows = read_manifest(manifest)
    stores = {"egemaps": work / "egemaps.h5", "minilm": work / "minilm.h5"}
    for family, store in stores.items():
        run_extraction(manifest, build_extractor(family, device="cpu"), store, RunOptions(progress=False))
    runs = {
        "egemaps + mlp": _fit(manifest, ["audio", str(stores["egemaps"])], work / "runs"),
        "minilm + mlp": _fit(manifest, ["text", str(stores["minilm"])], work / "runs"),
    }
    utterances = rows.utterances[: args.files]
    print(
        f"{len(utterances)} inputs (packaged RAVDESS clips), batches of {args.batch}, best of {args.rounds} rounds, "
        f"{torch.get_num_threads()} torch threads"
    )
    ratios = []
    for title, run in runs.items():
        model = load_model(run, device="cpu", batch_size=args.batch)
        if model.needs_audio:
            requests = [Request(id=u.id, path=rows.audio_path(u)) for u in utterances]
        else:
            requests = [Request(id=u.id, text=u.text) for u in utterances]
        model.predict_many(requests)  # warm-up (first calls allocate, load openSMILE configs, ...)
        _extract_only(model, requests, args.batch)
        extract_times, predict_times = [], []
        for _ in range(args.rounds):
            extract_times += _best(lambda: _extract_only(model, requests, args.batch), 1)  # noqa: B023
            predict_times += _best(lambda: model.predict_many(requests), 1)  # noqa: B023
        extract, predict = min(extract_times), min(predict_times)
        single = []
        for request in requests[:20]:
            start = time.perf_counter()
            model.predict_many([request])
            single.append(time.perf_counter() - start)
        ratio = predict / extract
        ratios.append(ratio)
        print(
            f"{title:14s} extract {extract:6.2f} s ({len(requests) / extract:6.1f} inputs/s)   "
            f"predict {predict:6.2f} s ({len(requests) / predict:6.1f} inputs/s, "
            f"{1000 * predict / len(requests):5.1f} ms per input in batches)   "
            f"one input alone {1000 * statistics.median(single):5.1f} ms   predict/extract {ratio:.3f}"
        )
        if model.needs_audio:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "ser.cli", "predict", str(run), str(requests[0].path), "--device", "cpu"],
                check=True,
                capture_output=True,
            )
            print(
                f"{'':14s} whole `ser predict RUN FILE` command for one file (new process, model loading "
                f"included): {time.perf_counter() - start:.2f} s"
            )
    print(f"predict / extract time ratio (worst of the two models; target <= 1.10): {max(ratios):.3f}")


if __name__ == "__main__":
    main()
