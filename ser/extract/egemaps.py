"""eGeMAPS (extended Geneva Minimalistic Acoustic Parameter Set, v02) through openSMILE.

Per item, one openSMILE run over the 16 kHz signal yields both levels (``ser.extract.smile_pass``;
two ``Smile.process_signal`` calls, one per level, where that is unavailable):

* functionals: the 88 eGeMAPSv02 utterance-level parameters, stored as pooled ``functionals``
  (1, 88);
* low-level descriptors: 25 values per 10 ms frame (loudness, spectral slopes, MFCC 1-4, F0,
  jitter, shimmer, HNR, formants ...), stored as the sequence ``lld`` (T, 25) on request, and
  always summarised as pooled ``lld_mean`` / ``lld_std`` (1, 25) (mean and population std over
  frames).

The column names (88 functionals, 25 LLDs) are recorded in ``upstream()`` so that stored columns
can be mapped back to openSMILE's names.

Frames. openSMILE v2.6.0 (eGeMAPSv02) emits ``T = (n - 800) // 160 + 1`` LLD frames for ``n >= 960``
samples at 16 kHz (frame ``t`` starts at ``t * 10 ms``; the pitch, jitter and shimmer analysis uses
60 ms windows).

Minimum length. Measured with openSMILE 2.6.0: for ``n <= 959`` samples openSMILE produces no
frame at all, warns "Segment too short, filling with NaN" and returns all-NaN functionals and
LLDs; from ``n = 960`` samples (60 ms, the longest analysis window of the set) on, every
functional and LLD is finite (checked for tones, noise, near-silence, impulses and digital
silence). ``min_samples`` is therefore 960: shorter audio is zero-padded (centred) to 960 samples
and the item carries a note. Any NaN that still appears rejects the item with the reason.

Items are processed one at a time at their own length, so no batch padding ever happens
(``supports_padding`` is True because padding is simply never applied). openSMILE runs on the CPU;
``device`` and ``dtype`` are accepted for the common ``build`` signature and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from ser.extract.audio import pad_to_minimum
from ser.extract.base import ExtractorError, ExtractorSpec, Features, Item, ItemRejected, require
from ser.extract.options import coerce_options
from ser.extract.registry import extractor_preset
from ser.extract.smile_pass import one_pass_or_none

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_RATE = 100.0
N_FUNCTIONALS = 88
N_LLD = 25
MIN_SAMPLES = 960
"""Shortest input (60 ms at 16 kHz) for which openSMILE 2.6.0 returns finite eGeMAPSv02 features."""

PRESET_FEATURE_SETS: dict[str, str] = {"v02": "eGeMAPSv02"}


@dataclass(frozen=True, kw_only=True)
class EgemapsConfig:
    """Settings of the eGeMAPS extractor (everything here goes into the config hash)."""

    preset: str = "v02"
    """Registry preset (``v02``)."""
    feature_set: str = "eGeMAPSv02"
    """openSMILE feature set, a member name of ``opensmile.FeatureSet``."""
    min_samples: int = MIN_SAMPLES
    """Audio shorter than this is zero-padded (centred) to it; 960 samples is openSMILE's measured minimum."""


def lld_frame_count(n_samples: int) -> int:
    """LLD frames openSMILE 2.6.0 emits for ``n_samples`` (>= 960) samples at 16 kHz (measured)."""
    return (n_samples - 800) // 160 + 1


