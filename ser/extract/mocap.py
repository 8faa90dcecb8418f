"""IEMOCAP motion capture averaged onto a fixed grid of ``steps`` time steps (Patamia et al. 2021).

Input: the per-utterance text files of ``sentences/MOCAP_head``, ``MOCAP_hand`` and
``MOCAP_rotated``, named by the manifest row's ``extra["mocap"] = {"head": ..., "hand": ...,
"rotated": ...}`` (paths relative to ``extra["root"]``). Each file has two header lines, then one
row per frame: ``frame time v1 v2 ...`` (120 fps). The frame and time columns are dropped.

Column counts. Following the seed-model spec (Patamia et al.) and the Patamia/Tripathi code it
describes, the three files are concatenated in the order head, hand, rotated with
head = 18, hand = 6 and rotated = 165 (55 face markers x XYZ) value columns: D = 189. corpora.md
instead recalls MOCAP_head as the 6 values ``pitch roll yaw tra_x tra_y tra_z`` (not checked
against a real file). Should a release have head 6 / hand 18, set ``-O head_columns=6
-O hand_columns=18``: D stays 189, and the settings go into the config hash. A file whose count
differs from the setting is rejected with both counts, never padded or cut.

Grid. Each file is resampled on its own (as Patamia did) and the results are concatenated:

* ``frames >= steps``: ``np.array_split`` of the frames into ``steps`` consecutive chunks (the first
  ``frames % steps`` chunks one frame longer) and the mean of each chunk, exactly as Patamia.
* ``frames < steps`` (Patamia's code then produced empty chunks, a wrongly shaped array and, in its
  later version, an all-zero input): every frame is first repeated ``steps`` times, which keeps the
  time axis and only makes it finer, and then the same chunk mean is taken. Each step is thus the
  time-weighted average of the (at most two) frames its interval overlaps; a single frame fills the
  whole grid.
* A file without frames is rejected.

Missing values: a chunk mean that is NaN (IEMOCAP marks lost markers with NaN) becomes 0, as in
Patamia's code, where one NaN frame zeroes that column of its whole chunk. With ``-O ignore_nan=true``
the chunk mean is taken over the finite values only and is 0 only when the chunk has none. Infinite
values are treated like NaN.

Outputs: sequence ``grid`` (steps, D) and pooled ``mean`` / ``std`` (1, D), the mean and population
standard deviation of the grid over its steps.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser.extract.base import ExtractorError, ExtractorSpec, Features, Item, ItemRejected
from ser.extract.options import coerce_options

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("head", "hand", "rotated")
"""Concatenation order of the three files' columns."""
NO_MOCAP = "no motion capture for this utterance"
HEADER_LINES = 2
LEADING_COLUMNS = 2
"""``frame`` and ``time``, dropped."""


@dataclass(kw_only=True)
class MocapConfig:
    """Settings of the mocap extractor (all of them go into the config hash)."""

    preset: str = "iemocap-200"
    """The preset name (``iemocap-200``)."""
    steps: int = 200
    """Length T of the output grid."""
    head_columns: int = 18
    """Value columns of a MOCAP_head file (Patamia et al.)."""
    hand_columns: int = 6
    """Value columns of a MOCAP_hand file (Patamia et al.)."""
    rotated_columns: int = 165
    """Value columns of a MOCAP_rotated file (55 markers x XYZ)."""
    ignore_nan: bool = False
    """False: NaN chunk means become 0 (Patamia). True: average the finite values of each chunk."""

    def columns(self) -> dict[str, int]:
        """Kind -> expected value columns, in concatenation order."""
        return {"head": self.head_columns, "hand": self.hand_columns, "rotated": self.rotated_columns}


