"""Recipes: the records are valid, a fit starts from them, explicit values depart from them (logged and
recorded), the ser recipe's feature losses are the size of the cross-entropy, and every paper head prints
the fidelity table its records render."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from ser.cli import app
from ser.errors import UserError
from ser.extract.registry import EXTRACTORS
from ser.fusion.config import FitConfig, TrainConfig, config_from_dict
from ser.fusion.departures import config_departures, silence_floor
from ser.fusion.heads import HEADS, head_module, head_recipe, resolve_head_config, torch_heads
from ser.fusion.losses import LOSSES, build_loss, loss_options
from ser.fusion.recipe_text import fidelity_table, recipe_lines
from ser.fusion.recipes import RECIPES
from ser.options import coerce_fields
from ser.views import join_view, parse_view, split_options
from tests.fakes.demo import demo_manifest

PAPER_HEADS = [name for name, info in HEADS.items() if "paper" in info.recipes]
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def test_every_neural_paper_head_has_both_recipes_and_a_fidelity_table() -> None:
    assert set(PAPER_HEADS) == set(torch_heads()) - {"mlp"}
    for name in PAPER_HEADS:
        info = HEADS[name]
        assert list(info.recipes) == ["paper", "ser"] and len(info.fidelity) >= 4
        aspects = [row.aspect for row in info.fidelity]
        assert "checkpoint" in aspects and len(set(aspects)) == len(aspects), name
        for row in info.fidelity:  # every row cites its original, repository and file
            assert "/" in row.original and row.original.split()[0].count("/") == 1, (name, row.aspect)
    for name in ("mlp", "logreg", "svm"):
        assert list(HEADS[name].recipes) == ["ser"]
        with pytest.raises(UserError, match="reproduces no paper"):
            head_recipe(name, "paper")


@pytest.mark.parametrize("name", list(HEADS))
def test_every_recipe_value_is_a_valid_setting(name: str) -> None:
    module = head_module(name)
    for recipe_name, recipe in HEADS[name].recipes.items():
        assert set(recipe.train) <= TRAIN_FIELDS, recipe_name
        for loss in {None, *recipe.loss_train, *recipe.loss_options}:
            TrainConfig(**coerce_fields(TrainConfig, recipe.train_for(loss), "train")).check()
        resolve_head_config(name, dict(recipe.head))
        for modality, options in recipe.inputs.items():
            view = parse_view(join_view("store.h5", split_options(options)))
            assert view.kind == module.INPUTS[modality].rstrip("?"), (recipe_name, modality)
        for modality, families in recipe.extractors.items():
            assert modality in module.INPUTS
            for family in families:
                base, _, preset = family.partition(":")
                assert base in EXTRACTORS and (not preset or preset in EXTRACTORS[base].presets), family
        for loss, options in recipe.loss_options.items():
            assert set(options) <= set(loss_options(loss)), (recipe_name, loss)
        for loss, values in recipe.loss_train.items():  # a known loss, with train values a config accepts
            assert loss in LOSSES and set(values) <= TRAIN_FIELDS, (recipe_name, loss)


def test_the_paper_recipes_hold_the_originals_facts() -> None:
    """A few facts from the original repositories that a refactor must not lose."""
    server = head_recipe("server", "paper").train
    assert (server["batch_size"], server["epochs"], server["checkpoint"], server["normalize"]) == (
        1,
        101,
        "last",
        False,
    )
    assert head_recipe("mser3", "paper").train["schedule"] == "none"  # built, never stepped
    mser4 = head_recipe("mser4", "paper")
    assert (mser4.train["optimizer"], mser4.train["momentum"], mser4.train["transfer_epochs"]) == ("sgd", 0.99, 50)
    assert mser4.train["loss_milestones"] == [8, 14, 20, 25] and mser4.train["loss_optimizer"] is True
    assert (
        mser4.train_for("ce+arcface")["optimizer"] == "adam" and mser4.train_for("ce+arcface")["transfer_epochs"] == 0
    )
    assert mser4.loss_options["ce+center"] == {"paper_form": True}
    assert head_recipe("serfuse", "paper").train["checkpoint"] == "train_val_loss"
    assert head_recipe("serfuse", "paper").inputs["audio"] == "stat=embedding,layer=last"
    assert head_recipe("fleser", "paper").head["fuzzy"] == "batch"
    assert head_recipe("early_fusion", "paper").head["tokens"] == "concat"
    assert head_recipe("resnet18", "paper").head["specaugment"] is False
    assert head_recipe("resnet18", "paper").extractors["audio"] == ("logmel:librosa",)


def test_a_record_starts_from_its_recipe_and_explicit_values_depart_from_it() -> None:
    record = {"fusion": "fleser", "manifest": "m.jsonl", "protocol": "speaker-loso", "recipe": "paper"}
    cfg = config_from_dict({**record, "audio": "a.h5", "text": "t.h5"})
    assert cfg.recipe == "paper" and cfg.train.normalize is False and cfg.train.select == "wa"
    assert cfg.head == {"fuzzy": "batch", "fusion": "gmu", "alpha": 0.3}
    assert cfg.audio == "a.h5:stat=mean,layer=last" and cfg.text == "t.h5:stat=pooler,layer=last"
    assert config_departures(cfg) == []
    changed = config_from_dict(
        {
            **record,
            "audio": "a.h5:layer=weighted",
            "text": "t.h5",
            "train": {"lr": 3e-4},
            "head": {"fuzzy": "per_sample"},
        }
    )
    assert changed.train.lr == 3e-4 and changed.train.batch_size == 64  # the rest of the recipe stays
    assert config_departures(changed) == [
        "train.lr=0.0003 (the paper recipe: 0.0001)",
        "head.fuzzy=per_sample (the paper recipe: batch)",
        "--audio reads layer=weighted; the paper recipe reads stat=mean,layer=last",
    ]
    default = config_from_dict({**record, "recipe": None, "audio": "a.h5", "text": "t.h5"})
    assert default.recipe == "ser" and default.audio == "a.h5" and default.train.normalize is True
    assert default.slug().startswith("fleser-ser-") and cfg.slug().startswith("fleser-paper-")
    assert default.slug() != cfg.slug()
    with pytest.raises(UserError, match="recipe must be one of ser, paper"):
        config_from_dict({**record, "recipe": "original"})


def test_a_loss_chosen_under_a_recipe_takes_that_losses_settings() -> None:
    base = {"fusion": "mser4", "manifest": "m.jsonl", "protocol": "speaker-loso", "recipe": "paper"}
    arcface = config_from_dict({**base, "train": {"loss": "ce+arcface"}})
    assert (arcface.train.optimizer, arcface.train.transfer_epochs) == ("adam", 0)
    assert config_departures(arcface) == []
    center = config_from_dict({**base, "train": {"loss": "ce+center"}})
    assert (center.train.optimizer, center.train.transfer_epochs) == ("sgd", 50)


def test_the_ser_recipes_feature_losses_start_at_the_size_of_the_cross_entropy() -> None:
    """4M-SER's head at its paper widths (text 768, VGGish 128), batch 32, 4 classes, at initialisation."""
    torch.manual_seed(0)
    head = head_module("mser4").build({"text": 768, "audio": 128}, 4).eval()
    batch = 32
    inputs = {
        "text": torch.randn(batch, 20, 768),
        "text_lengths": torch.full((batch,), 20),
        "audio": torch.rand(batch, 10, 128) * 255,
        "audio_lengths": torch.full((batch,), 10),
    }
    labels = torch.arange(batch) % 4
    with torch.no_grad():
        logits, features = head.forward_features(inputs)
        cross_entropy = float(torch.nn.functional.cross_entropy(logits, labels))
        ratios = {}
        for loss, options in head_recipe("mser4", "ser").loss_options.items():
            combined = build_loss(loss, 4, head.feature_dim, **options)
            ratios[loss] = float(combined.auxiliary(features, labels)) / cross_entropy  # type: ignore[operator]
        unweighted = float(build_loss("ce+center", 4, head.feature_dim).auxiliary(features, labels))  # type: ignore[operator]
    assert abs(cross_entropy - math.log(4)) < 0.1
    assert all(1 / 1.5 < ratio < 1.5 for ratio in ratios.values()), ratios
    assert unweighted / cross_entropy > 50  # what weight 1 would do


