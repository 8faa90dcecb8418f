"""Speed of `ser fit` on an IEMOCAP-sized synthetic cache, against re-running the upstream each epoch.

Cache: 5531 utterances in 5 sessions x 2 speakers, 4 classes; an audio store with pooled mean of
13 x 768 and a 768-d sequence layer of about 200 frames per utterance, and a text store with
pooled CLS of 13 x 768 and about 30 tokens per utterance (class-dependent signal plus noise).

Timed: a whole 5-fold leave-one-session-out run of ``fleser`` (pooled vectors) and of ``memocmt``
(sequences, fewer epochs by default because it is meant for a GPU), each with the trainer's
defaults otherwise. For comparison, the cost of the s3prl way (the frozen base-size upstream
recomputed for every training utterance in every epoch) is estimated from a measured base-size
HuBERT forward on this machine, for the same number of epochs as the fleser run used.

Last line: fleser seconds for the 5-fold run (target < 60 on 2 CPU cores).

    python benchmarks/fit_speed.py [--memocmt-epochs 2] [--skip-memocmt]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ser.cache.format import StoreLayout
from ser.cache.writer import CacheWriter
from ser.fusion.run import FitConfig, run_fit
from ser.fusion.train import TrainConfig
from ser.manifests.schema import ManifestHeader, Utterance, write_manifest

N = 5531
CLASSES = ["ang", "hap", "sad", "neu"]
IEMOCAP_AUDIO_SECONDS = 7.0 * 3600


def build_cache(folder: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):
        session = 1 + i % 5
        gender = "FM"[(i // 5) % 2]
        speaker = f"Ses0{session}{gender}"
        rows.append(Utterance(id=f"{speaker}_{i:05d}", label=CLASSES[i % 4], speaker=speaker, gender=gender,
                              session=f"Ses0{session}", text="x", duration=4.5))
    manifest = folder / "iemocap-like.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="iemocap", root=str(folder), label_set="iemocap4"), rows)
    centers = rng.normal(size=(4, 768)).astype(np.float32)
    audio, text = folder / "audio.h5", folder / "text.h5"
    for path, stat, n_frames in ((audio, "mean", 200), (text, "cls", 30)):
        layout = StoreLayout(pooled={stat: (13, 768)}, seq={"layer_12": 768})
        with CacheWriter.open(path, layout=layout, attrs={"extractor": {"config_hash": stat}}) as writer:
            for i, row in enumerate(rows):
                signal = 0.5 * centers[i % 4]
                pooled = (rng.normal(size=(13, 768)).astype(np.float32) + signal)
                length = int(rng.integers(n_frames // 2, n_frames * 3 // 2))
                frames = (rng.normal(size=(length, 768)).astype(np.float32) + signal)
                writer.add(row.id, row.fingerprint(), {stat: pooled}, {"layer_12": frames})
            writer.finalize()
    return manifest, audio, text


def upstream_seconds_per_audio_second() -> float:
    """Measured forward time of a random-init base-size HuBERT per second of audio (CPU)."""
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


def timed_fit(config: FitConfig) -> tuple[float, dict]:
    start = time.perf_counter()
    run_dir = run_fit(config)
    seconds = time.perf_counter() - start
    return seconds, json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memocmt-epochs", type=int, default=2)
    parser.add_argument("--skip-memocmt", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ser-fit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        manifest, audio, text = build_cache(tmp)
        print(f"synthetic IEMOCAP-sized cache built in {time.perf_counter() - start:.0f} s")
        common = {"manifest": str(manifest), "protocol": "iemocap-loso", "out": str(tmp / "runs")}
        fleser_seconds, fleser = timed_fit(FitConfig(fusion="fleser", audio=str(audio), text=f"{text}:stat=cls",
                                                     train=TrainConfig(batch_size=64), **common))
        epochs = sum(r["epochs_run"] for r in fleser["runs"])
        print(f"fleser: 5-fold LOSO in {fleser_seconds:.1f} s ({epochs} epochs in all), test UA "
              f"{100 * fleser['test']['ua']['mean']:.1f} ± {100 * fleser['test']['ua']['std']:.1f}")
        if not args.skip_memocmt:
            seconds, _ = timed_fit(FitConfig(fusion="memocmt", audio=f"{audio}:seq=layer_12",
                                                   text=f"{text}:seq=layer_12",
                                                   train=TrainConfig(epochs=args.memocmt_epochs, batch_size=32),
                                                   **common))
            print(f"memocmt: 5-fold LOSO with {args.memocmt_epochs} epochs per fold in {seconds:.1f} s "
                  f"({seconds / (5 * args.memocmt_epochs):.1f} s per fold-epoch on CPU)")
        per_audio_second = upstream_seconds_per_audio_second()
        train_share = 0.64  # train rows per fold (4 of 5 sessions, minus 20 % validation)
        s3prl_seconds = epochs * train_share * IEMOCAP_AUDIO_SECONDS * per_audio_second
        print(f"base-size upstream forward: {per_audio_second:.3f} s per audio second; re-running it for every "
              f"training utterance in each of the {epochs} epochs would take {s3prl_seconds / 3600:.1f} h "
              f"= {s3prl_seconds / fleser_seconds:.0f}x the cached fleser run")
        print(f"{fleser_seconds:.1f}")


if __name__ == "__main__":
    main()
