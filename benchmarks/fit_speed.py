"""Speed of ``ser fit`` (stage 2): the stacked engine against the sequential loop, and against the
machine's own matrix-product rate at fleser's shapes.

Cache: 5531 utterances in 5 sessions x 2 speakers, 4 classes, 4.5 s each (IEMOCAP-sized); an audio
store with pooled mean of 13 x 768 and a text store with pooled CLS of 13 x 768, every speaker with
every class. The class signal is WEAK (class centres of norm about 1.7 (audio) and 1.1 (text) in
768 dimensions of unit noise), so validation keeps moving and the epochs are realistic. memocmt is
timed on a smaller cache of the same kind with 768-d sequences (about 200 audio frames and 30
tokens per utterance) and scaled to the corpus size.

Printed, in one run (device cpu, ``--threads`` torch threads for everything):

1. the GEMM limit: float32 and bfloat16 rates of torch matrix products at fleser's own shapes
   (batch 64, 768 -> 256 encoders, 256 x 256 attention projections, 512 -> 256 gate), single and
   stacked over the members (``bmm``), and their FLOP-weighted combination for one training step;
2. the FLOPs of one fleser training step (forward + backward, per member; torch's FlopCounterMode);
3. fleser's paper preset (AdamW 1e-4, batch 64, 100 epochs, plateau schedule, every epoch run),
   5-fold leave-one-session-out: wall seconds with 1 seed (5 members) and 3 seeds (15 members),
   stacked; the sequential loop over ``--sequential-epochs`` epochs per member, scaled to the full
   epoch count (said so in the line); the achieved GFLOPS of each and the ratio achieved / limit;
4. with dropout the engines draw different masks: mean ± std test UA of the 3-seed fit after
   ``--sequential-epochs`` epochs with each engine;
5. memocmt on sequences: seconds per fold-epoch, stacked and sequential (``--memocmt-utterances``,
   scaled to 5531);
6. ``ser ablate examples/demo-grid.yaml`` on the packaged RAVDESS clips (extracted first, not timed):
   stacked bundles against one sequential job at a time;
7. with a CUDA device (``--gpu``): stacked against sequential for 15 and 100 members, per epoch.

Last line: the wall seconds of the 5-fold x 1-seed stacked fleser run (target 90 s on 2 CPU cores).

    python benchmarks/fit_speed.py [--threads 2] [--epochs 100] [--sequential-epochs 10]
                                   [--memocmt-epochs 1] [--memocmt-utterances 500] [--skip-memocmt]
                                   [--skip-grid] [--gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
BATCH, WIDTH, HIDDEN = 64, 768, 256
GEMM_SHARE = {(WIDTH, HIDDEN): 0.39, (HIDDEN, HIDDEN): 0.42, (2 * HIDDEN, HIDDEN): 0.19}
"""Share of one fleser step's FLOPs in each (in, out) matrix shape: the two 768 -> 256 encoders
(forward and weight gradient), the eight 256 x 256 value / output projections and the small
classifier (forward, weight and input gradients), the 512 -> 256 gate."""


def build_cache(folder: Path, with_sequences: bool, n: int = N) -> tuple[Path, Path, Path]:
    """Manifest + audio store (pooled ``mean``) + text store (pooled ``cls``) of ``n`` utterances;
    sequences only if asked."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    labels = [(i // 10) % 4 for i in range(n)]  # every speaker gets every class (i % 10 picks the speaker)
    for i in range(n):
        session = 1 + i % 5
        gender = "FM"[(i // 5) % 2]
        speaker = f"Ses0{session}{gender}"
        rows.append(
            Utterance(
                id=f"{speaker}_{i:05d}",
                label=CLASSES[labels[i]],
                speaker=speaker,
                gender=gender,
                session=f"Ses0{session}",
                text="x",
                duration=SECONDS_PER_UTTERANCE,
            )
        )
    manifest = folder / "iemocap-like.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="iemocap", root=str(folder), label_set="iemocap4"), rows)
    audio, text = folder / "audio.h5", folder / "text.h5"
    for path, modality, stat, n_frames in ((audio, "audio", "mean", 200), (text, "text", "cls", 30)):
        centers = rng.normal(size=(4, WIDTH)).astype(np.float32) * SIGNAL[modality]
        layout = StoreLayout(pooled={stat: (13, WIDTH)}, seq={"layer_12": WIDTH} if with_sequences else {})
        with CacheWriter.open(path, layout=layout, attrs={"extractor": {"config_hash": stat}}) as writer:
            for i, row in enumerate(rows):
                pooled = rng.normal(size=(13, WIDTH)).astype(np.float32) + centers[labels[i]]
                seq = {}
                if with_sequences:
                    length = int(rng.integers(n_frames // 2, n_frames * 3 // 2))
                    seq = {"layer_12": rng.normal(size=(length, WIDTH)).astype(np.float32) + centers[labels[i]]}
                writer.add(row.id, row.fingerprint(), {stat: pooled}, seq)
            writer.finalize()
    return manifest, audio, text


# ------------------------------------------------------------------------------------- the limit


def gemm_rate(members: int, rows: int, inner: int, outer: int, dtype: torch.dtype, seconds: float = 0.5) -> float:
    """GFLOPS of ``(members, rows, inner) @ (members, inner, outer)`` (a plain ``mm`` for one member)."""
    a = torch.randn(members, rows, inner).to(dtype)
    b = torch.randn(members, inner, outer).to(dtype)
    run = (lambda: torch.mm(a[0], b[0])) if members == 1 else (lambda: torch.bmm(a, b))
    for _ in range(3):
        run()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += 1
    return 2 * members * rows * inner * outer * count / (time.perf_counter() - start) / 1e9


def step_limit(members: int, dtype: torch.dtype) -> tuple[float, dict[str, float]]:
    """The FLOP-weighted GEMM rate of one fleser step at ``members`` stacked members, and per shape."""
    rates = {f"{inner}x{outer}": gemm_rate(members, BATCH, inner, outer, dtype) for inner, outer in GEMM_SHARE}
    combined = 1.0 / sum(share / rates[f"{inner}x{outer}"] for (inner, outer), share in GEMM_SHARE.items())
    return combined, rates


def step_flops(audio_text: tuple[np.ndarray, np.ndarray]) -> float:
    """FLOPs of one fleser training step per member (forward + backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    from ser.fusion.heads import head_module

    torch.manual_seed(0)
    head = head_module("fleser").build({"text": WIDTH, "audio": WIDTH}, len(CLASSES))
    inputs = {"text": torch.from_numpy(audio_text[1][:BATCH]), "audio": torch.from_numpy(audio_text[0][:BATCH])}
    labels = torch.arange(BATCH) % len(CLASSES)
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(head(inputs), labels).backward()
    return float(counter.get_total_flops())


def optimizer_floor(members: int, seconds: float = 1.0) -> tuple[float, float]:
    """Milliseconds per member of one fused AdamW step over ``members`` stacked copies of fleser's
    parameters, and the bytes it moves per member (read parameter, gradient and both moments, write
    parameter and moments): the memory-bound part of a step that no matrix product can hide."""
    from ser.fusion.heads import head_module

    head = head_module("fleser").build({"text": WIDTH, "audio": WIDTH}, len(CLASSES))
    params = [torch.zeros(members, *p.shape, requires_grad=True) for p in head.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    for _ in range(3):
        optimizer.step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        optimizer.step()
        count += 1
    elapsed = (time.perf_counter() - start) / count / members
    return 1e3 * elapsed, 7 * 4 * sum(p.numel() for p in head.parameters())


# ------------------------------------------------------------------------------------- the fits


def timed_fit(config: FitConfig) -> tuple[float, dict[str, Any]]:
    """Wall seconds and metrics.json of one run."""
    start = time.perf_counter()
    run_dir = run_fit(config)
    return time.perf_counter() - start, json.loads((run_dir / "metrics.json").read_text())


def member_steps(metrics: dict[str, Any], batch: int) -> int:
    """Optimisation steps summed over every member of a run (training rows from the protocol card)."""
    total = 0
    for run in metrics["runs"]:
        n_train = N - run["test"]["n"] - run["validation"]["n"]
        total += run["epochs_run"] * -(-n_train // batch)
    return total


def fleser_runs(common: dict[str, Any], args: argparse.Namespace, flops: float, limit: float) -> float:
    """Section 3 and 4: the paper preset stacked (1 and 3 seeds), sequential scaled, UA of both engines."""
    short = args.sequential_epochs
    scale = args.epochs / short
    results: dict[str, float] = {}
    for seeds in ([0], [0, 1, 2]):
        members = 5 * len(seeds)
        train = TrainConfig.for_head("fleser", epochs=args.epochs, device="cpu", threads=args.threads)
        seconds, metrics = timed_fit(FitConfig(fusion="fleser", seeds=seeds, train=train, **common))
        achieved = flops * member_steps(metrics, train.batch_size) / seconds / 1e9
        print(
            f"fleser paper preset, {members} members (5 folds x {len(seeds)} seeds), {args.epochs} epochs, "
            f"stacked: {seconds:.1f} s ({seconds / args.epochs:.2f} s per epoch of all members); "
            f"{achieved:.1f} GFLOPS = {achieved / limit:.2f} of the float32 limit; test UA "
            f"{100 * metrics['test']['ua']['mean']:.1f} ± {100 * metrics['test']['ua']['std']:.1f}"
        )
        sequential = TrainConfig.for_head(
            "fleser", epochs=short, device="cpu", threads=args.threads, engine="sequential"
        )
        seq_seconds, seq_metrics = timed_fit(FitConfig(fusion="fleser", seeds=seeds, train=sequential, **common))
        seq_achieved = flops * member_steps(seq_metrics, train.batch_size) / seq_seconds / 1e9
        print(
            f"  sequential loop, same members: {seq_seconds:.1f} s for {short} epochs, scaled x{scale:g} to "
            f"{args.epochs} epochs: {seq_seconds * scale:.1f} s; {seq_achieved:.1f} GFLOPS = "
            f"{seq_achieved / limit:.2f} of the limit; stacked / sequential speed-up "
            f"{seq_seconds * scale / seconds:.2f}x"
        )
        results[f"stacked-{members}"] = seconds
        if len(seeds) == 3:
            short_stacked = TrainConfig.for_head("fleser", epochs=short, device="cpu", threads=args.threads)
            _, stacked_short = timed_fit(FitConfig(fusion="fleser", seeds=seeds, train=short_stacked, **common))
            print(
                f"  dropout 0.3 draws different masks per engine; test UA after {short} epochs, mean ± std over "
                f"5 folds x 3 seeds: stacked {_ua(stacked_short)}, sequential {_ua(seq_metrics)}; per-seed "
                f"std of the pooled UA: stacked {_seed_std(stacked_short)}, sequential {_seed_std(seq_metrics)}"
            )
    return results["stacked-5"]


def _ua(metrics: dict[str, Any]) -> str:
    return f"{100 * metrics['test']['ua']['mean']:.2f} ± {100 * metrics['test']['ua']['std']:.2f}"


def _seed_std(metrics: dict[str, Any]) -> str:
    return f"{100 * metrics['test_pooled']['ua']['std']:.2f}"


def memocmt_runs(folder: Path, args: argparse.Namespace) -> None:
    """Section 5 on a cache of ``--memocmt-utterances`` utterances with sequences (the same layout),
    scaled to the full corpus (said so)."""
    n = args.memocmt_utterances
    manifest, audio, text = build_cache(folder, with_sequences=True, n=n)
    common = {
        "manifest": str(manifest),
        "protocol": "iemocap-loso",
        "out": str(folder / "runs"),
        "audio": f"{audio}:seq=layer_12",
        "text": f"{text}:seq=layer_12",
    }
    for engine in ("stacked", "sequential"):
        train = TrainConfig.for_head(
            "memocmt", epochs=args.memocmt_epochs, device="cpu", threads=args.threads, engine=engine
        )
        seconds, _ = timed_fit(FitConfig(fusion="memocmt", train=train, **common))
        per = seconds / (5 * args.memocmt_epochs)
        print(
            f"memocmt on sequences (~200 audio frames, ~30 tokens, 768-d), {engine}: 5 folds x "
            f"{args.memocmt_epochs} epochs of {n} utterances in {seconds:.1f} s = {per:.1f} s per fold-epoch, "
            f"scaled to {N} utterances {per * N / n:.0f} s"
        )


def demo_grid(folder: Path, args: argparse.Namespace) -> None:
    """Section 6: extract the demo caches (not timed), then the grid stacked and sequential."""
    from importlib import resources

    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction
    from ser.manifests.build import build_manifest

    work = folder / "ser-demo"
    work.mkdir()
    corpus = Path(str(resources.files("ser").joinpath("demo_data", "ravdess16k")))
    build_manifest("ravdess", corpus, work / "ravdess-demo.jsonl")
    for family, store in (("egemaps", "egemaps.h5"), ("minilm", "minilm.h5")):
        run_extraction(
            work / "ravdess-demo.jsonl",
            build_extractor(family, device="cpu"),
            work / store,
            RunOptions(num_workers=2, progress=False),
        )
    grid = Path(__file__).resolve().parents[1] / "examples" / "demo-grid.yaml"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seconds = {}
    for name, flags in (("stacked", ["--stack"]), ("sequential", ["--no-stack", "--set", "train.engine=sequential"])):
        out = folder / f"grid-{name}"
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ser.cli",
                "ablate",
                str(grid),
                "-o",
                str(out),
                "--device",
                "cpu",
                "--no-report",
                *flags,
            ],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        seconds[name] = time.perf_counter() - start
        shutil.rmtree(out)
    print(
        f"ser ablate examples/demo-grid.yaml (16 jobs, {os.cpu_count()} worker processes): stacked bundles "
        f"{seconds['stacked']:.1f} s, sequential jobs {seconds['sequential']:.1f} s "
        f"({seconds['sequential'] / seconds['stacked']:.2f}x)"
    )


def gpu_runs(common: dict[str, Any]) -> None:
    """Section 7: stacked against sequential on a CUDA device, 15 and 100 members, 2 epochs."""
    for members in (15, 100):
        seeds = list(range(members // 5))
        line = []
        for engine in ("stacked", "sequential"):
            train = TrainConfig.for_head("fleser", epochs=2, device="cuda", engine=engine)
            seconds, _ = timed_fit(FitConfig(fusion="fleser", seeds=seeds, train=train, **common))
            line.append(f"{engine} {seconds / 2:.2f} s per epoch")
        print(f"GPU {torch.cuda.get_device_name()}: fleser, {members} members: " + ", ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores).")
    parser.add_argument("--epochs", type=int, default=100, help="Epochs of the stacked fleser runs (preset: 100).")
    parser.add_argument(
        "--sequential-epochs",
        type=int,
        default=10,
        help="Epochs the sequential loop is measured over (then scaled to --epochs).",
    )
    parser.add_argument("--memocmt-epochs", type=int, default=1, help="Epochs per fold of the memocmt runs.")
    parser.add_argument(
        "--memocmt-utterances",
        type=int,
        default=500,
        help="Utterances of the sequence cache memocmt is timed on (scaled to 5531).",
    )
    parser.add_argument("--skip-memocmt", action="store_true", help="No memocmt runs.")
    parser.add_argument("--skip-grid", action="store_true", help="No demo-grid runs.")
    parser.add_argument("--gpu", action="store_true", help="Also the GPU comparison (needs CUDA).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    limits = {}
    for dtype in (torch.float32, torch.bfloat16):
        for members in (1, 5, 15):
            combined, rates = step_limit(members, dtype)
            limits[(dtype, members)] = combined
            print(
                f"GEMM {str(dtype).replace('torch.', '')}, {members} member(s), batch {BATCH}: "
                + ", ".join(f"{shape} {rate:.0f}" for shape, rate in rates.items())
                + f" GFLOPS; weighted for one fleser step: {combined:.0f} GFLOPS"
            )
    limit = max(limits[(torch.float32, m)] for m in (1, 5, 15))
    print(f"limit (float32, the best of 1, 5, 15 members): {limit:.0f} GFLOPS")
    with tempfile.TemporaryDirectory(prefix="ser-fit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        manifest, audio, text = build_cache(tmp / "pooled", with_sequences=False)
        print(f"synthetic IEMOCAP-sized cache built in {time.perf_counter() - start:.0f} s")
        from ser.cache.reader import CacheReader

        with CacheReader(audio) as a, CacheReader(text) as t:
            sample = (
                a.pooled("mean", ids=a.ids[:BATCH])[:, -1].copy(),
                t.pooled("cls", ids=t.ids[:BATCH])[:, -1].copy(),
            )
        flops = step_flops(sample)
        print(
            f"one fleser training step (batch {BATCH}, forward + backward): {flops / 1e6:.0f} MFLOP per member "
            f"(FlopCounterMode); at the limit {flops / limit / 1e6:.2f} ms per member-step"
        )
        for members in (1, 5, 15):
            ms, moved = optimizer_floor(members)
            print(
                f"fused AdamW step, {members} member(s): {ms:.2f} ms per member ({moved / 1e6:.0f} MB moved per "
                f"member: {moved / ms / 1e6:.1f} GB/s)"
            )
        common = {
            "manifest": str(manifest),
            "protocol": "iemocap-loso",
            "out": str(tmp / "runs"),
            "audio": str(audio),
            "text": f"{text}:stat=cls",
        }
        stacked_5 = fleser_runs(common, args, flops, limit)
        if not args.skip_memocmt:
            memocmt_runs(tmp / "sequences", args)
        if not args.skip_grid:
            demo_grid(tmp, args)
        if args.gpu and torch.cuda.is_available():
            gpu_runs(common)
    print(f"{stacked_5:.1f}")


if __name__ == "__main__":
    main()