def test_silence_floor_comes_from_the_log_mel_store() -> None:
    librosa = {"extractor": {"name": "logmel", "config": {"log": "db_max", "top_db": 80.0}}}
    natural = {"extractor": {"name": "logmel", "config": {"log": "log", "log_offset": 1e-6}}}
    assert silence_floor(librosa) == -80.0
    assert silence_floor(natural) == pytest.approx(math.log(1e-6))
    assert silence_floor({"extractor": {"name": "egemaps"}}) is None


@pytest.mark.parametrize("name", PAPER_HEADS)
def test_ser_fusion_show_prints_both_recipes_and_the_fidelity_table(name: str) -> None:
    result = CliRunner().invoke(app, ["fusion", "show", name])
    assert result.exit_code == 0, result.output
    for recipe in RECIPES:
        assert f"recipe {recipe}" in result.output
    rows = fidelity_table(name)
    for aspect, original, paper, ser, _ in rows:
        assert f"- {aspect}" in result.output and original in result.output
        assert paper.replace("`", "") in result.output and ser.replace("`", "") in result.output
    assert recipe_lines(name, "paper")[1] in result.output


def test_fidelity_cells_show_each_recipes_values() -> None:
    rows = {aspect: (paper, ser) for aspect, _, paper, ser, _ in fidelity_table("server")}
    assert rows["batch"] == ("`batch_size=1`", "`batch_size=32`")  # ser: the TrainConfig default
    assert rows["checkpoint"] == ("`checkpoint=last`; `select=ua`", "`checkpoint=best`; `select=ua`")
    assert rows["input scaling"] == ("`normalize=false`", "`normalize=true`")


