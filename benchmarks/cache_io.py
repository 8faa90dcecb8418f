"""Cache store I/O on an IEMOCAP-sized synthetic store, HDF5 and Zarr, against plain numpy.

Layout (DESIGN §5, base-size SSL model): 5531 utterances, pooled mean and std of 13 layers x 768
(float32), one stored sequence layer of 768-d float16 frames, about 1.3 M frames in all (50 Hz,
~7 h of audio). For each backend the store is written through the real writer (segments, then
finalize) and read back with the real reader; numpy reads the same bytes from ``.npy`` files.

Printed per backend:
  write  MB/s of the whole writer path (segments + finalize)
  read   throughput ratio store / numpy for (a) all pooled vectors, (b) the whole sequence layer,
         and, for information, (c) every utterance's sequence one by one (DataLoader pattern)
  size   stored bytes / raw array bytes (storage overhead; target <= 1.05 uncompressed)

Last line: the worst of the ratios that have targets, expressed so that higher is better:
min(read ratio (a), read ratio (b), raw bytes / stored bytes). Targets: reads >= 0.8, size <= 1.05
(i.e. >= 0.95 here).

    python benchmarks/cache_io.py [--scale 0.25] [--backends h5,zarr] [--dir /tmp]
    python benchmarks/cache_io.py --sweep        # chunk-size sweep used to choose the defaults
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ser.cache.format import StoreLayout
from ser.cache.reader import CacheReader
from ser.cache.writer import CacheWriter

N_UTTERANCES = 5531
N_LAYERS = 13
DIM = 768
TOTAL_FRAMES = 1_300_000


def synthetic_lengths(n: int, total: int, seed: int = 0) -> np.ndarray:
    """Gamma-distributed utterance lengths (in frames) that sum to about ``total``."""
    rng = np.random.default_rng(seed)
    raw = rng.gamma(shape=2.0, scale=1.0, size=n)
    lengths = np.maximum(10, np.round(raw / raw.sum() * total)).astype(np.int64)
    return lengths


def write_store(path: Path, lengths: np.ndarray, chunk_bytes: tuple[int, int] | None = None) -> float:
    """Write the synthetic store through the real writer; returns seconds."""
    layout = StoreLayout(pooled={"mean": (N_LAYERS, DIM), "std": (N_LAYERS, DIM)}, seq={"layer_09": DIM})
    rng = np.random.default_rng(1)
    pooled_row = rng.standard_normal((N_LAYERS, DIM)).astype(np.float32)
    frames = rng.standard_normal((int(lengths.max()), DIM)).astype(np.float16)
    start = time.perf_counter()
    writer = CacheWriter.open(path, layout=layout, attrs={"extractor": {"config_hash": "bench"}})
    for i, length in enumerate(lengths):
        writer.add(f"utt{i:05d}", "fp", {"mean": pooled_row + i, "std": pooled_row - i},
                   {"layer_09": frames[:length]})
    kwargs = {} if chunk_bytes is None else {"pooled_chunk_bytes": chunk_bytes[0], "seq_chunk_bytes": chunk_bytes[1]}
    writer.finalize(**kwargs)
    return time.perf_counter() - start


def best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def numpy_reference(tmp: Path, lengths: np.ndarray) -> dict[str, float]:
    """Seconds numpy needs to read the same bytes from .npy files."""
    rng = np.random.default_rng(1)
    pooled = rng.standard_normal((len(lengths), N_LAYERS, DIM)).astype(np.float32)
    np.save(tmp / "pooled.npy", pooled)
    del pooled
    frames = np.zeros((int(lengths.sum()), DIM), dtype=np.float16)
    np.save(tmp / "seq.npy", frames)
    del frames
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    def items() -> None:
        seq = np.load(tmp / "seq.npy", mmap_mode="r")
        for i in range(len(lengths)):
            np.array(seq[offsets[i]:offsets[i + 1]])

    return {"pooled": best_of(lambda: np.load(tmp / "pooled.npy")),
            "seq": best_of(lambda: np.load(tmp / "seq.npy")),
            "items": best_of(items, repeat=1)}


def store_reads(path: Path) -> dict[str, float]:
    reader = CacheReader(path)

    def items() -> None:
        for uid in reader.ids:
            reader.sequence(uid, "layer_09")

    times = {"pooled": best_of(lambda: reader.pooled("mean")),
             "seq": best_of(lambda: reader._file().read("seq/layer_09")),
             "items": best_of(items, repeat=1)}
    reader.close()
    return times


def raw_bytes(lengths: np.ndarray) -> int:
    return 2 * len(lengths) * N_LAYERS * DIM * 4 + int(lengths.sum()) * DIM * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the IEMOCAP-sized store")
    parser.add_argument("--backends", default="h5,zarr")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--sweep", action="store_true", help="try several chunk sizes (HDF5 and Zarr)")
    args = parser.parse_args()
    n = max(10, int(N_UTTERANCES * args.scale))
    lengths = synthetic_lengths(n, int(TOTAL_FRAMES * args.scale))
    tmp = Path(tempfile.mkdtemp(dir=args.dir, prefix="ser-cache-bench-"))
    try:
        print(f"{n} utterances, {int(lengths.sum())} frames, raw {raw_bytes(lengths) / 2**30:.2f} GiB")
        reference = numpy_reference(tmp, lengths)
        print("numpy: pooled {pooled:.3f} s, seq {seq:.3f} s, items {items:.3f} s".format(**reference))
        chunk_options = [(16 << 20, 4 << 20)]
        if args.sweep:
            chunk_options = [(p, s) for p in (256 << 10, 1 << 20, 4 << 20) for s in (1 << 20, 4 << 20, 16 << 20)]
        worst = float("inf")
        for backend in args.backends.split(","):
            for pooled_chunk, seq_chunk in chunk_options:
                path = tmp / f"store.{backend}"
                seconds = write_store(path, lengths, (pooled_chunk, seq_chunk))
                stored = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() \
                    else path.stat().st_size
                times = store_reads(path)
                ratios = {k: reference[k] / times[k] for k in times}
                size_ratio = stored / raw_bytes(lengths)
                print(f"{backend:5s} chunks pooled {pooled_chunk >> 10} KiB / seq {seq_chunk >> 10} KiB: "
                      f"write {raw_bytes(lengths) / seconds / 2**20:.0f} MB/s; read ratio pooled "
                      f"{ratios['pooled']:.2f}, seq {ratios['seq']:.2f}, per-item {ratios['items']:.2f}; "
                      f"size {size_ratio:.3f}")
                worst = min(worst, ratios["pooled"], ratios["seq"], 1 / size_ratio)
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        print(f"{worst:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
