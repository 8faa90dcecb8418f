"""The real RAVDESS clips packaged with ser (actors 01-04) as test corpora."""

from __future__ import annotations

from collections.abc import Collection
from importlib import resources
from pathlib import Path

from ser.manifests.build import build_manifest
from ser.manifests.schema import read_manifest, write_manifest


def demo_corpus() -> Path:
    """The packaged corpus folder (``Actor_NN/*.flac``)."""
    return Path(str(resources.files("ser").joinpath("demo_data", "ravdess16k")))


def demo_manifest(folder: Path, speakers: Collection[str] | None = None, name: str = "demo.jsonl") -> Path:
    """A manifest of the packaged clips in ``folder`` (only ``speakers``' rows when given)."""
    manifest = folder / name
    build_manifest("ravdess", demo_corpus(), manifest)
    if speakers is not None:
        rows = read_manifest(manifest)
        write_manifest(manifest, rows.header, [u for u in rows.utterances if u.speaker in speakers])
    return manifest