def test_fit_records_the_recipe_and_pads_with_the_stores_silence(tmp_path: Path) -> None:
    """resnet18 --recipe paper on real clips (two actors of the packaged RAVDESS subset) and a librosa log-mel
    store: the recipe and its departures in config.yaml and metrics.json, pad_value -80 from the store."""
    manifest = demo_manifest(tmp_path, speakers={"Actor_01", "Actor_02"})
    store = tmp_path / "logmel.h5"
    runner = CliRunner()
    extract = [
        "extract",
        "--model",
        "logmel",
        "--preset",
        "librosa",
        "-m",
        str(manifest),
        "-o",
        str(store),
        "--seq",
        "last",
    ]
    assert runner.invoke(app, extract).exit_code == 0
    fit = ["fit", "--fusion", "resnet18", "--recipe", "paper", "-m", str(manifest), "-p", "speaker-loso"]
    fit += [
        "--audio",
        str(store),
        "--set",
        "train.epochs=1",
        "--set",
        "head.widths=[4,4,4,4]",
        "-o",
        str(tmp_path / "runs"),
    ]
    result = runner.invoke(app, fit)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("recipe paper: train_model.py as run")  # the recipe first (progress: stderr)
    assert result.stderr.startswith("ser fit: resnet18, checking the inputs")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("resnet18-paper-speaker-loso-")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["head_resolved"]["pad_value"] == -80.0 and saved["head_resolved"]["specaugment"] is False
    assert saved["config"]["train"]["checkpoint"] == "last" and saved["config"]["train"]["normalize"] is False
    assert saved["recipe"]["name"] == "paper"
    assert saved["recipe"]["departures"] == ["train.epochs=1 (the paper recipe: 30)"]  # head.widths: not the recipe's
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["recipe"] == "paper" and metrics["departures"] == saved["recipe"]["departures"]
    assert all(run["best_epoch"] == run["epochs_run"] == 1 for run in metrics["runs"])


def test_an_unknown_recipe_or_a_paper_recipe_of_a_baseline_is_refused_by_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["fit", "-m", str(tmp_path / "m.jsonl"), "-p", "speaker-loso", "--audio", "a.h5"]
    result = runner.invoke(app, [*base, "--fusion", "mlp", "--recipe", "paper"])
    assert result.exit_code == 2 and "head mlp reproduces no paper" in result.output
    result = runner.invoke(app, [*base, "--fusion", "fleser", "--recipe", "orig"])
    assert result.exit_code == 2 and "recipe must be one of ser, paper" in result.output


def test_python_configs_name_their_recipe() -> None:
    assert FitConfig(fusion="fleser", manifest="m", protocol="p").recipe == "ser"
    assert TrainConfig.for_head("server", "paper").batch_size == 1
    assert TrainConfig.for_head("server").batch_size == 32
