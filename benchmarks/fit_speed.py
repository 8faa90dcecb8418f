"""Speed of `ser fit` on an IEMOCAP-sized synthetic cache, against re-running the upstream each epoch.

Cache: 5531 utterances in 5 sessions x 2 speakers, 4 classes, 4.5 s each; an audio store with pooled
mean of 13 x 768 and a text store with pooled CLS of 13 x 768, every speaker with every class. The
class signal is WEAK (class centres of norm about 1.7 (audio) and 1.1 (text) in 768 dimensions of
unit noise; the fit reaches a test UA of about 68 %, not 100 %), so validation keeps moving and the
epochs are realistic. Unless ``--skip-memocmt``, the stores also get 768-d sequences (about 200
audio frames and 30 tokens per utterance, ~1.7 GB) and memocmt is timed on them; with
``--skip-memocmt`` no sequence is written.

Timed (device pinned to cpu; wall and CPU seconds, since the machine may be shared): a whole
5-fold leave-one-session-out run of ``fleser`` on pooled vectors with its paper training preset
(``ser.fusion.presets``: AdamW 1e-4, batch 64, 100 epochs, plateau schedule; every epoch runs, the
best validation epoch is kept), with seconds per epoch; then ``memocmt`` on sequences for
``--memocmt-epochs`` epochs per fold (its preset otherwise).

Cost floor of that fleser run: about 4 MFLOP per training row and step (fwd + bwd, 768-d inputs,
H = 256), 3540 training rows per fold, 500 epochs: ~7.8 TFLOP, i.e. ~130 GFLOPS sustained for 60 s,
more than two AVX2 cores deliver at batch 64 (measured: ~15 ms CPU per training step, ~0.9 s CPU
per epoch). The < 60 s budget (DESIGN §8) fits early-stopped runs of about 60 epochs in all, not the
paper's fixed 100 epochs per fold.

s3prl-style comparison (the frozen upstream recomputed for every utterance it needs, every epoch):
with u = the measured forward time of a base-size HuBERT per audio second on this machine,

    s3prl  = u x (train + validation audio seconds, summed over every epoch of every fold
                  + the test audio once per fold) + the same head training
    ser    = u x (all audio once: one extraction pass) + the cached fleser fit
    ratio  = s3prl / ser

Last line: fleser seconds for the 5-fold run (target < 60 s on 2 CPU cores).

    python benchmarks/fit_speed.py [--memocmt-epochs 2] [--skip-memocmt] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ser.cache.format import StoreLayout
from ser.cache.writer import CacheWriter
from ser.fusion.config import FitConfig, TrainConfig
from ser.fusion.run import run_fit
from ser.manifests.schema import ManifestHeader, Utterance, write_manifest

N = 5531
CLASSES = ["ang", "hap", "sad", "neu"]
SECONDS_PER_UTTERANCE = 4.5
SIGNAL = {"audio": 0.06, "text": 0.04}
"""Per-dimension amplitude of the class centre (noise is N(0, 1) per dimension)."""


def build_cache(folder: Path, with_sequences: bool) -> tuple[Path, Path, Path]:
    """Manifest + audio store (pooled ``mean``) + text store (pooled ``cls``); sequences only if asked."""
    rng = np.random.default_rng(0)
    rows = []
    labels = [(i // 10) % 4 for i in range(N)]  # every speaker gets every class (i % 10 picks the speaker)
    for i in range(N):
        session = 1 + i % 5
        gender = "FM"[(i // 5) % 2]
        speaker = f"Ses0{session}{gender}"
        rows.append(Utterance(id=f"{speaker}_{i:05d}", label=CLASSES[labels[i]], speaker=speaker, gender=gender,
                              session=f"Ses0{session}", text="x", duration=SECONDS_PER_UTTERANCE))
    manifest = folder / "iemocap-like.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="iemocap", root=str(folder), label_set="iemocap4"), rows)
    audio, text = folder / "audio.h5", folder / "text.h5"
    for path, modality, stat, n_frames in ((audio, "audio", "mean", 200), (text, "text", "cls", 30)):
        centers = rng.normal(size=(4, 768)).astype(np.float32) * SIGNAL[modality]
        layout = StoreLayout(pooled={stat: (13, 768)}, seq={"layer_12": 768} if with_sequences else {})
        with CacheWriter.open(path, layout=layout, attrs={"extractor": {"config_hash": stat}}) as writer:
            for i, row in enumerate(rows):
                pooled = rng.normal(size=(13, 768)).astype(np.float32) + centers[labels[i]]
                seq = {}
                if with_sequences:
                    length = int(rng.integers(n_frames // 2, n_frames * 3 // 2))
                    seq = {"layer_12": rng.normal(size=(length, 768)).astype(np.float32) + centers[labels[i]]}
                writer.add(row.id, row.fingerprint(), {stat: pooled}, seq)
            writer.finalize()
    return manifest, audio, text


def upstream_seconds_per_audio_second() -> float:
    """Measured forward time of a random-init base-size HuBERT per second of audio (CPU, torch's
    default threads: what an s3prl-style run would use)."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.HubertModel(transformers.HubertConfig()).eval()
    audio = torch.randn(1, 16000 * 8)
    with torch.inference_mode():
        model(audio)
        start = time.perf_counter()
        model(audio)
    return (time.perf_counter() - start) / 8