def read_mocap(path: Path) -> np.ndarray:
    """(frames, values) float64 array of a MOCAP text file, without the frame and time columns.

    Raises [`ItemRejected`][ser.extract.base.ItemRejected] when the file cannot be parsed or holds no frame.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            table = np.loadtxt(path, skiprows=HEADER_LINES, ndmin=2, dtype=np.float64)
    except (ValueError, OSError) as err:
        raise ItemRejected(f"unreadable motion capture file {path} ({err})") from err
    if table.shape[0] == 0:
        raise ItemRejected(f"no motion capture frames in {path}")
    if table.shape[1] <= LEADING_COLUMNS:
        raise ItemRejected(f"motion capture file {path} has no value columns ({table.shape[1]} columns in all)")
    return table[:, LEADING_COLUMNS:]


def chunk_means(frames: np.ndarray, steps: int, *, ignore_nan: bool = False) -> np.ndarray:
    """(n, C) frames -> (steps, C) float64 means of ``steps`` consecutive chunks; non-finite means -> 0.

    ``n >= steps``: the chunks of ``np.array_split(frames, steps)``. ``n < steps``: every frame is
    repeated ``steps`` times first, so each chunk holds exactly n of the repeated frames.
    """
    if frames.ndim != 2 or len(frames) == 0:
        raise ValueError(f"chunk_means needs a non-empty (n, C) array, got shape {frames.shape}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, not {steps}")
    if len(frames) < steps:
        frames = np.repeat(frames, steps, axis=0)
    n = len(frames)
    sizes = np.full(steps, n // steps, dtype=np.int64)
    sizes[: n % steps] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if ignore_nan:
            finite = np.isfinite(frames)
            sums = np.add.reduceat(np.where(finite, frames, 0.0), starts, axis=0)
            counts = np.add.reduceat(finite.astype(np.int64), starts, axis=0)
            means = sums / counts
        else:
            means = np.add.reduceat(frames, starts, axis=0) / sizes[:, None]
    return np.where(np.isfinite(means), means, 0.0)


class MocapExtractor:
    """IEMOCAP motion capture on a fixed grid; see the module docstring."""

    def __init__(self, config: MocapConfig) -> None:
        for name, value in (("steps", config.steps), *((f"{k}_columns", v) for k, v in config.columns().items())):
            if value < 1:
                raise ExtractorError(f"mocap: {name} must be >= 1, not {value}")
        self.cfg = config
        self.dim = sum(config.columns().values())
        self.spec = ExtractorSpec(
            name="mocap",
            preset=config.preset,
            modality="mocap",
            pooled={"mean": (1, self.dim), "std": (1, self.dim)},
            seq_layers={"grid": self.dim},
        )

    def config(self) -> dict[str, Any]:
        return {
            **asdict(self.cfg),
            "order": list(KINDS),
            "short_files": "each frame repeated `steps` times, then chunk means",
        }

    def upstream(self) -> dict[str, Any]:
        return {
            "source": "IEMOCAP sentences/MOCAP_{head,hand,rotated} text files",
            "columns": self.cfg.columns(),
            "dim": self.dim,
            "steps": self.cfg.steps,
            "reference": "Patamia et al. 2021 (array_split into 200 chunks, NaN -> 0)",
        }

    def _paths(self, item: Item) -> dict[str, Path]:
        entry = item.extra.get("mocap")
        if not isinstance(entry, dict) or not entry:
            raise ItemRejected(NO_MOCAP)
        root = Path(str(item.extra.get("root", ".")))
        missing = [kind for kind in KINDS if not entry.get(kind)]
        if missing:
            raise ItemRejected(f"{NO_MOCAP} (no MOCAP_{', MOCAP_'.join(missing)} file in the manifest)")
        paths = {kind: root / str(entry[kind]) for kind in KINDS}
        absent = [f"{kind} {path}" for kind, path in paths.items() if not path.is_file()]
        if absent:
            raise ItemRejected(f"{NO_MOCAP} (missing file: {'; '.join(absent)})")
        return paths

    def grid(self, item: Item) -> np.ndarray:
        """(steps, D) float32 grid of one item; raises [`ItemRejected`][ser.extract.base.ItemRejected] when it cannot be
        made."""
        parts: list[np.ndarray] = []
        for kind, path in self._paths(item).items():
            values = read_mocap(path)
            expected = self.cfg.columns()[kind]
            if values.shape[1] != expected:
                raise ItemRejected(
                    f"{path}: MOCAP_{kind} has {values.shape[1]} value columns, expected {expected} "
                    f"(set -O {kind}_columns=N if this release differs)"
                )
            parts.append(chunk_means(values, self.cfg.steps, ignore_nan=self.cfg.ignore_nan))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        """Per item: pooled mean / std (1, D) over the grid; sequence ``grid`` (steps, D) if chosen."""
        results: list[Features | ItemRejected] = []
        for item in items:
            try:
                grid = self.grid(item)
            except ItemRejected as rejected:
                results.append(rejected)
                continue
            as64 = grid.astype(np.float64)
            pooled = {
                "mean": as64.mean(axis=0, keepdims=True).astype(np.float32),
                "std": as64.std(axis=0, keepdims=True).astype(np.float32),
            }
            seq = {"grid": grid} if "grid" in seq_layers else {}
            results.append(Features(pooled=pooled, seq=seq))
        return results


def build(
    preset: str, *, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", **options: Any
) -> MocapExtractor:
    """Mocap extractor; options: ``steps``, ``head_columns``, ``hand_columns``, ``rotated_columns``, ``ignore_nan``.

    ``device`` and ``dtype`` do not apply (numpy only); a ``checkpoint`` is refused.
    """
    if checkpoint is not None:
        raise ExtractorError("mocap reads the corpus's motion capture files and has no checkpoint")
    settings = coerce_options(
        "mocap",
        MocapConfig,
        options,
        allowed={"steps", "head_columns", "hand_columns", "rotated_columns", "ignore_nan"},
    )
    return MocapExtractor(MocapConfig(preset=preset, **settings))
