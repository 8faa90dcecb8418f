"""A batch-1 ``paper`` recipe (SERVER: batch 1, Adam 1e-4, StepLR(30, 0.1), 101 epochs, the last epoch),
trained as stacked members and one member at a time, against the machine's own floor.

Cache: SERVER's inputs at the paper's widths, 240 utterances of 4 speakers (the packaged demo's
size; leave-one-speaker-out = 4 folds, about 144 training rows each after the validation carve): a
text store with a pooled 768-d ``pooler`` vector and an audio store with 3-6 VGGish-like patches
(128-d, 0..255) per utterance as a sequence. One member's epoch is about 144 optimiser steps, so the
whole fit is about 58 k member-steps.

Printed, in one run (device cpu, ``--threads`` torch threads):

1. the GEMM limit: the float32 rate of the head's largest product at batch 1, one member (768 -> 128)
   and stacked over the members (``bmm``), and the FLOPs of one training step (forward + backward,
   torch's FlopCounterMode): at batch 1 a step is a few hundred kFLOP, so the GEMM rate is not what
   bounds it;
2. the step floor: a bare loop of the same head, nothing but forward, backward and a fused Adam step
   per member-step, sequential (one member, batch 1) and stacked (``vmap`` over the members, one
   fused Adam per member): what a training loop with no data handling, validation or bookkeeping
   would cost per member-step;
3. ``ser fit --fusion server --recipe paper`` over the 4 folds with ``--epochs`` epochs, stacked and
   sequential: wall seconds, per member-step milliseconds, the speed-up, and each against its floor.

Last line: the stacked engine's speed-up over the sequential loop on this fit.

    python benchmarks/recipe_batch1.py [--threads 1] [--epochs 101]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, vmap
from torch.utils.flop_counter import FlopCounterMode

from ser.cache.format import StoreLayout
from ser.cache.writer import CacheWriter
from ser.fusion.config import config_from_dict
from ser.fusion.heads import head_module
from ser.fusion.run import run_fit
from ser.manifests.labels import load_label_set
from ser.manifests.protocols import ValidationRule, make_folds
from ser.manifests.schema import ManifestHeader, Utterance, read_manifest, write_manifest

CLASSES = ["ang", "hap", "sad", "neu"]
SPEAKERS = 4
PER_SPEAKER = 60
TEXT, AUDIO = 768, 128


def build_cache(folder: Path) -> tuple[Path, Path, Path]:
    """Manifest + text store (pooled ``pooler``) + audio store (sequence ``pp``) with a weak class signal."""
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for speaker in range(SPEAKERS):
        for i in range(PER_SPEAKER):
            labels.append(i % len(CLASSES))
            rows.append(
                Utterance(id=f"s{speaker}_{i:03d}", label=CLASSES[i % 4], speaker=f"s{speaker}", text="x", duration=3.0)
            )
    manifest = folder / "corpus.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="custom", root=str(folder)), rows)
    text, audio = folder / "text.h5", folder / "audio.h5"
    centres_text = rng.normal(size=(4, TEXT)).astype(np.float32) * 0.1
    centres_audio = rng.normal(size=(4, AUDIO)).astype(np.float32) * 8
    with CacheWriter.open(text, layout=StoreLayout(pooled={"pooler": (1, TEXT)}), attrs={"extractor": {}}) as writer:
        for row, label in zip(rows, labels, strict=True):
            vector = np.tanh(rng.normal(size=(1, TEXT)).astype(np.float32) + centres_text[label])
            writer.add(row.id, row.fingerprint(), {"pooler": vector}, {})
        writer.finalize()
    layout = StoreLayout(pooled={"pp_mean": (1, AUDIO)}, seq={"pp": AUDIO})
    with CacheWriter.open(audio, layout=layout, attrs={"extractor": {}}) as writer:
        for row, label in zip(rows, labels, strict=True):
            patches = rng.uniform(0, 255, size=(int(rng.integers(3, 7)), AUDIO)).astype(np.float32)
            patches = np.clip(patches + centres_audio[label], 0, 255).round()
            writer.add(row.id, row.fingerprint(), {"pp_mean": patches.mean(0, keepdims=True)}, {"pp": patches})
        writer.finalize()
    return manifest, text, audio


def gemm_rate(members: int, rows: int, inner: int, outer: int, seconds: float = 0.5) -> float:
    """GFLOPS of ``(members, rows, inner) @ (members, inner, outer)`` (``mm`` for one member)."""
    a, b = torch.randn(members, rows, inner), torch.randn(members, inner, outer)
    run = (lambda: torch.mm(a[0], b[0])) if members == 1 else (lambda: torch.bmm(a, b))
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += 1
    return 2 * members * rows * inner * outer * count / (time.perf_counter() - start) / 1e9


def example(members: int | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One batch-1 input (a leading member axis when ``members`` is given)."""
    lead = () if members is None else (members,)
    inputs = {
        "text": torch.randn(*lead, 1, TEXT),
        "audio": torch.rand(*lead, 1, 5, AUDIO) * 255,
        "audio_lengths": torch.full((*lead, 1), 5, dtype=torch.int64),
    }
    return inputs, torch.zeros(*lead, 1, dtype=torch.int64)


