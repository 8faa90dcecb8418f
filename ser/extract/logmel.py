"""Log-mel spectrogram frames for the spectrogram heads (DSP from ``transformers.audio_utils``).

Two presets:

* ``64``: 16 kHz, 64 HTK mel bands over 0-8000 Hz (unnormalised triangles), 25 ms periodic Hann
  window (400 samples) in a 512-point FFT, 10 ms hop (160 samples), centred frames (reflect
  padding), power spectrogram, ``log(mel + 1e-6)`` (natural log on an absolute scale). Silence
  (digital zeros, or the zero padding of a too-short clip) maps to ``log(1e-6) ≈ -13.8``, the
  lowest value there is, never to "loud". ``T = 1 + n // 160`` frames at 100 frames/s.
* ``librosa``: what the Copenhagen project (``whitesungun876/ser_multimodal_project``, see
  the Copenhagen SER project) computed with ``librosa.feature.melspectrogram(n_mels=64)``
  and librosa's defaults at 16 kHz: n_fft = window = 2048, hop 512, periodic Hann, centred frames
  with zero (``constant``) padding (librosa >= 0.10), 64 Slaney-scale, Slaney-normalised mel bands
  over 0-8000 Hz, power 2; then ``power_to_db(ref=max, amin=1e-10, top_db=80)``, after peak
  normalisation of the waveform. ``T = 1 + n // 512`` frames at 31.25 frames/s; values lie in
  [-80, 0] dB, with 0 dB at the loudest bin of the item (the reference is per item, per call).

  Their bug is NOT reproduced: they zero-padded every utterance to the dataset maximum and set
  SpecAugment masks to 0.0, and since 0 dB is the *maximum* under ``ref=max``, padding and masks
  injected "maximum energy" instead of silence (about -80 dB). Here sequences are stored
  unpadded, each at its own length, so no padding exists in the cache; a head that pads or masks
  must use the floor (-80 dB), or an attention mask.

Pooled ``mean`` and ``std`` (1, 64) are the per-band mean and population std over the frames
(computed in float64). The DSP runs on the CPU in float64 and is stored as float32; ``device`` and
``dtype`` are accepted for the common ``build`` signature and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import numpy as np

from ser.extract.audio import pad_to_minimum
from ser.extract.base import ExtractorError, ExtractorSpec, Features, Item, ItemRejected, require
from ser.extract.options import coerce_options
from ser.extract.registry import extractor_preset

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LogMelConfig:
    """Settings of the log-mel extractor (everything here goes into the config hash). Defaults = preset ``64``."""

    preset: str = "64"
    """Registry preset (``64`` or ``librosa``)."""
    sample_rate: int = 16000
    """Audio rate in Hz (audio is resampled to it before the extractor sees it)."""
    n_mels: int = 64
    """Number of mel bands D."""
    n_fft: int = 512
    """FFT size in samples (n_fft // 2 + 1 frequency bins)."""
    win_length: int = 400
    """Hann window length in samples (zero-padded to ``n_fft``); also the minimum input length."""
    hop_length: int = 160
    """Hop between frames in samples (frame rate = sample_rate / hop_length)."""
    f_min: float = 0.0
    """Lowest mel filter edge in Hz."""
    f_max: float = 8000.0
    """Highest mel filter edge in Hz (at most sample_rate / 2)."""
    mel_scale: Literal["htk", "slaney", "kaldi"] = "htk"
    """Mel scale of the filter centres."""
    mel_norm: Literal["slaney"] | None = None
    """``slaney`` divides each triangle by its bandwidth (librosa's default); None keeps peak 1."""
    center: bool = True
    """Centre frame t on sample t * hop_length by padding n_fft // 2 samples at both ends."""
    pad_mode: Literal["reflect", "constant"] = "reflect"
    """How the centring pads the ends (``constant`` = zeros, librosa >= 0.10)."""
    log: Literal["log", "db_max"] = "log"
    """``log``: natural log of (mel power + log_offset); ``db_max``: 10 log10 re the item's max, floored at -top_db."""
    log_offset: float = 1e-6
    """Added to the mel power before the natural log (``log`` only): the value of silence is log(log_offset)."""
    top_db: float = 80.0
    """Dynamic range kept below the maximum (``db_max`` only)."""
    amin: float = 1e-10
    """Power floor before the dB conversion (``db_max`` only), as librosa's ``amin``."""
    peak_normalize: bool = False
    """Scale each waveform to peak amplitude 1 first (the Copenhagen pipeline did; no effect under ref=max
    except through ``amin``)."""


PRESETS: dict[str, LogMelConfig] = {
    "64": LogMelConfig(preset="64"),
    "librosa": LogMelConfig(
        preset="librosa",
        n_fft=2048,
        win_length=2048,
        hop_length=512,
        mel_scale="slaney",
        mel_norm="slaney",
        pad_mode="constant",
        log="db_max",
        peak_normalize=True,
    ),
}


class LogMelExtractor:
    """Log-mel spectrogram of each item; see the module docstring for the two presets."""

    def __init__(self, config: LogMelConfig | None = None) -> None:
        self.cfg = cfg = config or LogMelConfig()
        transformers = require("transformers", "ssl")
        self.transformers_version = str(transformers.__version__)
        self._dsp = audio_utils = require("transformers.audio_utils", "ssl")
        if cfg.win_length > cfg.n_fft:
            raise ExtractorError(f"logmel: win_length {cfg.win_length} exceeds n_fft {cfg.n_fft}")
        if not 0 <= cfg.f_min < cfg.f_max <= cfg.sample_rate / 2:
            raise ExtractorError(f"logmel: need 0 <= f_min < f_max <= {cfg.sample_rate / 2} Hz")
        if cfg.log not in ("log", "db_max"):
            raise ExtractorError(f"logmel: log must be 'log' or 'db_max', not {cfg.log!r}")
        # periodic Hann of win_length, centred and zero-padded to the n_fft analysis frame
        self.window: np.ndarray = audio_utils.window_function(
            cfg.win_length, "hann", periodic=True, frame_length=cfg.n_fft, center=True
        )
        self.mel_filters: np.ndarray = audio_utils.mel_filter_bank(
            num_frequency_bins=cfg.n_fft // 2 + 1,
            num_mel_filters=cfg.n_mels,
            min_frequency=cfg.f_min,
            max_frequency=cfg.f_max,
            sampling_rate=cfg.sample_rate,
            norm=cfg.mel_norm,
            mel_scale=cfg.mel_scale,
        )
        """(n_fft // 2 + 1, n_mels) triangular filters."""
        self.spec = ExtractorSpec(
            name="logmel",
            preset=cfg.preset,
            modality="audio",
            pooled={"mean": (1, cfg.n_mels), "std": (1, cfg.n_mels)},
            seq_layers={"logmel": cfg.n_mels},
            sample_rate=cfg.sample_rate,
            frame_rate=cfg.sample_rate / cfg.hop_length,
            min_samples=cfg.win_length,
            supports_padding=True,
            in_workers=True,
        )

    def config(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "window": "hann (periodic)", "power": 2.0}

    def upstream(self) -> dict[str, Any]:
        return {
            "model": f"log-mel spectrogram ({self.cfg.preset})",
            "dsp": "transformers.audio_utils",
            "transformers": self.transformers_version,
            "sample_rate": self.cfg.sample_rate,
            "frame_rate": self.spec.frame_rate,
            "n_mels": self.cfg.n_mels,
            "n_fft": self.cfg.n_fft,
            "win_length": self.cfg.win_length,
            "hop_length": self.cfg.hop_length,
            "scale": "natural log of (mel power + log_offset)"
            if self.cfg.log == "log"
            else f"dB re item max, floored at -{self.cfg.top_db:g} dB",
        }

    def band_centres(self) -> np.ndarray:
        """(n_mels,) centre frequency in Hz of each mel filter (where its triangle peaks)."""
        mel_min = self._dsp.hertz_to_mel(self.cfg.f_min, mel_scale=self.cfg.mel_scale)
        mel_max = self._dsp.hertz_to_mel(self.cfg.f_max, mel_scale=self.cfg.mel_scale)
        edges = self._dsp.mel_to_hertz(np.linspace(mel_min, mel_max, self.cfg.n_mels + 2), mel_scale=self.cfg.mel_scale)
        return np.asarray(edges[1:-1], dtype=np.float64)

    def frames(self, audio: np.ndarray) -> np.ndarray:
        """(T, n_mels) float32 log-mel frames of one (samples,) waveform; T = 1 + n // hop when centred."""
        cfg = self.cfg
        waveform = np.asarray(audio, dtype=np.float64).reshape(-1)
        if cfg.peak_normalize:
            peak = float(np.max(np.abs(waveform))) if waveform.size else 0.0
            if peak > 0.0:
                waveform = waveform / peak
        mel = self._dsp.spectrogram(
            waveform,
            self.window,
            frame_length=cfg.n_fft,
            hop_length=cfg.hop_length,
            fft_length=cfg.n_fft,
            power=2.0,
            center=cfg.center,
            pad_mode=cfg.pad_mode,
            mel_filters=self.mel_filters,
            mel_floor=0.0,
            log_mel=None,
            dtype=np.float64,
        )  # (n_mels, T) mel power
        if cfg.log == "log":
            logmel = np.log(mel + cfg.log_offset)
        else:
            logmel = self._dsp.power_to_db(
                mel, reference=max(float(np.max(mel)), cfg.amin), min_value=cfg.amin, db_range=cfg.top_db
            )
        return np.ascontiguousarray(logmel.T, dtype=np.float32)

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        """Per item: pooled ``mean`` / ``std`` (1, n_mels); seq ``logmel`` (T, n_mels) float32 when asked."""
        unknown = [name for name in seq_layers if name not in self.spec.seq_layers]
        if unknown:
            raise ExtractorError(f"logmel: no sequence layer {unknown}; the only one is 'logmel'")
        results: list[Features | ItemRejected] = []
        for item in items:
            if item.audio is None:
                raise ExtractorError(f"{item.id}: audio extractors need audio")
            audio, note = pad_to_minimum(np.asarray(item.audio, dtype=np.float32).reshape(-1), self.spec.min_samples)
            if self.cfg.log == "db_max" and not np.any(audio):
                results.append(
                    ItemRejected(
                        "digital silence: a spectrogram in dB re its own maximum is undefined "
                        "(it would be 0 dB, the loudest value, everywhere)"
                    )
                )
                continue
            frames = self.frames(audio)
            if frames.shape[0] == 0 or not np.isfinite(frames).all():
                results.append(ItemRejected(f"non-finite or empty log-mel spectrogram for {audio.size} samples"))
                continue
            as64 = frames.astype(np.float64)
            pooled = {
                "mean": as64.mean(axis=0, keepdims=True).astype(np.float32),
                "std": as64.std(axis=0, keepdims=True).astype(np.float32),
            }
            seq = {"logmel": frames} if "logmel" in seq_layers else {}
            results.append(Features(pooled=pooled, seq=seq, note=note))
        return results


def build(
    preset: str, *, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", **options: Any
) -> LogMelExtractor:
    """The log-mel extractor of ``preset`` (``64`` or ``librosa``); ``options`` override
    [`LogMelConfig`][ser.extract.logmel.LogMelConfig].

    There is no checkpoint, and the DSP runs on the CPU: ``device`` and ``dtype`` are accepted for the
    common signature and ignored.
    """
    extractor_preset("logmel", preset)
    if checkpoint is not None:
        raise ExtractorError("logmel takes no --checkpoint (it has no learned weights)")
    settings = coerce_options(
        "logmel", LogMelConfig, options, allowed={f.name for f in fields(LogMelConfig)} - {"preset"}
    )
    if device != "cpu" or dtype != "float32":
        logger.info(
            "logmel computes on the CPU in float64, stored as float32 (ignoring device=%s, dtype=%s)", device, dtype
        )
    return LogMelExtractor(replace(PRESETS[preset], **settings))
