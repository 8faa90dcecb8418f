"""Speed of ``ser probe``: a layer sweep trained stacked (every layer x fold x seed member as one model)
against the same sweep one member at a time (``--engine sequential``), and against the machine's own
matrix-product rate at the probe head's shapes, measured in the same run.

Two stores:

* ``--manifest M --store S``: a real multi-layer store, e.g. MELD text with MiniLM (``ser manifest meld``,
  ``ser extract --model minilm``), protocol ``official`` tested on the dev split;
* always: a small synthetic 13-layer store (random pooled vectors of 13 x 256 with a weak class signal,
  the shape of a small SSL upstream; 600 utterances, 6 speakers, leave-one-speaker-out on 2 folds);
* always: a tiny random-initialised HuBERT (12 layers of 256, saved with ``save_pretrained`` and extracted by
  ``ser extract --model hubert --checkpoint``) over the packaged demo clips (240 RAVDESS clips, 4 actors,
  leave-one-speaker-out): the real extraction path, a store whose layers carry no emotion.

Per store it prints the stacked and sequential seconds, the member-steps trained, the achieved GFLOPS of the
mlp head's training matrix products (forward + backward = 3 x forward, counted from its shapes), the GEMM
limit at those shapes (``fit_speed.gemm_rate``: batched ``bmm`` at the stacked member count, float32) and
achieved / limit. The LAST line is the ratio sequential seconds / stacked seconds of the last store swept.

    python benchmarks/probe_speed.py [--manifest meld.jsonl --store meld.minilm.h5] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fit_speed import gemm_rate
from ser.cache.format import StoreLayout
from ser.cache.writer import CacheWriter
from ser.fusion.config import config_from_dict
from ser.manifests.schema import ManifestHeader, Utterance, write_manifest
from ser.probe.sweep import build_sweep, run_sweep

HIDDEN = 512
"""The mlp head's hidden width (``ser fusion show mlp``)."""


def synthetic_store(
    folder: Path, layers: int = 13, dim: int = 256, speakers: int = 6, per: int = 100
) -> tuple[Path, Path]:
    """(manifest, store): random pooled ``mean`` of (layers, dim), a class signal growing with depth."""
    classes = ["neutral", "angry", "sad", "happy"]
    rows = [
        Utterance(id=f"s{s}_{k:03d}", label=classes[k % 4], speaker=f"spk{s}", gender="MF"[s % 2])
        for s in range(speakers)
        for k in range(per)
    ]
    manifest = folder / "synthetic.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="ravdess", root=str(folder)), rows)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, dim)).astype(np.float32) / np.sqrt(dim) * 2.0
    depth = np.linspace(0.2, 1.0, layers, dtype=np.float32)[:, None]
    store = folder / "synthetic.h5"
    layout = StoreLayout(pooled={"mean": (layers, dim)})
    with CacheWriter.open(store, layout=layout, attrs={"extractor": {"config_hash": "synthetic"}}) as writer:
        for row in rows:
            stack = rng.normal(size=(layers, dim)).astype(np.float32) + depth * centres[classes.index(row.label)]
            writer.add(row.id, row.fingerprint(), {"mean": stack})
        writer.finalize()
    return manifest, store


def tiny_ssl_store(folder: Path) -> tuple[Path, Path]:
    """(manifest, store): the demo clips through a random HuBERT of 12 layers x 256 (13 stored layers)."""
    import subprocess

    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    from ser.recipes.demo import demo_corpus

    checkpoint = folder / "tiny-hubert"
    config = HubertConfig(
        hidden_size=256, num_hidden_layers=12, num_attention_heads=4, intermediate_size=512, conv_dim=(64,) * 7
    )
    torch.manual_seed(0)
    HubertModel(config).save_pretrained(checkpoint)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(checkpoint)
    manifest, store = folder / "demo.jsonl", folder / "demo.hubert.h5"
    ser = [sys.executable, "-m", "ser.cli"]
    subprocess.run([*ser, "manifest", "ravdess", str(demo_corpus()), "-o", str(manifest)], check=True)
    extract = ["extract", "--model", "hubert", "--checkpoint", str(checkpoint), "-m", str(manifest)]
    subprocess.run([*ser, *extract, "-o", str(store), "--no-progress", "--num-workers", "0"], check=True)
    return manifest, store


