"""The demo: the whole pipeline on the RAVDESS subset shipped inside the package, offline, on CPU.

Manifest -> eGeMAPS and MiniLM caches -> an audio-only MLP and the FleSER fusion head (audio + text)
under leave-one-speaker-out on actors 01-04 (240 clips, CC BY-NC-SA 4.0; see ser/demo_data/README.md)
-> one packaged clip classified with the model files of the fold that never saw its speaker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from ser.extract.registry import build_extractor
from ser.extract.runner import RunOptions, RunReport, run_extraction
from ser.fusion.config import FitConfig, TrainConfig
from ser.fusion.run import run_fit
from ser.manifests.build import BuildReport, build_manifest
from ser.predict.model import Prediction, load_model
from ser.views import join_view

logger = logging.getLogger(__name__)

STEPS = 4
"""Numbered steps: the manifest, two extractions, the fits (the prediction that follows is not one)."""

DEMO_CLIP = ("Actor_01", "03-01-05-02-01-01-01.flac")
"""An angry clip ("Kids are talking by the door", strong intensity) of actor 01: (fold, file)."""
DEMO_CLIP_LABEL = "angry"

FIT_TITLE = (
    "fit an audio-only MLP and the FleSER fusion head (audio + text) under leave-one-speaker-out "
    "(4 folds; validation = a stratified 20 % of the training speakers' utterances, since only 3 "
    "speakers remain for training)"
)
MLP_RUN = "mlp, audio only (eGeMAPS functionals)"
FLESER_RUN = "fleser, audio + text (eGeMAPS functionals + MiniLM mean)"


def demo_corpus() -> Path:
    """The packaged RAVDESS clips (16 kHz FLAC, actors 01-04)."""
    return Path(str(resources.files("ser").joinpath("demo_data", "ravdess16k")))


@dataclass(frozen=True)
class ClipPrediction:
    """The demo clip classified by the members of one fold of a run."""

    clip: Path
    """The audio file classified."""
    true_label: str
    """Its class in the demo's label set."""
    run_dir: Path
    """The run whose members classified it."""
    members: str
    """The fold whose members (trained without the clip's speaker) classified it."""
    prediction: Prediction
    """The members' answer."""


@dataclass(frozen=True)
class DemoResult:
    """What [`run_demo`][ser.recipes.demo.run_demo] built, in order."""

    manifest: BuildReport
    """The manifest built from the packaged clips."""
    features: dict[str, RunReport]
    """Extractor family (egemaps, minilm) -> its extraction into WORKDIR/<family>.h5."""
    runs: dict[str, Path]
    """Title -> run directory: the audio-only MLP first, then the FleSER fusion head."""
    prediction: ClipPrediction
    """The held-out clip classified by the last run."""


class DemoHooks(Protocol):
    """What [`run_demo`][ser.recipes.demo.run_demo] calls as it goes (the ``ser demo`` command prints it). Without hooks
    the recipe logs it."""

    def step(self, number: int, total: int, title: str) -> None:
        """A numbered step starts."""

    def manifest_built(self, report: BuildReport) -> None:
        """The manifest is written."""

    def features_extracted(self, family: str, report: RunReport) -> None:
        """One cache store is complete."""


class LogHooks:
    """The default hooks: log each step at INFO."""

    def step(self, number: int, total: int, title: str) -> None:
        logger.info("%d/%d %s", number, total, title)

    def manifest_built(self, report: BuildReport) -> None:
        logger.info("%s", "; ".join(report.lines()))

    def features_extracted(self, family: str, report: RunReport) -> None:
        logger.info("%s: %s", family, report.output)


def run_demo(
    workdir: Path, *, epochs: int = 60, seed: int = 0, num_workers: int = 2, hooks: DemoHooks | None = None
) -> DemoResult:
    """Run the demo into ``workdir`` (the manifest, ``egemaps.h5``, ``minilm.h5`` and ``runs/``; finished
    caches are reused on a second call). ``epochs``: most epochs per fold; ``seed``: training seed;
    ``num_workers``: decoding/feature worker processes for extraction. No network, no GPU."""
    hooks = hooks or LogHooks()
    corpus = demo_corpus()
    workdir.mkdir(parents=True, exist_ok=True)
    manifest_path = workdir / "ravdess-demo.jsonl"
    hooks.step(1, STEPS, "manifest")
    manifest = build_manifest("ravdess", corpus, manifest_path)
    hooks.manifest_built(manifest)
    stores = {"egemaps": workdir / "egemaps.h5", "minilm": workdir / "minilm.h5"}
    features = {}
    for number, (family, store) in enumerate(stores.items(), start=2):
        hooks.step(number, STEPS, f"extract {family} -> {store}")
        extractor = build_extractor(family, device="cpu")
        features[family] = run_extraction(
            manifest_path, extractor, store, RunOptions(num_workers=num_workers, progress=False)
        )
        hooks.features_extracted(family, features[family])
    hooks.step(STEPS, STEPS, FIT_TITLE)
    runs = {title: run_fit(config) for title, config in fit_configs(workdir, manifest_path, epochs, seed).items()}
    return DemoResult(
        manifest=manifest, features=features, runs=runs, prediction=predict_demo_clip(corpus, runs[MLP_RUN])
    )


def fit_configs(workdir: Path, manifest: Path, epochs: int, seed: int) -> dict[str, FitConfig]:
    """The two fits, by title: one training recipe for both heads (the trainer defaults: AdamW 1e-3,
    batch 32), not FleSER's paper preset (lr 1e-4, batch 64: a few dozen updates on 180 training clips
    would leave it near chance). Only 3 speakers train per fold, so validation is by utterance."""
    train = TrainConfig(epochs=epochs, patience=15, device="cpu")

    def fit_config(fusion: str, text: str | None) -> FitConfig:
        return FitConfig(
            fusion=fusion,
            manifest=str(manifest),
            protocol="speaker-loso",
            val_by="utterance",
            audio=join_view(workdir / "egemaps.h5", {"stat": "functionals"}),
            text=text,
            seeds=[seed],
            train=train,
            out=str(workdir / "runs"),
        )

    return {
        MLP_RUN: fit_config("mlp", text=None),
        FLESER_RUN: fit_config("fleser", text=join_view(workdir / "minilm.h5", {"stat": "mean"})),
    }


def predict_demo_clip(corpus: Path, run_dir: Path) -> ClipPrediction:
    """Classify the demo clip with the members of fold Actor_01 of ``run_dir``, which never saw actor 01's
    clips (the other folds trained on them)."""
    fold, name = DEMO_CLIP
    clip = corpus / fold / name
    model = load_model(run_dir, members=fold, device="cpu")
    return ClipPrediction(
        clip=clip, true_label=DEMO_CLIP_LABEL, run_dir=run_dir, members=fold, prediction=model.predict(clip)
    )
