"""Recommended views: declared per extractor family, recorded in the store, used when an input names none."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from ser.errors import UserError
from ser.extract.registry import EXTRACTORS, recommended_view
from ser.fusion.data import parse_view
from ser.fusion.run import FitConfig, run_fit
from ser.fusion.train import TrainConfig
from ser.views import ViewError, join_view, set_option, split_view, store_of
from tests.fakes.caches import make_corpus

EXPECTED = {
    "hubert": "stat=mean,layer=weighted",
    "wav2vec2": "stat=mean,layer=weighted",
    "wavlm": "stat=mean,layer=weighted",
    "whisper": "stat=mean,layer=weighted",
    "ecapa": "stat=embedding,layer=last",
    "bert": "stat=pooler,layer=last",
    "roberta": "stat=cls,layer=last",
    "minilm": "stat=mean,layer=last",
    "egemaps": "stat=functionals,layer=last",
    "logmel": "stat=mean,layer=last",
    "vggish": "stat=raw_mean,layer=last",
    "mocap": "stat=mean,layer=last",
}


def test_every_extractor_family_declares_a_recommended_view_it_stores() -> None:
    assert {name: family.recommended_view for name, family in EXTRACTORS.items()} == EXPECTED
    for _family, view in EXPECTED.items():
        parsed = parse_view(f"x.h5:{view}")
        assert parsed.kind == "pooled" and not parsed.auto
    assert recommended_view("bert", ["cls", "mean", "pooler"]) == "stat=pooler,layer=last"
    assert recommended_view("bert", ["cls", "mean"]) == "stat=cls,layer=last"  # no trained pooler
    assert recommended_view("egemaps", ["functionals", "lld_mean", "lld_std"]) == "stat=functionals,layer=last"
    assert recommended_view("unknown-family", ["mean"]) is None


def test_the_view_grammar_reads_and_writes_the_same_text() -> None:
    for text in ("a.h5", "a.h5:stat=mean,layer=6", "a.h5:seq=layer_12", "a.h5:seq", "runs/{fold}/b.zarr:layer=avg"):
        assert join_view(*split_view(text)) == text
    assert split_view("a.h5: stat = mean , layer=6") == ("a.h5", {"stat": "mean", "layer": "6"})
    assert store_of("dir/a.h5:stat=mean") == "dir/a.h5" and store_of("a.h5") == "a.h5"
    assert set_option("a.h5:stat=mean", "layer", 6) == "a.h5:stat=mean,layer=6"
    assert set_option("a.h5:stat=mean,layer=2", "seq", None) == "a.h5:seq"
    assert set_option("a.h5:seq=x", "store", "b.h5") == "b.h5:seq=x"
    with pytest.raises(ViewError, match="unknown view option 'colour'"):
        set_option("a.h5", "colour", "red")
    for text in ("a.h5:stat=mean,layer=6", "a.h5:seq=layer_12", "a.h5:layer=weighted"):
        view = parse_view(text)
        assert parse_view(view.describe()) == view  # what runs record reads back as the same view
    assert parse_view("a.h5:layer=avg").describe() == "a.h5:layer=avg"  # the statistic is the store's first
    for bad, message in (("a.h5:bogus=1", "unknown view option 'bogus=1'"), (":stat=mean", "empty store path")):
        with pytest.raises(ViewError, match=message):
            parse_view(bad)
    assert issubclass(ViewError, UserError)


def test_a_view_is_auto_only_when_the_input_names_none() -> None:
    assert parse_view("feats.h5").auto
    assert not parse_view("feats.h5:stat=mean").auto and parse_view("feats.h5:stat=mean").layer == "last"


def _fit(tmp_path: Path, audio: str, fusion: str = "mlp") -> dict:
    manifest = tmp_path / "m.jsonl"
    cfg = FitConfig(
        fusion=fusion,
        manifest=str(manifest),
        protocol="speaker-loso",
        audio=audio,
        label_set="ravdess8",
        val_by="utterance",
        folds=["spk0"],
        train=TrainConfig(epochs=2, patience=0, batch_size=16),
        out=str(tmp_path / "runs"),
    )
    run_dir = run_fit(cfg)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {"view": config["inputs"]["audio"]["view"], "metrics": json.loads((run_dir / "metrics.json").read_text())}


def test_fit_reads_the_recommended_view_and_logs_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, audio, _ = make_corpus(tmp_path, recommended="stat=mean,layer=weighted")
    with caplog.at_level(logging.INFO, logger="ser"):
        auto = _fit(tmp_path, str(audio))
    assert auto["view"] == "audio.h5:stat=mean,layer=weighted"
    assert "no view given; using the recommended view" in caplog.text
    assert len(auto["metrics"]["runs"][0]["layer_weights"]["audio"]) == 3  # learned over the 3 cached layers
    explicit = _fit(tmp_path, f"{audio}:stat=mean,layer=weighted")
    assert explicit["metrics"]["test"] == auto["metrics"]["test"]  # the same numbers as naming it
    # heads that cannot learn layer weights read the mean over layers instead
    assert _fit(tmp_path, str(audio), fusion="logreg")["view"] == "audio.h5:stat=mean,layer=avg"


def test_a_store_without_a_recommendation_keeps_the_old_default_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, audio, _ = make_corpus(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ser"):
        assert _fit(tmp_path, str(audio))["view"] == "audio.h5:stat=mean,layer=last"
    assert "records no recommended view" in caplog.text