def step_flops() -> float:
    head = head_module("server").build({"text": TEXT, "audio": AUDIO}, 4)
    inputs, labels = example()
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(head(inputs), labels).backward()
    return float(counter.get_total_flops())


def floor_sequential(seconds: float = 2.0) -> float:
    """Milliseconds per member-step of a bare batch-1 loop: forward, backward, fused Adam."""
    head = head_module("server").build({"text": TEXT, "audio": AUDIO}, 4)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-4, fused=True)
    inputs, labels = example()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(head(inputs), labels).backward()
        optimizer.step()
        count += 1
    return 1e3 * (time.perf_counter() - start) / count


def floor_stacked(members: int, seconds: float = 2.0) -> float:
    """Milliseconds per member-step of a bare stacked loop: one vmapped forward and backward of
    ``members`` heads, then one fused Adam per member on its slice."""
    heads = [head_module("server").build({"text": TEXT, "audio": AUDIO}, 4) for _ in range(members)]
    names = [name for name, _ in heads[0].named_parameters()]
    stacked = {n: torch.stack([dict(h.named_parameters())[n].detach() for h in heads]).requires_grad_() for n in names}
    slices = [[torch.nn.Parameter(stacked[n].data[j]) for n in names] for j in range(members)]
    for j, params in enumerate(slices):
        for n, p in zip(names, params, strict=True):
            p.data = stacked[n].data[j]
    optimizers = [torch.optim.Adam(params, lr=1e-4, fused=True) for params in slices]
    inputs, labels = example(members)

    def loss(p: dict[str, torch.Tensor], x: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(functional_call(heads[0], p, (x,)), y)

    batched = vmap(loss, randomness="different")
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batched(stacked, inputs, labels).sum().backward()
        for j, params in enumerate(slices):
            for n, p in zip(names, params, strict=True):
                p.grad = stacked[n].grad[j]
            optimizers[j].step()
        for v in stacked.values():
            v.grad = None
        count += 1
    return 1e3 * (time.perf_counter() - start) / count / members


def timed_fit(record: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    run_dir = run_fit(config_from_dict(record))
    seconds = time.perf_counter() - start
    return seconds, json.loads((run_dir / "metrics.json").read_text())


def training_rows(manifest: Path) -> dict[str, int]:
    """Fold name -> its training rows (after the validation carve): one optimiser step each per epoch."""
    fold_set = make_folds(
        read_manifest(manifest), "speaker-loso", label_set=load_label_set("iemocap4"), rule=ValidationRule()
    )
    return {fold.name: len(fold.train) for fold in fold_set.folds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=101)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folds = SPEAKERS

    flops = step_flops()
    rate_one, rate_stack = gemm_rate(1, 1, TEXT, 128), gemm_rate(folds, 1, TEXT, 128)
    print(
        f"GEMM limit at batch 1, 768 -> 128: {rate_one:.2f} GFLOPS one member, {rate_stack:.2f} GFLOPS {folds} stacked"
    )
    print(
        f"one training step: {flops / 1e3:.0f} kFLOP per member ({1e6 * flops / (rate_stack * 1e9):.2f} us at the "
        "stacked GEMM rate: the rate does not bound a batch-1 step, the per-operation cost does)"
    )
    bare_sequential, bare_stacked = floor_sequential(), floor_stacked(folds)
    print(
        f"step floor (forward + backward + fused Adam, nothing else): sequential {bare_sequential:.3f} ms, "
        f"stacked x{folds} {bare_stacked:.3f} ms per member-step"
    )

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest, text, audio = build_cache(folder)
        times: dict[str, float] = {}
        for engine in ("stacked", "sequential"):
            record = {
                "fusion": "server",
                "recipe": "paper",
                "manifest": str(manifest),
                "protocol": "speaker-loso",
                "text": str(text),
                "audio": str(audio),
                "label_set": "iemocap4",
                "save_models": False,
                "out": str(folder / engine),
                "train": {"epochs": args.epochs, "engine": engine, "threads": args.threads, "device": "cpu"},
            }
            seconds, metrics = timed_fit(record)
            rows = training_rows(manifest)
            steps = sum(run["epochs_run"] * rows[run["fold"]] for run in metrics["runs"])
            floor = bare_stacked if engine == "stacked" else bare_sequential
            per_step = 1e3 * seconds / steps
            times[engine] = seconds
            ua = 100 * metrics["test"]["ua"]["mean"]
            print(
                f"server --recipe paper, {engine}: {seconds:.1f} s for {len(metrics['runs'])} members x "
                f"{args.epochs} epochs ({steps} member-steps: {per_step:.3f} ms each; "
                f"floor / achieved = {floor / per_step:.2f}); test UA {ua:.2f}"
            )
    print(f"stacked vs sequential speed-up: {times['sequential'] / times['stacked']:.2f}")


if __name__ == "__main__":
    main()
