"""The stacked engine against the sequential loop: same members, same numbers (dropout 0), each
member with its own schedule, early stopping, checkpoint and fold size."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ser.fusion.config import TrainConfig
from ser.fusion.data import FusionData, make_batch
from ser.fusion.engine import (
    _DROPOUT,
    SEQUENTIAL_ONLY,
    MemberSpec,
    StackedTrainer,
    batchable_kernels,
    own_copy,
    select_members,
    unstackable_reason,
)
from ser.fusion.heads import torch_heads
from ser.fusion.run import FitConfig, run_fit
from ser.fusion.train import Selection
from tests.fusion.engine_fixtures import head_data, no_dropout, unequal_folds

STACKABLE = [name for name in torch_heads() if name not in SEQUENTIAL_ONLY]


def members(
    name: str,
    data: FusionData,
    cfg: TrainConfig,
    seeds: tuple[int, ...] = (0, 1),
    options: dict[str, Any] | None = None,
) -> list[MemberSpec]:
    head = no_dropout(name) if options is None else options
    return [
        MemberSpec(fold=f"fold{k}", seed=seed, data=data, rows=rows, fusion=name, head_options=head, cfg=cfg)
        for k, rows in enumerate(unequal_folds(len(data)))
        for seed in seeds
    ]


def both_engines(specs: list[MemberSpec]) -> tuple[list[Selection], list[Selection]]:
    sequential = select_members([replace(s, cfg=replace(s.cfg, engine="sequential")) for s in specs])
    stacked = select_members([replace(s, cfg=replace(s.cfg, engine="stacked")) for s in specs])
    return sequential, stacked


def member_logits(selection: Selection, spec: MemberSpec) -> np.ndarray:
    """(n_test, C) logits of the member's chosen checkpoint on its test rows."""
    predictor = selection.predictor
    predictor.model.eval()
    with torch.inference_mode():
        return predictor.model(make_batch(spec.data, spec.rows["test"], predictor.standardizer)).numpy()


def assert_same_members(specs: list[MemberSpec], sequential: list[Selection], stacked: list[Selection]) -> None:
    for spec, a, b in zip(specs, sequential, stacked, strict=True):
        assert (a.fold, a.seed) == (b.fold, b.seed) == (spec.fold, spec.seed)
        assert b.best_epoch == a.best_epoch and b.epochs_run == a.epochs_run
        assert [h["lr"] for h in b.history] == [h["lr"] for h in a.history]
        np.testing.assert_allclose(
            [h["val_loss"] for h in b.history], [h["val_loss"] for h in a.history], rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            [h["train_loss"] for h in b.history], [h["train_loss"] for h in a.history], rtol=1e-5, atol=1e-6
        )
        assert b.validation["confusion"] == a.validation["confusion"]
        np.testing.assert_allclose(member_logits(b, spec), member_logits(a, spec), atol=1e-5, rtol=0)


def test_the_folds_are_unequal_and_not_whole_batches() -> None:
    folds = unequal_folds(90)
    sizes = [len(f["train"]) for f in folds]
    assert len(set(sizes)) == 3 and all(size % 16 for size in sizes)
    assert len({len(f["validation"]) for f in folds}) == 3


@pytest.mark.parametrize("name", STACKABLE)
def test_stacked_members_equal_sequential_members_without_dropout(name: str) -> None:
    """Each head's paper preset (its lr, optimiser, schedule) for 3 epochs of batch 16, 3 folds of
    unequal sizes x 2 seeds: the same epochs, lrs, losses, validation confusions and test logits."""
    cfg = TrainConfig.for_head(name, epochs=3, batch_size=16, device="cpu", patience=0, engine="stacked")
    specs = members(name, head_data(name), cfg)
    assert unstackable_reason(specs[0]) is None
    assert_same_members(specs, *both_engines(specs))


def test_batchnorm_statistics_are_per_member() -> None:
    """fleser with BatchNorm instead of LayerNorm: running statistics per member. (SGD: the Linear bias
    in front of a BatchNorm has a gradient of rounding noise only, which Adam would blow up to
    lr-sized steps in either engine; the outputs do not depend on it, the running means do.)"""
    options = {**no_dropout("fleser"), "use_layernorm": False}
    cfg = TrainConfig.for_head("fleser", epochs=3, batch_size=16, device="cpu", optimizer="sgd", lr=1e-2)
    specs = members("fleser", head_data("fleser"), cfg, options=options)
    sequential, stacked = both_engines(specs)
    assert_same_members(specs, sequential, stacked)
    for a, b in zip(sequential, stacked, strict=True):
        for name, value in a.predictor.model.named_buffers():
            torch.testing.assert_close(dict(b.predictor.model.named_buffers())[name], value, atol=1e-5, rtol=1e-4)
    means = [dict(s.predictor.model.named_buffers())["head.classifier.1.running_mean"] for s in stacked]
    assert not torch.equal(means[0], means[1])