def sweep_seconds(record: dict[str, Any], engine: str) -> tuple[float, list[dict[str, Any]]]:
    """Wall seconds of the whole sweep with ``engine`` and every probe's metrics.json."""
    config = config_from_dict({**record, "train": {**record["train"], "engine": engine}})
    start = time.perf_counter()
    run_dirs = run_sweep(build_sweep(config))
    seconds = time.perf_counter() - start
    return seconds, [json.loads((d / "metrics.json").read_text()) for d in run_dirs]


def member_steps(all_metrics: list[dict[str, Any]], batch: int) -> int:
    """Optimisation steps summed over every member of every probe."""
    total = 0
    for metrics in all_metrics:
        n_used = metrics["protocol_card"]["n_utterances"]
        for run in metrics["runs"]:
            n_train = n_used - run["test"]["n"] - run["validation"]["n"]
            total += run["epochs_run"] * -(-n_train // batch)
    return total


def measure(name: str, record: dict[str, Any], dim: int, n_classes: int) -> float:
    """Print one store's lines; returns sequential / stacked seconds."""
    batch = int(record["train"]["batch_size"])
    stacked, metrics = sweep_seconds(record, "stacked")
    sequential, metrics_seq = sweep_seconds(record, "sequential")
    members = sum(len(m["runs"]) for m in metrics)
    steps = member_steps(metrics, batch)
    flops = 3 * 2 * batch * (dim * HIDDEN + HIDDEN * n_classes)  # one member-step, forward + backward
    limit = gemm_rate(members, batch, dim, HIDDEN, __import__("torch").float32)
    print(f"{name}: {len(metrics)} probes, {members} members, {steps} member-steps (batch {batch})")
    print(f"  GEMM limit at ({members} members, {batch} x {dim}) @ ({dim} x {HIDDEN}), float32: {limit:.1f} GFLOPS")
    for engine, seconds in (("stacked", stacked), ("sequential", sequential)):
        achieved = flops * steps / seconds / 1e9
        print(f"  {engine:10s} {seconds:8.2f} s  {achieved:7.2f} GFLOPS = {achieved / limit:.3f} of the limit")
    ua = [round(100 * m["test"]["ua"]["mean"], 2) for m in metrics]
    ua_seq = [round(100 * m["test"]["ua"]["mean"], 2) for m in metrics_seq]
    print(f"  test UA per probe, stacked: {ua}; sequential: {ua_seq}")
    return sequential / stacked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, help="manifest of a real multi-layer store (e.g. MELD)")
    parser.add_argument("--store", type=Path, help="the real store (e.g. MELD MiniLM)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per member (patience 0: every epoch runs)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds")
    parser.add_argument("--device", default="cpu", help="train.device")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    train = {"epochs": args.epochs, "patience": 0, "batch_size": 32, "device": args.device}
    ratio = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest, store = synthetic_store(folder)
        common = {"fusion": "mlp", "seeds": seeds, "train": train, "save_models": False, "label_set": "ravdess8"}
        record = {**common, "manifest": str(manifest), "audio": str(store), "protocol": "speaker-loso"}
        record.update({"folds": ["spk0", "spk1"], "out": str(folder / "runs")})
        ratio = measure("synthetic 13 x 256 store", record, 256, 8)
        manifest, store = tiny_ssl_store(folder)
        record = {**common, "manifest": str(manifest), "audio": str(store), "protocol": "speaker-loso"}
        record["out"] = str(folder / "ssl")
        ratio = measure("tiny random HuBERT store (demo clips, 4 folds)", record, 256, 8)
        if args.manifest and args.store:
            from ser.cache.reader import CacheReader

            with CacheReader(args.store) as reader:
                dim = reader.layout.pooled["mean"][1]
            record = {**common, "manifest": str(args.manifest), "text": f"{args.store}:stat=mean", "label_set": None}
            record.update({"protocol": "official", "protocol_options": {"test_split": "validation"}})
            record["out"] = str(folder / "meld")
            ratio = measure(f"{args.store.name} (official, tested on dev)", record, dim, 7)
    print(f"sequential / stacked seconds: {ratio:.2f}")


if __name__ == "__main__":
    main()
