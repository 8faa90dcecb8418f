"""Overhead of the `ser extract` path over the bare model forward, and its memory growth.

A base-size HuBERT (12 layers, 768-d; random init, so no download, but the real FLOPs) runs over
real RAVDESS audio (default 100 clips, about 6 minutes; fewer than 5 minutes of audio is refused,
as too little to time). Two feature encoders:

* default: layer norm (as the large checkpoints): padded batches with attention masks are exact;
* ``--group-norm``: group norm, as the real hubert-base-ls960 / wav2vec2-base / wavlm-base: no
  attention mask, so only items of identical length share a batch (what the runner does for them).

Measured:

* bare:     the model's forward over audio decoded and resampled beforehand, in the runner's
            batches (same plan, same masks), returning all hidden states; only the last one is
            fetched, which waits for the device;
* ser:      `run_extraction` end to end: decoding in worker processes, forward, per-layer
            mean/std of every layer (on the model's device), crash-safe segment writes, finalize
            into an HDF5 store.

Batch seconds, batch items and workers default to those of `ser extract` (RunOptions). Printed:
both wall times, audio seconds per second, and the peak RSS of a child process running the ser
path over 1x and 4x the corpus (the 4x manifest repeats the clips under new ids). Last line: the
overhead ratio ser / bare (target <= 1.15; RSS growth target <= 10 %).

    python benchmarks/extract_overhead.py [--clips 100] [--device cpu] [--group-norm] [--skip-rss]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SER_SHARED_DATA", REPO.parent / "shared" / "data")) / "ravdess16k"
MIN_AUDIO_SECONDS = 300.0


def make_model(folder: Path, group_norm: bool) -> None:
    """Save a random-initialised base-size HuBERT (layer- or group-norm encoder) with its feature extractor."""
    import torch
    import transformers

    torch.manual_seed(0)
    if group_norm:  # hubert-base-ls960's architecture
        config = transformers.HubertConfig(feat_extract_norm="group", do_stable_layer_norm=False)
    else:
        config = transformers.HubertConfig(feat_extract_norm="layer", do_stable_layer_norm=True)
    transformers.HubertModel(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=not group_norm).save_pretrained(
        folder
    )


def make_manifest(path: Path, clips: int, repeat: int = 1) -> float:
    """Manifest of the first ``clips`` RAVDESS clips (repeated ``repeat`` times under new ids); audio seconds."""
    from ser.manifests.build import build_manifest
    from ser.manifests.schema import read_manifest, write_manifest

    full = path.with_name("full.jsonl")
    if not full.exists():
        build_manifest("ravdess", DATA, full)
    manifest = read_manifest(full)
    rows = manifest.utterances[:clips]
    copies = [dataclasses.replace(row, id=f"{row.id}#{r}") for r in range(repeat) for row in rows]
    write_manifest(path, manifest.header, copies)
    return sum(u.duration or 0 for u in copies)


def bare_forward(model_dir: Path, manifest_path: Path, device: str, batch_seconds: float, batch_items: int) -> float:
    """Seconds of the model forward alone over pre-decoded audio, batched like the runner."""
    import numpy as np
    import torch

    from ser.extract.audio import load_audio
    from ser.extract.plan import plan_batches
    from ser.extract.registry import build_extractor
    from ser.manifests.schema import read_manifest

    extractor = build_extractor("hubert", "base", checkpoint=str(model_dir), device=device)
    padding = extractor.spec.supports_padding
    manifest = read_manifest(manifest_path)
    rows = manifest.utterances
    audio = [extractor._prepare(load_audio(manifest.audio_path(u), sample_rate=16000)) for u in rows]
    # the runner plans by the manifest's durations; group-norm models get identical-length batches only
    batches = plan_batches(
        rows,
        [u.duration or a.size / 16000 for u, a in zip(rows, audio, strict=True)],
        batch_seconds=batch_seconds,
        batch_items=batch_items,
        same_length_only=not padding,
    )
    if not padding:  # as the extractor does: a forward pass per group of identical sample counts
        batches = [
            [i for i in batch if audio[i].size == size]
            for batch in batches
            for size in dict.fromkeys(audio[i].size for i in batch)
        ]
    model = extractor.model
    start = time.perf_counter()
    for batch in batches:
        lengths = [audio[i].size for i in batch]
        values = np.zeros((len(batch), max(lengths)), dtype=np.float32)
        mask = np.zeros_like(values, dtype=np.int64)
        for row, i in enumerate(batch):
            values[row, : lengths[row]] = audio[i]
            mask[row, : lengths[row]] = 1
        inputs = {"input_values": torch.from_numpy(values).to(device)}
        if padding:
            inputs["attention_mask"] = torch.from_numpy(mask).to(device)
        with torch.inference_mode():
            out = model(**inputs, output_hidden_states=True)
            out.last_hidden_state.cpu()  # waits for the device
    return time.perf_counter() - start


def ser_path(
    model_dir: Path,
    manifest_path: Path,
    output: Path,
    device: str,
    batch_seconds: float,
    batch_items: int,
    num_workers: int,
) -> dict[str, float]:
    """Wall seconds of run_extraction (model loading excluded, as for the bare forward)."""
    import resource

    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    extractor = build_extractor("hubert", "base", checkpoint=str(model_dir), device=device)
    start = time.perf_counter()
    report = run_extraction(
        manifest_path,
        extractor,
        output,
        RunOptions(batch_seconds=batch_seconds, batch_items=batch_items, num_workers=num_workers, progress=False),
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "audio_seconds": report.audio_seconds,
        "extracted": report.extracted,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def child(args: argparse.Namespace) -> None:
    result = ser_path(
        Path(args.model_dir),
        Path(args.manifest),
        Path(args.output),
        args.device,
        args.batch_seconds,
        args.batch_items,
        args.num_workers,
    )
    print(json.dumps(result))


def run_child(args: argparse.Namespace, model_dir: Path, manifest: Path, output: Path) -> dict[str, float]:
    """The ser path in a fresh process (for its own peak RSS)."""
    command = [
        sys.executable,
        __file__,
        "--child",
        "--model-dir",
        str(model_dir),
        "--manifest",
        str(manifest),
        "--output",
        str(output),
        "--device",
        args.device,
        "--batch-seconds",
        str(args.batch_seconds),
        "--batch-items",
        str(args.batch_items),
        "--num-workers",
        str(args.num_workers),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-seconds", type=float, default=None, help="default: ser extract's")
    parser.add_argument("--batch-items", type=int, default=None, help="default: ser extract's")
    parser.add_argument("--num-workers", type=int, default=None, help="default: ser extract's")
    parser.add_argument("--group-norm", action="store_true", help="a group-norm encoder (hubert-base's real path)")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from ser.extract.runner import RunOptions

    defaults = RunOptions()
    for name in ("batch_seconds", "batch_items", "num_workers"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(defaults, name))
    if args.child:
        child(args)
        return
    if not DATA.is_dir():
        sys.exit(f"RAVDESS data not found at {DATA} (set SER_SHARED_DATA)")
    with tempfile.TemporaryDirectory(prefix="ser-extract-bench-") as tmp_name:
        tmp = Path(tmp_name)
        manifest = tmp / "m1.jsonl"
        audio_seconds = make_manifest(manifest, args.clips)
        if audio_seconds < MIN_AUDIO_SECONDS:
            sys.exit(
                f"{args.clips} clips hold {audio_seconds:.0f} s of audio; the benchmark needs at least "
                f"{MIN_AUDIO_SECONDS:.0f} s to time anything (raise --clips)"
            )
        model_dir = tmp / "hubert-base-random"
        make_model(model_dir, args.group_norm)
        encoder = "group-norm (identical-length batches, no mask)" if args.group_norm else "layer-norm (masked)"
        print(
            f"{args.clips} RAVDESS clips, {audio_seconds:.0f} s of audio, device {args.device}, {encoder} "
            f"encoder, batches of <= {args.batch_seconds:g} s / {args.batch_items} items, "
            f"{args.num_workers} workers"
        )
        bare = bare_forward(model_dir, manifest, args.device, args.batch_seconds, args.batch_items)
        ser = run_child(args, model_dir, manifest, tmp / "one.h5")
        print(f"bare forward: {bare:.1f} s ({audio_seconds / bare:.1f} audio-s/s)")
        print(
            f"ser extract:  {ser['seconds']:.1f} s ({audio_seconds / ser['seconds']:.1f} audio-s/s), "
            f"peak RSS {ser['peak_rss_mb']:.0f} MB"
        )
        if not args.skip_rss:
            manifest4 = tmp / "m4.jsonl"
            make_manifest(manifest4, args.clips, repeat=4)
            ser4 = run_child(args, model_dir, manifest4, tmp / "four.h5")
            growth = ser4["peak_rss_mb"] / ser["peak_rss_mb"] - 1
            print(
                f"4x corpus: {ser4['seconds']:.1f} s, peak RSS {ser4['peak_rss_mb']:.0f} MB "
                f"({growth:+.1%} vs 1x; target <= +10 %); decoding workers {ser['worker_peak_rss_mb']:.0f} MB "
                f"-> {ser4['worker_peak_rss_mb']:.0f} MB"
            )
        print(f"{ser['seconds'] / bare:.3f}")


if __name__ == "__main__":
    main()
