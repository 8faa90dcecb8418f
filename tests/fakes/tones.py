"""A small synthetic speech-like corpus on disk: class-dependent tones in noise, 4 speakers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser.manifests.schema import ManifestHeader, Utterance, write_manifest

LABELS = ["neutral", "angry", "sad", "happy"]
RATE = 16000


def write_tone_corpus(root: Path, speakers: int = 4, per_speaker: int = 8) -> Path:
    """``speakers`` x ``per_speaker`` clips of 0.6 s and up: a tone whose pitch depends on the class
    (RAVDESS raw labels, label set ravdess8), plus noise; returns the manifest."""
    import soundfile

    rng = np.random.default_rng(0)
    rows = []
    for s in range(speakers):
        for k in range(per_speaker):
            label = k % 4
            seconds = 0.6 + 0.1 * k
            t = np.arange(int(seconds * RATE)) / RATE
            wave = 0.3 * np.sin(2 * np.pi * (150 + 120 * label + 10 * s) * t) + 0.02 * rng.standard_normal(len(t))
            name = f"spk{s}_{k}.wav"
            soundfile.write(root / name, wave.astype(np.float32), RATE)
            rows.append(
                Utterance(
                    id=f"spk{s}_{k}",
                    audio=name,
                    label=LABELS[label],
                    speaker=f"spk{s}",
                    gender="MF"[s % 2],
                    text="x",
                    duration=seconds,
                )
            )
    manifest = root / "tones.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="ravdess", root=str(root), label_set="ravdess8"), rows)
    return manifest