def test_feature_losses_and_class_weights_are_per_member() -> None:
    """A center loss whose centres train with each member, class weights from each fold's rows."""
    cfg = TrainConfig.for_head(
        "fleser", epochs=3, batch_size=16, device="cpu", loss="ce+center", class_weighted=True, lr=1e-3
    )
    specs = members("fleser", head_data("fleser"), cfg)
    sequential, stacked = both_engines(specs)
    assert_same_members(specs, sequential, stacked)
    centres = [s.predictor.loss_fn.state_dict() for s in stacked]
    assert not all(torch.equal(centres[0][k], centres[1][k]) for k in centres[0])


def test_each_member_keeps_its_own_plateau_schedule_and_early_stopping() -> None:
    """A plateau schedule with patience 0 and early stopping after 2 epochs without a better UA: the
    members cut their lr and stop at different epochs, exactly as in the sequential loop."""
    cfg = TrainConfig(
        epochs=14, batch_size=16, lr=3e-3, schedule="plateau", plateau_patience=0, gamma=0.5, patience=2, device="cpu"
    )
    specs = members("mlp", head_data("mlp"), cfg, seeds=(0, 1, 2))
    sequential, stacked = both_engines(specs)
    assert_same_members(specs, sequential, stacked)
    assert len({s.epochs_run for s in stacked}) > 1  # members really stopped at different epochs
    assert min(s.epochs_run for s in stacked) < 14
    assert len({tuple(h["lr"] for h in s.history[:4]) for s in stacked}) > 1


def test_search_candidates_with_different_learning_rates_stack_together(caplog: pytest.LogCaptureFixture) -> None:
    data = head_data("fleser")
    base = TrainConfig.for_head("fleser", epochs=2, batch_size=16, device="cpu")
    specs = [*members("fleser", data, base), *members("fleser", data, replace(base, lr=1e-3, weight_decay=0.1))]
    with caplog.at_level(logging.INFO, logger="ser.fusion.engine"):
        sequential, stacked = both_engines(specs)
    assert_same_members(specs, sequential, stacked)
    assert "stacked engine: 12 members of fleser" in caplog.text


def test_members_of_different_shapes_form_separate_stacks(caplog: pytest.LogCaptureFixture) -> None:
    data = head_data("mlp")
    cfg = TrainConfig(epochs=1, batch_size=16, device="cpu")
    specs = [*members("mlp", data, cfg), *members("mlp", data, cfg, options={**no_dropout("mlp"), "hidden": (8,)})]
    with caplog.at_level(logging.INFO, logger="ser.fusion.engine"):
        selections = select_members(specs)
    assert [(s.fold, s.seed) for s in selections] == [(s.fold, s.seed) for s in specs]
    assert caplog.text.count("stacked engine: 6 members of mlp") == 2


@pytest.mark.parametrize(
    ("name", "options", "reason"),
    [
        ("cnn_bilstm", {}, "LSTM"),
        ("resnet18", {}, "BatchNorm"),
        ("fleser", {"fuzzy": "batch"}, "depend on its batch"),
    ],
)
def test_heads_that_cannot_stack_train_sequentially_with_the_reason(
    name: str, options: dict[str, Any], reason: str
) -> None:
    spec = members(
        name,
        head_data(name, rows=40),
        TrainConfig(epochs=1, device="cpu"),
        seeds=(0,),
        options={**no_dropout(name), **options},
    )[0]
    assert reason in (unstackable_reason(spec) or "")


