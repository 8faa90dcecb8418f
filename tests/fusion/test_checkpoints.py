"""Checkpoint rules, two-stage training and the loss parameters' own optimiser, in both engines."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ser.errors import UserError
from ser.fusion.checkpoints import CheckpointRule
from ser.fusion.config import TrainConfig
from ser.fusion.engine import MemberSpec, select_members
from ser.fusion.train import setup
from tests.fusion.engine_fixtures import head_data, no_dropout, unequal_folds
from tests.fusion.test_engine import assert_same_members, both_engines


def feed(rule: CheckpointRule, epochs: list[tuple[float, float, float]]) -> list[bool]:
    """(UA, train loss, validation loss) per epoch -> which epochs were kept."""
    return [rule.update(i + 1, {"ua": ua, "wa": ua}, train, val) for i, (ua, train, val) in enumerate(epochs)]


EPOCHS = [(0.30, 2.0, 1.5), (0.50, 1.5, 1.6), (0.40, 1.2, 1.1), (0.45, 1.3, 1.0), (0.35, 1.1, 1.2)]


def test_best_keeps_the_best_validation_metric() -> None:
    rule = CheckpointRule("best", "ua")
    assert feed(rule, EPOCHS) == [True, True, False, False, False]
    assert (rule.best_epoch, rule.best_score) == (2, 0.50)


def test_last_keeps_every_epoch_and_val_loss_the_lowest_loss() -> None:
    last = CheckpointRule("last", "ua")
    assert all(feed(last, EPOCHS)) and last.best_epoch == 5 and last.best_score == 0.35
    val_loss = CheckpointRule("val_loss", "ua")
    assert feed(val_loss, EPOCHS) == [True, False, True, True, False]
    assert (val_loss.best_epoch, val_loss.best_score) == (4, 0.45)


def test_train_val_loss_needs_both_losses_below_the_last_save() -> None:
    """SER-Fuse: epoch 3 beats epoch 1 on both losses; epoch 4's training loss (1.3) is above epoch 3's (1.2),
    so it is not saved although its validation loss is the lowest; epoch 5 fails on the validation loss."""
    rule = CheckpointRule("train_val_loss", "ua")
    assert feed(rule, EPOCHS) == [True, False, True, False, False]
    assert rule.best_epoch == 3


def test_patience_counts_epochs_without_a_kept_checkpoint() -> None:
    rule = CheckpointRule("train_val_loss", "ua", patience=2)
    feed(rule, EPOCHS[:4])
    assert not rule.should_stop  # epoch 4 is the first without a save
    feed(rule, EPOCHS[4:])
    assert rule.should_stop
    with pytest.raises(ValueError, match="checkpoint rule"):
        CheckpointRule("first", "ua")


def test_bad_stage_settings_are_refused_by_name() -> None:
    with pytest.raises(UserError, match="patience=0"):
        TrainConfig(checkpoint="last", patience=5).check()
    with pytest.raises(UserError, match="loss_optimizer=true"):
        TrainConfig(loss_milestones=[8]).check()
    with pytest.raises(UserError, match="transfer_epochs"):
        TrainConfig(transfer_epochs=3, refit=True).check()
    with pytest.raises(UserError, match="checkpoint must be one of"):
        TrainConfig(checkpoint="first").check()


def test_the_loss_parameters_get_their_own_adam_with_milestones() -> None:
    data = head_data("mser4")
    cfg = TrainConfig(
        optimizer="sgd",
        momentum=0.99,
        lr=1e-2,
        loss="ce+center",
        loss_optimizer=True,
        loss_milestones=[2, 4],
        device="cpu",
    )
    state = setup(data, np.arange(40), "mser4", no_dropout("mser4"), cfg, torch.device("cpu"))
    centers = {id(p) for p in state.loss_fn.parameters()}
    assert not centers & {id(p) for group in state.optimizer.param_groups for p in group["params"]}
    assert isinstance(state.loss_optimizer, torch.optim.Adam)
    assert {id(p) for p in state.loss_optimizer.param_groups[0]["params"]} == centers
    lrs = []
    for _ in range(5):
        lrs.append(state.loss_optimizer.param_groups[0]["lr"])
        state.end_epoch(val_loss=1.0)
    # x0.1 from 1-based epoch 2 and again from epoch 4 (m - 1 <= epochs done)
    np.testing.assert_allclose(lrs, [1e-2, 1e-3, 1e-3, 1e-4, 1e-4])


def stage_specs(cfg: TrainConfig) -> list[MemberSpec]:
    data = head_data("mser4")
    return [
        MemberSpec(
            fold=f"f{k}", seed=seed, data=data, rows=rows, fusion="mser4", head_options=no_dropout("mser4"), cfg=cfg
        )
        for k, rows in enumerate(unequal_folds(len(data)))
        for seed in (0, 1)
    ]


TWO_STAGES = {
    "optimizer": "sgd",
    "schedule": "step",
    "step_size": 1,
    "gamma": 0.5,
    "transfer_epochs": 2,
    "patience": 0,
    "batch_size": 16,
    "device": "cpu",
}
"""Two stages of 2 + N epochs, SGD with a StepLR halving the lr every epoch of the second stage."""


def test_two_stages_restart_the_optimiser_and_the_checkpoint_rule() -> None:
    """Stage 1 at a constant lr (no schedule), the kept checkpoint reloaded, then a fresh optimiser whose StepLR
    starts from the full lr; the rule restarts, so the kept epoch lies in stage 2."""
    cfg = TrainConfig(**TWO_STAGES, momentum=0.9, lr=1e-2, epochs=3, engine="sequential")
    (selection, *_) = select_members(stage_specs(cfg))
    assert [h["lr"] for h in selection.history] == pytest.approx([1e-2, 1e-2, 1e-2, 5e-3, 2.5e-3])
    assert selection.epochs_run == 5 and selection.best_epoch >= 3


def test_stages_loss_optimiser_and_checkpoint_rules_are_the_same_in_both_engines() -> None:
    """The 4M-SER paper recipe's machinery (two stages, SGD, the centers' own Adam with milestones, paper-form
    center loss) and SER-Fuse's checkpoint rule: the stacked members equal the sequential loop's."""
    for checkpoint in ("train_val_loss", "best"):
        cfg = TrainConfig(
            **TWO_STAGES,
            momentum=0.99,
            weight_decay=1e-6,
            lr=1e-3,
            epochs=2,
            select="wa",
            checkpoint=checkpoint,
            loss="ce+center",
            loss_options={"paper_form": True},
            loss_optimizer=True,
            loss_milestones=[2, 3],
        )
        specs = stage_specs(replace(cfg, engine="stacked"))
        assert_same_members(specs, *both_engines(specs))


def test_a_step_schedule_stepped_at_the_start_drops_one_epoch_earlier() -> None:
    """SERVER's notebook steps StepLR before each epoch: with step_size 2 the lr drops at 1-based epoch 2,
    not 3."""
    base = {"optimizer": "adam", "lr": 1e-2, "schedule": "step", "step_size": 2, "gamma": 0.1, "epochs": 4}
    lrs = {}
    for at_start in (False, True):
        cfg = TrainConfig(**base, schedule_at_start=at_start, patience=0, batch_size=16, device="cpu")
        (selection, *_) = select_members(stage_specs(replace(cfg, engine="sequential"))[:1])
        lrs[at_start] = [h["lr"] for h in selection.history]
    assert lrs[False] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])
    assert lrs[True] == pytest.approx([1e-2, 1e-3, 1e-3, 1e-4])
    with pytest.raises(UserError, match="schedule=step only"):
        TrainConfig(schedule="plateau", schedule_at_start=True).check()


def test_a_final_model_cannot_replay_two_stages() -> None:
    from ser.fusion.config import FitConfig

    cfg = FitConfig(fusion="mser4", manifest="m", protocol="p", final=True, train=TrainConfig(transfer_epochs=2))
    with pytest.raises(UserError, match="--final replays one stage"):
        cfg.check()