def timed_fit(config: FitConfig) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds of this process (what the fit would take alone on an idle core when
    the machine is shared) and the metrics of one run."""
    start, cpu = time.perf_counter(), time.process_time()
    run_dir = run_fit(config)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return seconds, cpu_seconds, json.loads((run_dir / "metrics.json").read_text())


def s3prl_audio_seconds(metrics: dict) -> float:
    """Audio seconds an s3prl-style run would push through the upstream for this fit: every training
    and validation utterance in every epoch of every fold, plus each fold's test utterances once."""
    total = 0.0
    for run in metrics["runs"]:
        n_test, n_val = run["test"]["n"], run["validation"]["n"]
        n_train = N - n_test - n_val
        total += (run["epochs_run"] * (n_train + n_val) + n_test) * SECONDS_PER_UTTERANCE
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memocmt-epochs", type=int, default=2, help="Epochs per fold of the memocmt run.")
    parser.add_argument("--skip-memocmt", action="store_true", help="No memocmt run and no sequences written.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the fits (train.threads).")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)")
    with tempfile.TemporaryDirectory(prefix="ser-fit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        manifest, audio, text = build_cache(tmp, with_sequences=not args.skip_memocmt)
        print(f"synthetic IEMOCAP-sized cache built in {time.perf_counter() - start:.0f} s")
        common = {"manifest": str(manifest), "protocol": "iemocap-loso", "out": str(tmp / "runs")}
        train = TrainConfig.for_head("fleser", device="cpu", threads=args.threads)
        fleser_seconds, fleser_cpu, fleser = timed_fit(FitConfig(fusion="fleser", audio=str(audio),
                                                                 text=f"{text}:stat=cls", train=train, **common))
        epochs = sum(r["epochs_run"] for r in fleser["runs"])
        best = [r["best_epoch"] for r in fleser["runs"]]
        print(f"fleser (paper preset: {train.optimizer} lr {train.lr:g}, batch {train.batch_size}, {train.schedule} "
              f"schedule): 5-fold LOSO in {fleser_seconds:.1f} s wall, {fleser_cpu:.1f} s CPU = {epochs} epochs, "
              f"{fleser_seconds / epochs:.3f} s per epoch (train + validation; {fleser_cpu / epochs:.3f} s CPU); "
              f"best validation epochs {best}; "
              f"test UA {100 * fleser['test']['ua']['mean']:.1f} ± {100 * fleser['test']['ua']['std']:.1f}")
        if not args.skip_memocmt:
            seconds, _, _ = timed_fit(FitConfig(fusion="memocmt", audio=f"{audio}:seq=layer_12",
                                             text=f"{text}:seq=layer_12",
                                             train=TrainConfig.for_head("memocmt", epochs=args.memocmt_epochs,
                                                                        device="cpu", threads=args.threads),
                                             **common))
            print(f"memocmt: 5-fold LOSO with {args.memocmt_epochs} epochs per fold in {seconds:.1f} s "
                  f"({seconds / (5 * args.memocmt_epochs):.1f} s per fold-epoch on CPU)")
        per_audio_second = upstream_seconds_per_audio_second()
        extraction = N * SECONDS_PER_UTTERANCE * per_audio_second
        s3prl = s3prl_audio_seconds(fleser) * per_audio_second + fleser_seconds
        ours = extraction + fleser_seconds
        print(f"base-size upstream forward: {per_audio_second:.3f} s per audio second; s3prl-style (upstream for "
              f"every train + validation utterance in each of the {epochs} epochs, test once per fold, plus the "
              f"head) {s3prl / 3600:.1f} h vs one extraction pass {extraction / 3600:.2f} h + cached fit "
              f"{fleser_seconds:.0f} s = {s3prl / ours:.0f}x")
        print(f"{fleser_seconds:.1f}")


if __name__ == "__main__":
    main()