def test_auto_stacks_pooled_heads_and_leaves_sequence_heads_to_the_sequential_loop_on_cpu(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auto = TrainConfig(epochs=1, batch_size=16, device="cpu", engine="auto")
    pooled = members("mlp", head_data("mlp"), auto)[0]
    sequences = members("memocmt", head_data("memocmt"), auto)
    assert unstackable_reason(pooled) is None
    assert "train.engine=auto on cpu" in (unstackable_reason(sequences[0]) or "")
    assert unstackable_reason(replace(sequences[0], cfg=replace(auto, engine="stacked"))) is None
    with caplog.at_level(logging.INFO, logger="ser.fusion.engine"):
        selections = select_members(sequences)
    assert caplog.text.count("memocmt trains one member at a time") == 1  # once, not once per member
    assert {s.engine for s in selections} == {"sequential"}


def test_with_dropout_each_member_draws_its_own_masks_and_the_stack_is_reproducible() -> None:
    data = head_data("fleser")
    cfg = TrainConfig.for_head("fleser", epochs=2, batch_size=16, device="cpu", lr=1e-3)
    specs = members("fleser", data, cfg, options={})  # the paper's dropout 0.3
    first, second = select_members(specs), select_members(specs)
    for spec, a, b in zip(specs, first, second, strict=True):
        np.testing.assert_array_equal(member_logits(a, spec), member_logits(b, spec))
    sequential = select_members([replace(s, cfg=replace(cfg, engine="sequential")) for s in specs])
    assert not np.allclose(member_logits(first[0], specs[0]), member_logits(sequential[0], specs[0]), atol=1e-5)


def test_a_stopped_member_leaves_the_stack_and_keeps_its_best_checkpoint() -> None:
    """Members with 1, 3 and 5 epochs: after each stop the stack is re-packed, and every member's
    tested weights are those of its best validation epoch (equal to the sequential loop's)."""
    data = head_data("mlp")
    specs = [
        MemberSpec(
            fold="fold0",
            seed=0,
            data=data,
            rows=unequal_folds(len(data))[k],
            fusion="mlp",
            head_options=no_dropout("mlp"),
            cfg=TrainConfig(epochs=epochs, batch_size=16, device="cpu", patience=0),
        )
        for k, epochs in enumerate((1, 3, 5))
    ]
    trainer = StackedTrainer(specs)
    stacked = trainer.run()
    assert [s.epochs_run for s in stacked] == [1, 3, 5]
    assert trainer.live == [] and trainer.stacked == {}
    sequential = select_members([replace(s, cfg=replace(s.cfg, engine="sequential")) for s in specs])
    assert_same_members(specs, sequential, stacked)


def test_fit_gives_the_same_metrics_with_either_engine(tmp_path: Path) -> None:
    from tests.fakes.caches import make_corpus

    manifest, audio, _ = make_corpus(tmp_path)
    metrics = {}
    for engine in ("sequential", "stacked"):
        train = TrainConfig(epochs=4, batch_size=16, device="cpu", engine=engine)
        run = run_fit(
            FitConfig(
                manifest=str(manifest),
                audio=f"{audio}:layer=1",
                fusion="mlp",
                protocol="speaker-loso",
                label_set="ravdess8",
                val_by="utterance",
                seeds=[0, 1],
                head={"dropout": 0.0},
                train=train,
                out=str(tmp_path / "runs"),
            )
        )
        metrics[engine] = json.loads((run / "metrics.json").read_text())
    a, b = metrics["sequential"], metrics["stacked"]
    assert len(a["runs"]) == len(b["runs"]) >= 6
    for run_a, run_b in zip(a["runs"], b["runs"], strict=True):
        assert [run_a[k] for k in ("fold", "seed", "best_epoch")] == [run_b[k] for k in ("fold", "seed", "best_epoch")]
        assert run_a["test"]["confusion"] == run_b["test"]["confusion"]
    assert a["test"]["ua"] == b["test"]["ua"]
    assert {r["engine"] for r in a["runs"]} == {"sequential"}
    assert {r["engine"] for r in b["runs"]} == {f"stacked ({len(b['runs'])} members)"}


# --- the stack's dropout -------------------------------------------------------------------------


def test_stacked_dropout_keeps_each_element_with_probability_one_minus_p_and_rescales() -> None:
    """``F.dropout`` inside the stack draws its masks from ``torch.rand_like``: the same
    distribution as torch's kernel (kept with probability 1 - p, scaled by 1 / (1 - p))."""
    torch.manual_seed(0)
    x = torch.ones(200_000)
    with batchable_kernels():
        out = torch.nn.functional.dropout(x, 0.3, training=True)
        same = torch.nn.functional.dropout(x, 0.3, training=False)
        untouched = torch.nn.functional.dropout(x, 0.0, training=True)
        dropped = torch.nn.functional.dropout(x, 1.0, training=True)
        with pytest.raises(ValueError, match="between 0 and 1"):
            torch.nn.functional.dropout(x, 1.5, training=True)
    assert torch.unique(out).tolist() == pytest.approx([0.0, 1 / 0.7])
    assert abs((out > 0).float().mean().item() - 0.7) < 0.005  # 200k draws: std 0.001
    assert same is x and untouched is x
    assert torch.count_nonzero(dropped) == 0
    assert torch.nn.functional.dropout is _DROPOUT  # restored on exit


def test_stacked_dropout_draws_a_different_mask_per_member_and_routes_gradients_through_it() -> None:
    torch.manual_seed(0)
    x = torch.ones(4, 64, 32, requires_grad=True)
    with batchable_kernels():
        out = torch.func.vmap(lambda row: nn.Dropout(0.5)(row), randomness="different")(x)
    out.sum().backward()
    masks = (out > 0).flatten(1)
    assert all(not torch.equal(masks[0], masks[k]) for k in range(1, 4))
    torch.testing.assert_close(x.grad, out.detach())  # d(out)/dx = mask / (1 - p) = out for x = 1


def test_a_checkpoint_copies_only_its_members_slice_of_the_stack() -> None:
    stack = torch.arange(84 * 6, dtype=torch.float32).reshape(84, 2, 3)  # 84 members' weights, one storage
    state = {"weight": stack[5], "bias": stack[7, 0]}
    kept = own_copy(state)
    for name, view in state.items():
        assert view.untyped_storage().nbytes() == stack.numel() * 4  # a view keeps the whole stack alive
        assert kept[name].untyped_storage().nbytes() == view.numel() * 4
        assert torch.equal(kept[name], view)
    stack.zero_()
    assert kept["weight"].sum() == sum(range(30, 36))  # a copy, not a view


@pytest.mark.parametrize("size", [4, 16, 64])
def test_a_stacks_best_checkpoints_cost_m_times_one_member_not_m_squared(size: int) -> None:
    """Every member's checkpoint of a packed stack of ``size`` members: ``own_copy`` holds M x one member's
    bytes; ``copy.deepcopy`` of the same views held the whole stack per member (M² x)."""
    import copy

    data = head_data("mlp", rows=40)
    cfg = TrainConfig(epochs=1, batch_size=16, device="cpu")
    rows = unequal_folds(len(data), sizes=(20,), validation=8)[0]
    specs = [
        MemberSpec(fold="fold0", seed=s, data=data, rows=rows, fusion="mlp", head_options=no_dropout("mlp"), cfg=cfg)
        for s in range(size)
    ]
    trainer = StackedTrainer(specs)
    states = [m.step_module.state_dict() for m in trainer.members]
    one = sum(t.numel() * t.element_size() for t in states[0].values())

    def held(copies: list[dict[str, torch.Tensor]]) -> int:
        return sum(t.untyped_storage().nbytes() for state in copies for t in state.values())

    kept = held([own_copy(state) for state in states])
    whole = held([copy.deepcopy(state) for state in states])
    print(f"M={size}: one member {one} B, own_copy {kept} B, deepcopy {whole} B")
    assert kept == size * one
    assert whole == size * size * one  # what the checkpoints cost before own_copy


def test_auto_leaves_sequence_heads_to_the_sequential_loop_on_cuda_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA a stacked sequence head gets the plain attention kernel (T x T scores per member) and its members
    padded in Python each step: ``auto`` keeps it sequential there as well, ``stacked`` still forces it."""
    monkeypatch.setattr("ser.fusion.engine.resolve_device", lambda choice: torch.device("cuda"))
    auto = TrainConfig(epochs=1, batch_size=16, device="cuda", engine="auto")
    sequences = members("memocmt", head_data("memocmt", rows=40), auto)[0]
    reason = unstackable_reason(sequences) or ""
    assert "train.engine=auto on cuda" in reason and "T x T" in reason and "1.4x slower" in reason
    assert unstackable_reason(replace(sequences, cfg=replace(auto, engine="stacked"))) is None
    assert unstackable_reason(members("mlp", head_data("mlp", rows=40), auto)[0]) is None


def test_a_stacked_epoch_reads_nothing_back_and_builds_no_index_tensor_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The index tensors of an epoch are made once (per epoch, and per group of the last batches), not three per
    step from Python lists; the losses are read back once, after the epoch."""
    data = head_data("mlp")
    specs = members("mlp", data, TrainConfig(epochs=1, batch_size=8, device="cpu", normalize=True))
    trainer = StackedTrainer(specs)
    calls = {"as_tensor": 0, "tensor": 0, "item": 0}
    for name in ("as_tensor", "tensor"):
        original = getattr(torch, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> torch.Tensor:
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch, name, counted)
    item = torch.Tensor.item

    def counted_item(self: torch.Tensor) -> Any:
        calls["item"] += 1
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", counted_item)
    losses = trainer._train_epoch()
    steps = max(-(-len(s.rows["train"]) // 8) for s in specs)
    assert steps == 8 and len(losses) == len(specs) and np.isfinite(losses).all()
    groups = 5  # the last steps (5 whole batches for all): rows 40-47 of 50/61/44 as 8/8/4, 48-55 as 2/8, 56- as 5
    assert calls == {"as_tensor": 0, "tensor": 2 * (1 + groups), "item": 0}
