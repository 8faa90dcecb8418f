"""A tiny synthetic corpus and grid files over it (fits of about a second each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.caches import make_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    manifest, audio, text = make_corpus(tmp_path, n_speakers=4, per_speaker=12)
    return {"manifest": manifest, "audio": audio, "text": text, "root": tmp_path}


def write_grid(corpus: dict[str, Path], name: str = "grid", **parts: Any) -> Path:
    """A grid over ``corpus`` (mlp on audio layer 1, two folds, few epochs) changed by ``parts``."""
    base = {"fusion": "mlp", "manifest": str(corpus["manifest"]), "protocol": "speaker-loso",
            "label_set": "ravdess8", "val_by": "utterance", "audio": f"{corpus['audio']}:layer=1",
            "folds": ["spk0", "spk1"], "train": {"epochs": 4, "patience": 0, "batch_size": 16}}
    base.update(parts.pop("base", {}))
    record = {"name": name, "out": str(corpus["root"] / "runs"), "base": base, **parts}
    path = corpus["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(record), encoding="utf-8")
    return path
