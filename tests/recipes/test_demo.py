"""``run_demo`` from Python: its two fits (cheap checks) and, slow, the whole run on the packaged clips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ser.extract.runner import RunReport
from ser.manifests.build import BuildReport
from ser.recipes.demo import DEMO_CLIP, FLESER_RUN, MLP_RUN, DemoResult, demo_corpus, fit_configs, run_demo

RAVDESS8 = ("neu", "cal", "hap", "sad", "ang", "fea", "dis", "sur")


class Recorder:
    """Hooks that remember what the recipe reported, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def step(self, number: int, total: int, title: str) -> None:
        self.events.append(("step", number, total))

    def manifest_built(self, report: BuildReport) -> None:
        self.events.append(("manifest", report.written))

    def features_extracted(self, family: str, report: RunReport) -> None:
        self.events.append(("features", family, report.already_complete))


def test_the_packaged_corpus_holds_the_demo_clip() -> None:
    assert demo_corpus().joinpath(*DEMO_CLIP).is_file()
    assert len(list(demo_corpus().glob("Actor_0*/*.flac"))) == 240


def test_both_heads_share_the_audio_features_and_the_training_recipe(tmp_path: Path) -> None:
    configs = fit_configs(tmp_path, tmp_path / "m.jsonl", epochs=5, seed=3)
    assert list(configs) == [MLP_RUN, FLESER_RUN]
    mlp, fleser = configs[MLP_RUN], configs[FLESER_RUN]
    assert (mlp.fusion, fleser.fusion) == ("mlp", "fleser")
    assert mlp.text is None and fleser.text == f"{tmp_path / 'minilm.h5'}:stat=mean"
    assert mlp.audio == fleser.audio == f"{tmp_path / 'egemaps.h5'}:stat=functionals"
    assert mlp.train == fleser.train and mlp.train.epochs == 5 and mlp.train.device == "cpu"
    for config in (mlp, fleser):
        assert (config.protocol, config.val_by, config.seeds) == ("speaker-loso", "utterance", [3])
        assert config.out == str(tmp_path / "runs")


@pytest.mark.slow
def test_the_demo_runs_offline_and_a_second_call_reuses_the_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hooks = Recorder()
    result = run_demo(tmp_path / "demo", epochs=4, num_workers=0, hooks=hooks)
    assert isinstance(result, DemoResult)
    assert hooks.events == [
        ("step", 1, 4),
        ("manifest", 240),
        ("step", 2, 4),
        ("features", "egemaps", False),
        ("step", 3, 4),
        ("features", "minilm", False),
        ("step", 4, 4),
    ]
    assert result.manifest.written == 240
    assert {family: report.extracted for family, report in result.features.items()} == {"egemaps": 240, "minilm": 240}
    assert list(result.runs) == [MLP_RUN, FLESER_RUN]
    for run_dir in result.runs.values():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert [run["fold"] for run in metrics["runs"]] == ["Actor_01", "Actor_02", "Actor_03", "Actor_04"]
    predicted = result.prediction
    assert (predicted.run_dir, predicted.members, predicted.true_label) == (result.runs[MLP_RUN], "Actor_01", "angry")
    assert predicted.clip == demo_corpus().joinpath(*DEMO_CLIP)
    assert predicted.prediction.label in RAVDESS8 and predicted.prediction.error is None
    assert sum(predicted.prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    again = run_demo(tmp_path / "demo", epochs=4, num_workers=0)
    assert all(report.already_complete for report in again.features.values())
