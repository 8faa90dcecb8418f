"""VGGish embeddings per 0.96 s patch (torchvggish port of the AudioSet VGGish), raw and postprocessed.

Front end: torchvggish's own ``waveform_to_examples`` (16 kHz log-mel, 25 ms window, 10 ms hop, 64
bands 125-7500 Hz, log offset 0.01) framed into non-overlapping 96 x 64 patches, i.e. (N, 1, 96, 64)
for N whole patches; the rest of the audio after the last whole patch is dropped, as upstream.

For every patch the network gives the 128-d output of its last ReLU fully connected layer
(``raw``). ``pp`` is the AudioSet postprocessing applied to it: PCA with whitening, clip to
[-2, 2] and 8-bit quantisation ``round((x + 2) * 255 / 4)``, so pp values are integers 0..255
(the ``postprocess=True`` default of ``torchvggish.vggish()`` that the seed models used).

Pooled statistics, each (1, 128): ``raw_mean`` and ``pp_mean`` (means over patches) and ``pp_sum``
(sum over patches of the 0..255 embeddings: the audio input of SERVER, which grows with duration).
Sequences: ``raw`` and ``pp``, (N, 128) each, at 1 / 0.96 patches per second.

Weights. Nothing is downloaded. The state dict (``vggish-10086976.pth``) comes from ``--checkpoint``
(a file, or a folder holding both files) and the PCA parameters (``vggish_pca_params-970ea276.pth``)
from ``-O pca_checkpoint=PATH``, next to the checkpoint, or from torch hub's checkpoint folder
(``torch.hub.get_dir()/checkpoints``, where ``torchvggish.vggish()`` would have cached them). Both
are loaded with ``torch.load(weights_only=True)`` (numpy arrays in the PCA file are allowed, nothing
else), and their SHA-256 goes into ``config()`` so a different file never mixes into a store.

Deviations from the seed code: the model runs in eval mode (it has no dropout or batch norm, so
this changes nothing numerically); audio shorter than one patch is zero-padded (centred) to
``min_samples`` = 15600 samples and noted, where the seeds would have produced no patch at all.
One patch needs 96 log-mel frames of 400 samples with a 160-sample hop: 400 + 95 * 160 = 15600
samples (0.975 s), slightly more than the nominal 0.96 s (15360 samples, which give 94 frames).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ser.devices import resolve_device
from ser.extract.audio import pad_to_minimum
from ser.extract.base import ExtractorError, ExtractorSpec, Features, Item, ItemRejected, file_sha256, require
from ser.extract.options import coerce_options

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "vggish-10086976.pth"
"""File name of the torchvggish v0.1 state dict (the 8 hex digits start its SHA-256)."""
PCA_FILE = "vggish_pca_params-970ea276.pth"
"""File name of the torchvggish v0.1 PCA parameters."""
RELEASE_URL = "https://github.com/harritaylor/torchvggish/releases/tag/v0.1"

SAMPLE_RATE = 16000
PATCH_SECONDS = 0.96
EMBEDDING_DIM = 128
WINDOW_SAMPLES = 400
HOP_SAMPLES = 160
PATCH_FRAMES = 96
MIN_SAMPLES = WINDOW_SAMPLES + (PATCH_FRAMES - 1) * HOP_SAMPLES
"""15600 samples: the shortest audio that yields one whole patch."""
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0


@dataclass(kw_only=True)
class VggishConfig:
    """Settings of the VGGish extractor."""

    preset: str = "default"
    """The preset name (``default``)."""
    checkpoint: str | None = None
    """Path of the VGGish state dict, or of a folder holding it (None: torch hub's checkpoint folder)."""
    pca_checkpoint: str | None = None
    """Path of the PCA parameters (None: next to the checkpoint, then torch hub's checkpoint folder)."""
    batch_patches: int = 256
    """Patches per forward pass (memory only; the output does not depend on it)."""


def _missing_files_error(looked: Sequence[Path]) -> ExtractorError:
    places = ", ".join(str(p) for p in dict.fromkeys(looked))
    return ExtractorError(
        f"vggish needs two local files and never downloads them: the weights {WEIGHTS_FILE} and the PCA "
        f"parameters {PCA_FILE} (both from {RELEASE_URL}). Pass them with --checkpoint PATH (the weights file, "
        f"or a folder holding both) and -O pca_checkpoint=PATH, or put them in {_hub_checkpoints()}. "
        f"Looked in: {places}"
    )


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_files(checkpoint: str | None, pca_checkpoint: str | None) -> tuple[Path, Path]:
    """(weights, pca) paths from the given options, the checkpoint's folder and torch hub's cache.

    Raises [`ExtractorError`][ser.extract.base.ExtractorError] naming both files, ``--checkpoint PATH`` and
    ``-O pca_checkpoint=PATH`` when either cannot be found.
    """
    hub = _hub_checkpoints()
    looked: list[Path] = []
    weights: Path | None = None
    weights_dir: Path | None = None
    if checkpoint is not None:
        given = Path(checkpoint).expanduser()
        if given.is_dir():
            weights_dir = given
            given = given / WEIGHTS_FILE
        else:
            weights_dir = given.parent
        looked.append(given)
        if given.is_file():
            weights = given
    else:
        looked.append(hub / WEIGHTS_FILE)
        if (hub / WEIGHTS_FILE).is_file():
            weights = hub / WEIGHTS_FILE
    pca: Path | None = None
    if pca_checkpoint is not None:
        given_pca = Path(pca_checkpoint).expanduser()
        looked.append(given_pca)
        if given_pca.is_file():
            pca = given_pca
    else:
        candidates = ([weights_dir / PCA_FILE] if weights_dir is not None else []) + [hub / PCA_FILE]
        looked.extend(candidates)
        pca = next((c for c in candidates if c.is_file()), None)
    if weights is None or pca is None:
        raise _missing_files_error(looked)
    return weights, pca


def _numpy_global(name: str) -> Any:
    """The numpy object a pickle names (``numpy.core.*`` of numpy 1 files is ``numpy._core.*`` in numpy 2)."""
    module_name, _, attr = name.rpartition(".")
    candidates = [module_name]
    if module_name == "numpy.core" or module_name.startswith("numpy.core."):
        candidates.insert(0, "numpy._core" + module_name[len("numpy.core") :])
    for candidate in candidates:
        try:
            return getattr(importlib.import_module(candidate), attr)
        except (ImportError, AttributeError):
            continue
    raise ExtractorError(f"cannot resolve {name} from the PCA file")


NUMPY_ARRAY_GLOBALS = frozenset(
    {
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.ndarray",
        "numpy.dtype",
    }
)
"""The only globals a PCA file may name besides numpy's dtype classes: what pickling a numpy array
needs. The list is fixed here, never taken from the file, so a crafted file naming any other
callable (``numpy.testing``'s exec helpers, ``os.system`` ...) is refused before anything is loaded."""


def _load_tensors(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``, allowing exactly the numpy array globals above."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first_error:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:
            names = []
        dtype_classes = {
            f"numpy.dtypes.{name}"
            for name, cls in vars(np.dtypes).items()
            if isinstance(cls, type) and issubclass(cls, np.dtype)
        }
        refused = sorted(set(names) - NUMPY_ARRAY_GLOBALS - dtype_classes)
        if refused:
            raise ExtractorError(
                f"{path} names {', '.join(refused)}, which a weights or PCA file never needs; "
                "refusing to load it (use the torchvggish release files)"
            ) from first_error
        if not names:
            raise ExtractorError(f"cannot load {path} as a tensor file ({first_error})") from first_error
        allowed: list[Any] = [(_numpy_global(name), name) for name in names if name in NUMPY_ARRAY_GLOBALS]
        # dtype objects unpickle through their numpy.dtypes classes, which that listing leaves out
        allowed.extend(cls for cls in vars(np.dtypes).values() if isinstance(cls, type) and issubclass(cls, np.dtype))
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ExtractorError(f"cannot load {path} as a tensor file ({err})") from err


def _check_name(path: Path, canonical: str, sha: str) -> None:
    """Warn when a file named like the torchvggish release does not match the hash in its name."""
    if path.name == canonical:
        prefix = canonical.rsplit("-", 1)[1].split(".")[0]
        if not sha.startswith(prefix):
            logger.warning(
                "%s: SHA-256 %s does not start with %s (corrupted or different file?)", path, sha[:16], prefix
            )


class VggishExtractor:
    """VGGish raw and postprocessed embeddings per patch; see the module docstring."""

    def __init__(self, config: VggishConfig, *, device: str = "cpu") -> None:
        tv = require("torchvggish", "vggish")
        self.cfg = config
        self.device = torch.device(resolve_device(device))
        if config.batch_patches < 1:
            raise ExtractorError(f"vggish: batch_patches must be >= 1, not {config.batch_patches}")
        self.weights_path, self.pca_path = resolve_files(config.checkpoint, config.pca_checkpoint)
        self.weights_sha256 = file_sha256(self.weights_path)
        self.pca_sha256 = file_sha256(self.pca_path)
        _check_name(self.weights_path, WEIGHTS_FILE, self.weights_sha256)
        _check_name(self.pca_path, PCA_FILE, self.pca_sha256)
        self._examples = tv.waveform_to_examples

        # Built with postprocess=False: torchvggish's Postprocessor would download the PCA file.
        self.model = tv.VGG(tv.make_layers(), postprocess=False)
        state = _load_tensors(self.weights_path)
        if not isinstance(state, dict):
            raise ExtractorError(f"{self.weights_path} is not a state dict ({type(state).__name__})")
        try:
            self.model.load_state_dict(state)
        except RuntimeError as err:
            raise ExtractorError(f"{self.weights_path} is not a torchvggish VGGish state dict ({err})") from err
        self.model.eval().to(self.device)

        params = _load_tensors(self.pca_path)
        try:
            matrix = torch.as_tensor(np.asarray(params["pca_eigen_vectors"])).float()
            means = torch.as_tensor(np.asarray(params["pca_means"])).float().reshape(-1, 1)
        except (KeyError, TypeError, IndexError) as err:
            raise ExtractorError(f"{self.pca_path} holds no pca_eigen_vectors / pca_means ({err})") from err
        if matrix.shape != (EMBEDDING_DIM, EMBEDDING_DIM) or means.shape != (EMBEDDING_DIM, 1):
            raise ExtractorError(
                f"{self.pca_path}: PCA shapes {tuple(matrix.shape)} / {tuple(means.shape)}, "
                f"expected ({EMBEDDING_DIM}, {EMBEDDING_DIM}) / ({EMBEDDING_DIM},)"
            )
        self.pca_matrix = matrix.to(self.device)
        self.pca_means = means.to(self.device)

        dims = (1, EMBEDDING_DIM)
        self.spec = ExtractorSpec(
            name="vggish",
            preset=config.preset,
            modality="audio",
            pooled={"raw_mean": dims, "pp_mean": dims, "pp_sum": dims},
            seq_layers={"raw": EMBEDDING_DIM, "pp": EMBEDDING_DIM},
            sample_rate=SAMPLE_RATE,
            frame_rate=1.0 / PATCH_SECONDS,
            min_samples=MIN_SAMPLES,
            supports_padding=True,
        )

    def config(self) -> dict[str, Any]:
        return {
            "preset": self.cfg.preset,
            "weights_sha256": self.weights_sha256,
            "pca_sha256": self.pca_sha256,
            "sample_rate": SAMPLE_RATE,
            "patch_seconds": PATCH_SECONDS,
            "min_samples": MIN_SAMPLES,
            "postprocess": f"pca, clip [{QUANTIZE_MIN}, {QUANTIZE_MAX}], round to 0..255",
            "eval_mode": True,
        }

    def upstream(self) -> dict[str, Any]:
        return {
            "model": "torchvggish VGGish",
            "weights": str(self.weights_path),
            "pca": str(self.pca_path),
            "weights_sha256": self.weights_sha256,
            "pca_sha256": self.pca_sha256,
            "sample_rate": SAMPLE_RATE,
            "frame_rate": self.spec.frame_rate,
            "dim": EMBEDDING_DIM,
            "dtype": "float32",
        }

    # ------------------------------------------------------------------ forward

    def patches(self, audio: np.ndarray) -> np.ndarray:
        """(samples,) 16 kHz audio -> (N, 1, 96, 64) float32 log-mel patches (torchvggish's front end)."""
        examples = self._examples(np.asarray(audio, dtype=np.float32), SAMPLE_RATE, return_tensor=False)
        return np.ascontiguousarray(examples[:, None, :, :], dtype=np.float32)

    def postprocess(self, raw: torch.Tensor) -> torch.Tensor:
        """(N, 128) raw embeddings -> (N, 128) PCA-whitened, clipped, 8-bit quantised values 0..255.

        Same operations and order as torchvggish's ``Postprocessor`` (float32), without its squeeze.
        """
        whitened = torch.mm(self.pca_matrix, raw.t() - self.pca_means).t()
        clipped = torch.clamp(whitened, QUANTIZE_MIN, QUANTIZE_MAX)
        return torch.round((clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)))

    def embed(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1, 96, 64) patches -> raw (N, 128) and pp (N, 128) float32, in batches of ``batch_patches``."""
        raws: list[np.ndarray] = []
        pps: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(patches), self.cfg.batch_patches):
                batch = torch.from_numpy(patches[start : start + self.cfg.batch_patches]).to(self.device)
                raw = self.model(batch).float()
                raws.append(raw.cpu().numpy())
                pps.append(self.postprocess(raw).cpu().numpy())
        if not raws:
            empty = np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
            return empty, empty.copy()
        return np.concatenate(raws), np.concatenate(pps)

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        """Per item: pooled raw_mean / pp_mean / pp_sum (1, 128); sequences raw / pp (N, 128) if chosen."""
        per_item: list[np.ndarray] = []
        notes: list[str | None] = []
        for item in items:
            if item.audio is None:
                raise ExtractorError(f"{item.id}: audio extractors need audio")
            audio, note = pad_to_minimum(item.audio, MIN_SAMPLES)
            per_item.append(self.patches(audio))
            notes.append(note)
        counts = [len(p) for p in per_item]
        raw_all, pp_all = self.embed(np.concatenate(per_item) if per_item else np.zeros((0, 1, 96, 64), np.float32))
        results: list[Features | ItemRejected] = []
        start = 0
        for count, note in zip(counts, notes, strict=True):
            raw, pp = raw_all[start : start + count], pp_all[start : start + count]
            start += count
            if count == 0:  # cannot happen after padding; kept as a guard
                results.append(ItemRejected("no whole VGGish patch in the audio"))
                continue
            pooled = {
                "raw_mean": raw.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32),
                "pp_mean": pp.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32),
                "pp_sum": pp.astype(np.float64).sum(axis=0, keepdims=True).astype(np.float32),
            }
            layers = {"raw": raw, "pp": pp}
            seq = {name: layers[name] for name in seq_layers}
            results.append(Features(pooled=pooled, seq=seq, note=note))
        return results


def build(
    preset: str, *, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", **options: Any
) -> VggishExtractor:
    """VGGish extractor; options: ``pca_checkpoint`` (path), ``batch_patches`` (int)."""
    settings = coerce_options("vggish", VggishConfig, options, allowed={"pca_checkpoint", "batch_patches"})
    if dtype != "float32":
        logger.info("vggish computes in float32 (--dtype %s ignored: the 8-bit postprocessing needs float32)", dtype)
    config = VggishConfig(preset=preset, checkpoint=checkpoint, **settings)
    if config.batch_patches < 1:
        raise ExtractorError(f"vggish: batch_patches must be >= 1, not {config.batch_patches}")
    return VggishExtractor(config, device=device)