class EgemapsExtractor:
    """eGeMAPSv02 functionals and low-level descriptors of each item; see the module docstring."""

    def __init__(self, config: EgemapsConfig | None = None) -> None:
        opensmile = require("opensmile", "egemaps")
        self.cfg = config or EgemapsConfig()
        try:
            feature_set = getattr(opensmile.FeatureSet, self.cfg.feature_set)
        except AttributeError:
            known = [member.name for member in opensmile.FeatureSet]
            raise ExtractorError(
                f"egemaps: unknown openSMILE feature set {self.cfg.feature_set!r}; known: {', '.join(known)}"
            ) from None
        if self.cfg.min_samples < MIN_SAMPLES:
            raise ExtractorError(
                f"egemaps: min_samples must be at least {MIN_SAMPLES} (openSMILE returns NaN "
                f"below), not {self.cfg.min_samples}"
            )
        self.opensmile_version = str(opensmile.__version__)
        try:  # openSMILE's own error class lives in a private module; fall back if it moves
            smile_error = getattr(require("opensmile.core.lib", "egemaps"), "OpenSmileException", RuntimeError)
        except ExtractorError:
            smile_error = RuntimeError
        self._errors: tuple[type[Exception], ...] = (smile_error, RuntimeError, ValueError)
        self._functionals = opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.Functionals)
        self._lld = opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self.functional_names: list[str] = list(self._functionals.feature_names)
        self.lld_names: list[str] = list(self._lld.feature_names)
        self._one_pass = one_pass_or_none(self._functionals, self._lld, SAMPLE_RATE)
        n_functionals, n_lld = len(self.functional_names), len(self.lld_names)
        self.spec = ExtractorSpec(
            name="egemaps",
            preset=self.cfg.preset,
            modality="audio",
            pooled={"functionals": (1, n_functionals), "lld_mean": (1, n_lld), "lld_std": (1, n_lld)},
            seq_layers={"lld": n_lld},
            sample_rate=SAMPLE_RATE,
            frame_rate=FRAME_RATE,
            min_samples=self.cfg.min_samples,
            supports_padding=True,
            in_workers=True,
        )

    def config(self) -> dict[str, Any]:
        return {
            **asdict(self.cfg),
            "functionals_level": "Functionals",
            "lld_level": "LowLevelDescriptors",
            "sample_rate": SAMPLE_RATE,
            "opensmile": self.opensmile_version,
            "pcm": PCM_NOTE,
        }

    def upstream(self) -> dict[str, Any]:
        return {
            "model": f"openSMILE {self.cfg.feature_set}",
            "opensmile": self.opensmile_version,
            "feature_set": self.cfg.feature_set,
            "sample_rate": SAMPLE_RATE,
            "frame_rate": FRAME_RATE,
            "min_samples": self.cfg.min_samples,
            "functional_names": list(self.functional_names),
            "lld_names": list(self.lld_names),
        }

    def _process(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(88,) functionals and (T, 25) LLD frames of one signal, float32."""
        if self._one_pass is not None:
            return self._one_pass(audio)
        functionals = self._functionals.process_signal(audio, SAMPLE_RATE)
        lld = self._lld.process_signal(audio, SAMPLE_RATE)
        if list(functionals.columns) != self.functional_names or list(lld.columns) != self.lld_names:
            raise ExtractorError("egemaps: openSMILE returned columns other than its feature names")
        return (
            functionals.to_numpy(dtype=np.float32).reshape(-1),
            lld.to_numpy(dtype=np.float32).reshape(-1, len(self.lld_names)),
        )

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        """Per item: pooled ``functionals`` (1, 88), ``lld_mean`` / ``lld_std`` (1, 25); seq ``lld`` (T, 25)."""
        unknown = [name for name in seq_layers if name not in self.spec.seq_layers]
        if unknown:
            raise ExtractorError(f"egemaps: no sequence layer {unknown}; the only one is 'lld'")
        results: list[Features | ItemRejected] = []
        for item in items:
            if item.audio is None:
                raise ExtractorError(f"{item.id}: audio extractors need audio")
            audio = np.ascontiguousarray(np.asarray(item.audio, dtype=np.float32).reshape(-1))
            audio, clipped = clip_to_int16(audio)
            audio, note = pad_to_minimum(audio, self.spec.min_samples)
            note = "; ".join(filter(None, [clipped, note])) or None
            try:
                functionals, lld = self._process(audio)
            except self._errors as err:  # openSMILE's own failures for this one signal
                results.append(ItemRejected(f"openSMILE failed on {audio.size} samples ({err})"))
                continue
            bad = [
                name for name, values in (("functionals", functionals), ("LLDs", lld)) if not np.isfinite(values).all()
            ]
            if bad or lld.shape[0] == 0:
                what = " and ".join(bad) or "LLDs (no frame)"
                results.append(ItemRejected(f"openSMILE returned non-finite {what} for {audio.size} samples"))
                continue
            as64 = lld.astype(np.float64)
            pooled = {
                "functionals": functionals[None, :],
                "lld_mean": as64.mean(axis=0, keepdims=True).astype(np.float32),
                "lld_std": as64.std(axis=0, keepdims=True).astype(np.float32),
            }
            seq = {"lld": lld} if "lld" in seq_layers else {}
            results.append(Features(pooled=pooled, seq=seq, note=note))
        return results


INT16_TOP = 32767 / 32768
"""The largest float openSMILE's 16-bit conversion (``x * 32768`` to int16) represents."""
PCM_NOTE = "float audio clipped to the int16 range before openSMILE"
"""Recorded in the config: stores written before clipping wrapped samples above full scale around."""


def clip_to_int16(audio: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``audio`` clipped to [-1, 32767/32768] with a note saying how much, or unchanged with None.

    openSMILE converts float input with ``(x * 32768).astype(int16)``, which wraps a sample at or above
    full scale to the other sign (1.2 becomes -26215): louder-than-full-scale float files, gain
    augmentation and added noise would get distorted features without a word."""
    over = int(np.count_nonzero((audio > INT16_TOP) | (audio < -1.0)))
    if not over:
        return audio, None
    peak = float(np.max(np.abs(audio)))
    return np.clip(audio, -1.0, INT16_TOP), f"clipped {over} samples above full scale (peak {peak:.3f})"


def build(
    preset: str, *, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", **options: Any
) -> EgemapsExtractor:
    """The eGeMAPS extractor of ``preset`` (``v02``); ``options`` override
    [`EgemapsConfig`][ser.extract.egemaps.EgemapsConfig] fields.

    openSMILE has no checkpoint, runs on the CPU and computes in float32: ``device`` and ``dtype`` are
    accepted for the common signature and ignored.
    """
    extractor_preset("egemaps", preset)
    if checkpoint is not None:
        raise ExtractorError("egemaps takes no --checkpoint (openSMILE's feature sets ship with the package)")
    settings = coerce_options(
        "egemaps", EgemapsConfig, options, allowed={f.name for f in fields(EgemapsConfig)} - {"preset"}
    )
    if device != "cpu" or dtype != "float32":
        logger.info("egemaps runs openSMILE on the CPU in float32 (ignoring device=%s, dtype=%s)", device, dtype)
    config = replace(EgemapsConfig(preset=preset, feature_set=PRESET_FEATURE_SETS[preset]), **settings)
    return EgemapsExtractor(config)
