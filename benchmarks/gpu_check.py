"""One GPU check (issue 28): the CUDA-only paths of ``ser`` measured in one run of under 8 minutes on one GPU.

Printed as one table, one row per measurement:

1. ``extract``: a base-size HuBERT (12 layers x 768, random init saved with ``save_pretrained``: the real
   FLOPs, no download; group-norm encoder as hubert-base) over the packaged demo clips
   (``ser.recipes.demo.demo_corpus()``): ``run_extraction`` with ``--dtype float32`` and ``float16``, and the
   bare batched forward of the same model on the same audio (``extract_overhead.bare_forward``); audio
   seconds per wall second;
2. ``fleser``: stacked and sequential engines at 5, 15 and 60 members (5 folds x 1, 3, 12 seeds) on the
   IEMOCAP-sized synthetic cache of ``fit_speed.py``, AMP on and off: test UA (mean ± std over members; the
   engines draw different dropout masks, so "equal" means within the larger std), wall time, and achieved
   GFLOPS / the GEMM limit at fleser's shapes measured in the same run (float32, or float16 under AMP);
3. ``ablate``: a 4-job ``ser ablate`` grid (2 heads x 2 seeds, one job each) on one GPU with
   ``--jobs-per-gpu 4`` and the free-memory guard ``--gpu-min-free``: wall time and jobs finished;
4. ``peak MiB`` of every fleser row: ``torch.cuda.max_memory_allocated`` reset before each stack ("n/a" on CPU).

``--device cpu`` is the smoke test (CI): a tiny HuBERT, a few clips, 5 members, 1 epoch, a small cache,
finishing in well under a minute; its numbers say nothing about a GPU. Last line: the extraction overhead
ratio, ``run_extraction`` float32 seconds / bare forward seconds (lower is better; target <= 1.15).

    python benchmarks/gpu_check.py [--device cuda] [--epochs 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import extract_overhead
import fit_speed

TINY_HUBERT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "conv_dim": (16,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}
"""The smoke test's HuBERT: the real feature-encoder kernels and strides, tiny widths."""


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big each part of the check is."""

    clips: int | None
    """Demo clips extracted (None = all)."""
    members: tuple[int, ...]
    """fleser stack sizes (5 folds x members / 5 seeds)."""
    epochs: int
    """Epochs of every fleser and ablate fit."""
    utterances: int
    """Rows of the synthetic cache."""
    base_model: bool
    """Base-size HuBERT (else the tiny one)."""


class Table:
    """Rows printed as they come (a long run shows progress) and once more, aligned, at the end."""

    header = ("row", "setting", "seconds", "result", "peak MiB")

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, *cells: str) -> None:
        self.rows.append(cells)
        print(" | ".join(cells), flush=True)

    def print(self) -> None:
        widths = [max(len(row[i]) for row in [self.header, *self.rows]) for i in range(len(self.header))]
        for row in [self.header, tuple("-" * w for w in widths), *self.rows]:
            print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")


@contextmanager
def peak_memory(device: str) -> Iterator[list[str]]:
    """Yields a one-cell list that holds the peak allocated MiB of the block ("n/a" off CUDA)."""
    cell = ["n/a"]
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield cell
    if cuda:
        torch.cuda.synchronize()
        cell[0] = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}"


# --------------------------------------------------------------------------------- 1. extraction


def extraction_rows(table: Table, folder: Path, device: str, scale: Scale) -> float:
    """Row 1; returns run_extraction float32 seconds / bare forward seconds."""
    import transformers

    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction
    from ser.manifests.build import build_manifest
    from ser.manifests.schema import read_manifest, write_manifest
    from ser.recipes.demo import demo_corpus

    model = folder / "hubert"
    if scale.base_model:
        extract_overhead.make_model(model, group_norm=True)
        size = "hubert base 12x768"
    else:
        torch.manual_seed(0)
        config = transformers.HubertConfig(feat_extract_norm="group", do_stable_layer_norm=False, **TINY_HUBERT)
        transformers.HubertModel(config).save_pretrained(model)
        transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(model)
        size = "tiny hubert 2x32"
    full = folder / "demo-all.jsonl"
    build_manifest("ravdess", demo_corpus(), full)
    manifest = read_manifest(full)
    rows = manifest.utterances[: scale.clips] if scale.clips else manifest.utterances
    subset = folder / "demo.jsonl"
    write_manifest(subset, manifest.header, rows)
    options = RunOptions(progress=False, num_workers=0 if device == "cpu" else 2)
    # warm-up (kernel selection, allocator, page cache), not timed: the first timed run would pay for it
    extract_overhead.bare_forward(model, subset, device, options.batch_seconds, options.batch_items)
    seconds: dict[str, float] = {}
    audio_seconds = 0.0
    for dtype in ("float32", "float16"):
        extractor = build_extractor("hubert", "base", checkpoint=str(model), device=device, dtype=dtype)
        start = time.perf_counter()
        report = run_extraction(subset, extractor, folder / f"feats-{dtype}.h5", options)
        seconds[dtype] = time.perf_counter() - start
        audio_seconds = report.audio_seconds
        computed = extractor.config()["dtype"]
        table.add(
            "extract",
            f"{size}, {len(rows)} clips, asked {dtype}, computed {computed}",
            f"{seconds[dtype]:.2f}",
            f"{audio_seconds / seconds[dtype]:.1f} audio s/s",
            "",
        )
    bare = extract_overhead.bare_forward(model, subset, device, options.batch_seconds, options.batch_items)
    table.add(
        "extract",
        f"{size}, bare batched forward (float32)",
        f"{bare:.2f}",
        f"{audio_seconds / bare:.1f} audio s/s; ser float32 / bare {seconds['float32'] / bare:.2f}",
        "",
    )
    return seconds["float32"] / bare


# ------------------------------------------------------------------------------------ 2. fleser


def fleser_rows(table: Table, folder: Path, device: str, scale: Scale) -> dict[str, Any]:
    """Row 2 and 4; returns the fit's common settings (the ablate grid reuses the cache)."""
    from ser.cache.reader import CacheReader
    from ser.fusion.config import FitConfig, TrainConfig

    fit_speed.N = scale.utterances  # fit_speed.member_steps counts training rows out of the cache size
    manifest, audio, text = fit_speed.build_cache(folder / "cache", with_sequences=False, n=scale.utterances)
    with CacheReader(audio) as a, CacheReader(text) as t:
        sample = (
            a.pooled("mean", ids=a.ids[: fit_speed.BATCH])[:, -1].copy(),
            t.pooled("cls", ids=t.ids[: fit_speed.BATCH])[:, -1].copy(),
        )
    flops = fit_speed.step_flops(sample)
    common = {
        "manifest": str(manifest),
        "protocol": "iemocap-loso",
        "out": str(folder / "runs"),
        "audio": str(audio),
        "text": f"{text}:stat=cls",
    }
    for amp in (False, True):
        dtype = torch.float16 if amp and device.startswith("cuda") else torch.float32
        with torch.device(device):  # fit_speed's GEMM timing allocates on the default device
            limit = max(fit_speed.step_limit(m, dtype)[0] for m in sorted({1, *scale.members}))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        table.add("gemm limit", f"fleser shapes, {str(dtype).replace('torch.', '')}", "", f"{limit:.0f} GFLOPS", "")
        for members in scale.members:
            seeds = list(range(members // 5))
            results: dict[str, tuple[float, dict[str, Any]]] = {}
            for engine in ("stacked", "sequential"):
                train = TrainConfig.for_head("fleser", epochs=scale.epochs, device=device, engine=engine, amp=amp)
                with peak_memory(device) as peak:
                    seconds, metrics = fit_speed.timed_fit(
                        FitConfig(fusion="fleser", seeds=seeds, train=train, **common)
                    )
                results[engine] = (seconds, metrics)
                achieved = flops * fit_speed.member_steps(metrics, train.batch_size) / seconds / 1e9
                table.add(
                    "fleser",
                    f"{members} members, AMP {'on' if amp else 'off'}, {engine}, {scale.epochs} epochs",
                    f"{seconds:.2f}",
                    f"UA {fit_speed._ua(metrics)}; {achieved:.1f} GFLOPS = {achieved / limit:.3f} of the limit",
                    peak[0],
                )
            (s_sec, s_m), (q_sec, q_m) = results["stacked"], results["sequential"]
            gap = abs(s_m["test"]["ua"]["mean"] - q_m["test"]["ua"]["mean"])
            spread = max(s_m["test"]["ua"]["std"], q_m["test"]["ua"]["std"])
            verdict = "<=" if gap <= spread else ">"
            equal = "equal" if gap <= spread else "DIFFER"
            table.add(
                "fleser",
                f"{members} members, AMP {'on' if amp else 'off'}, stacked vs sequential",
                "",
                f"speed-up {q_sec / s_sec:.2f}x; UA gap {100 * gap:.2f} {verdict} spread {100 * spread:.2f} ({equal})",
                "",
            )
    return common


# ------------------------------------------------------------------------------------ 3. ablate


def ablate_row(table: Table, folder: Path, device: str, scale: Scale, common: dict[str, Any]) -> None:
    """Row 3: 2 heads x 2 seeds, one job each, on one GPU with the memory guard (2 CPU workers on CPU)."""
    grid = folder / "gpu-check-grid.yaml"
    grid.write_text(
        "name: gpu check, 4 jobs\n"
        "base:\n"
        f"  manifest: {common['manifest']}\n"
        f"  protocol: {common['protocol']}\n"
        f"  audio: {common['audio']}\n"
        f"  text: {common['text']}\n"
        f"  train: {{epochs: {scale.epochs}}}\n"
        "axes:\n"
        "  fusion: [mlp, fleser]\n"
        "seeds: [0, 1]\n"
    )
    out = folder / "grid"
    if device.startswith("cuda"):
        where = ["--device", "cuda", "--jobs-per-gpu", "4", "--gpu-min-free", "2048"]
        setting = "4 jobs (2 heads x 2 seeds), one GPU, --jobs-per-gpu 4 --gpu-min-free 2048"
    else:
        where = ["--device", "cpu", "--workers", "2"]
        setting = "4 jobs (2 heads x 2 seeds), cpu, 2 workers"
    command = [sys.executable, "-m", "ser.cli", "ablate", str(grid), "-o", str(out), "--no-stack", "--no-report"]
    start = time.perf_counter()
    done = subprocess.run([*command, *where], cwd=folder, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    finished = len(list(out.rglob("metrics.json")))
    result = f"{finished} of 4 jobs finished (exit {done.returncode})"
    if done.returncode != 0:
        result += f": {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no message'}"
    table.add("ablate", setting, f"{seconds:.2f}", result, "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (the smoke test).")
    parser.add_argument("--epochs", type=int, default=3, help="Epochs of every fit on CUDA (cpu: 1).")
    parser.add_argument("--quick", action="store_true", help="The smoke-test sizes on any device.")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here; run the smoke test with --device cpu")
    if args.quick or args.device == "cpu":
        scale = Scale(clips=3, members=(5,), epochs=1, utterances=300, base_model=False)
    else:
        scale = Scale(clips=None, members=(5, 15, 60), epochs=args.epochs, utterances=fit_speed.N, base_model=True)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{os.cpu_count()} CPUs"
    print(f"device: {args.device} ({name}), torch {torch.__version__}")
    table = Table()
    with tempfile.TemporaryDirectory(prefix="ser-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        ratio = extraction_rows(table, tmp, args.device, scale)
        common = fleser_rows(table, tmp, args.device, scale)
        ablate_row(table, tmp, args.device, scale, common)
    print()
    table.print()
    print(f"{ratio:.3f}")


if __name__ == "__main__":
    main()
