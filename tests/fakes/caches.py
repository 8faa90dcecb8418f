"""Small synthetic corpora with finished cache stores, for fit / ablate / report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ser.cache.format import StoreLayout
from ser.cache.writer import CacheWriter
from ser.manifests.schema import ManifestHeader, Utterance, write_manifest

LABELS = ["neutral", "angry", "sad", "happy"]


def make_corpus(
    tmp_path: Path,
    n_speakers: int = 6,
    per_speaker: int = 24,
    layers: int = 3,
    seq: bool = False,
    recommended: str | None = None,
) -> tuple[Path, Path, Path]:
    """Manifest + an audio store whose layer 1 separates the classes + a text store of noise;
    ``recommended`` is recorded as the audio store's recommended view."""
    rows = [
        Utterance(id=f"s{s}_{k:02d}", label=LABELS[k % 4], speaker=f"spk{s}", gender="MF"[s % 2], text=f"sentence {k}")
        for s in range(n_speakers)
        for k in range(per_speaker)
    ]
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="ravdess", root=str(tmp_path)), rows)
    rng = np.random.default_rng(0)
    audio, text = tmp_path / "audio.h5", tmp_path / "text.h5"
    layout = StoreLayout(pooled={"mean": (layers, 8)}, seq={"layer_01": 8} if seq else {})
    extractor = {"config_hash": "a", **({"recommended_view": recommended} if recommended else {})}
    with CacheWriter.open(audio, layout=layout, attrs={"extractor": extractor}) as writer:
        for row in rows:
            label = LABELS.index(row.label)
            stack = rng.normal(size=(layers, 8)).astype(np.float32)
            stack[1, label] += 3.0  # the signal lives in layer 1 only
            frames = {"layer_01": stack[1] + rng.normal(scale=0.1, size=(5 + label, 8))} if seq else {}
            writer.add(row.id, row.fingerprint(), {"mean": stack}, frames)
        writer.finalize()
    with CacheWriter.open(
        text, layout=StoreLayout(pooled={"mean": (1, 6)}), attrs={"extractor": {"config_hash": "t"}}
    ) as writer:
        for row in rows:
            writer.add(row.id, row.fingerprint(), {"mean": rng.normal(size=(1, 6)).astype(np.float32)})
        writer.finalize()
    return manifest, audio, text


def tiny_corpus(tmp_path: Path) -> dict[str, Path]:
    """4 speakers x 12 utterances with audio and text stores (see :func:`make_corpus`)."""
    manifest, audio, text = make_corpus(tmp_path, n_speakers=4, per_speaker=12)
    return {"manifest": manifest, "audio": audio, "text": text, "root": tmp_path}


def write_grid(corpus: dict[str, Path], name: str = "grid", **parts: Any) -> Path:
    """A grid over a :func:`tiny_corpus` (mlp on audio layer 1, two folds, few epochs: about a second
    per fit) changed by ``parts`` (grid keys; ``base`` entries update the base)."""
    base = {
        "fusion": "mlp",
        "manifest": str(corpus["manifest"]),
        "protocol": "speaker-loso",
        "label_set": "ravdess8",
        "val_by": "utterance",
        "audio": f"{corpus['audio']}:layer=1",
        "folds": ["spk0", "spk1"],
        "train": {"epochs": 4, "patience": 0, "batch_size": 16},
    }
    base.update(parts.pop("base", {}))
    record = {"name": name, "out": str(corpus["root"] / "runs"), "base": base, **parts}
    path = corpus["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(record), encoding="utf-8")
    return path


def write_pooled_store(
    path: Path,
    rows: list[tuple[str, str, np.ndarray]],
    attrs: dict[str, Any] | None = None,
    links: dict[str, str] | None = None,
) -> Path:
    """A finished store with one pooled statistic ``mean`` of shape (1, D): ``(id, fingerprint, (D,))``
    per row; ``attrs`` are added to a minimal extractor record; ``links``: augmented copy -> source id."""
    dim = len(rows[0][2])
    record = {"extractor": {"config_hash": path.stem}, **(attrs or {})}
    with CacheWriter.open(path, layout=StoreLayout(pooled={"mean": (1, dim)}), attrs=record) as writer:
        for uid, fingerprint, vector in rows:
            writer.add(uid, fingerprint, {"mean": np.asarray(vector, dtype=np.float32)[None]})
        writer.finalize(links=links)
    return path


def adaptation_record(fold: Any, folder: Path) -> dict[str, Any]:
    """The store record of an upstream supervised-adapted on ``fold``'s train + validation rows (a
    [`Fold`][ser.manifests.protocols.Fold] of ``speaker-loso`` on a fake corpus whose ids start ``sN_``):
    writes the checkpoint's ``ser_finetune.json`` under ``folder/<fold>/checkpoint``."""
    from ser.cache.adaptation import PROVENANCE_NAME, record_from_provenance

    checkpoint = folder / fold.name / "checkpoint"
    checkpoint.mkdir(parents=True)
    speakers = sorted({uid.split("_")[0].replace("s", "spk") for uid in fold.train + fold.validation})
    provenance = {
        "mode": "supervised",
        "fold": fold.name,
        "protocol": "speaker-loso",
        "manifest": {"sha256": "x"},
        "base_model": "tiny",
        "trained_on": {"train_ids": list(fold.train), "validation_ids": list(fold.validation), "speakers": speakers},
    }
    (checkpoint / PROVENANCE_NAME).write_text(json.dumps(provenance))
    return record_from_provenance(checkpoint, provenance).to_dict()


def four_speaker_corpus(folder: Path) -> tuple[Path, list[Utterance]]:
    """A ravdess8 manifest (no audio) of 4 speakers ``spk0..spk3`` x 12 rows ``sN_KK`` (4 labels, text ``tK``)
    written to ``folder/m.jsonl``; returns it and its rows."""
    rows = [
        Utterance(id=f"s{s}_{k:02d}", label=LABELS[k % 4], speaker=f"spk{s}", gender="MF"[s % 2], text=f"t{k}")
        for s in range(4)
        for k in range(12)
    ]
    manifest = folder / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="ravdess", root=str(folder), label_set="ravdess8"), rows)
    return manifest, rows
