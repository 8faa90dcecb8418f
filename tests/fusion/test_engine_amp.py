"""The engines under mixed precision: the CUDA autocast + GradScaler path run on CPU (float16 autocast, a real
``GradScaler("cpu")``), for every loss: the stacked engine and the sequential loop take and skip the same steps and
give the same losses."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from ser.fusion import train
from ser.fusion.config import TrainConfig
from ser.fusion.engine import MemberSpec, select_members
from ser.fusion.losses import LOSSES, build_loss
from ser.fusion.train import Selection
from tests.fusion.engine_fixtures import head_data, no_dropout, unequal_folds

StepLog = dict[int, list[bool]]
"""Per member (its GradScaler's id, in creation order): each step, True when the scaler skipped it."""


@pytest.fixture
def cpu_amp(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[StepLog]]:
    """``train.amp`` on CPU with float16 autocast, and a log of the steps each GradScaler skipped
    (a skipped step backs the scale off)."""
    monkeypatch.setitem(train.AMP_DTYPES, "cpu", torch.float16)
    logs: list[StepLog] = []
    step = train._Setup.step

    def logged(self: train._Setup) -> None:
        before = self.scaler.get_scale()
        step(self)
        logs[-1][id(self.scaler)].append(self.scaler.get_scale() < before)

    monkeypatch.setattr(train._Setup, "step", logged)
    yield logs


def fit(specs: list[MemberSpec], engine: str, logs: list[StepLog]) -> tuple[list[Selection], list[list[bool]]]:
    logs.append(defaultdict(list))
    selections = select_members([replace(s, cfg=replace(s.cfg, engine=engine)) for s in specs])
    return selections, list(logs[-1].values())


BORDERLINE: dict[str, dict[str, object]] = {"ce+center": {"lambda_c": 0.1}}
"""Loss options that keep a loss off the float16 overflow border: the center loss's gradient ``λ (f − c) / B`` times
the scale is cast back to float16 on its way into the head, and at λ = 1 it sits at 65504 in some steps, which the
engines' float16 rounding (not their loss) puts on either side (13 against 11 skipped steps of 44, before and after
the float32 loss alike)."""


def amp_members(loss: str, epochs: int = 2) -> list[MemberSpec]:
    data = head_data("fleser")
    cfg = TrainConfig.for_head(
        "fleser",
        epochs=epochs,
        batch_size=16,
        device="cpu",
        patience=0,
        amp=True,
        loss=loss,
        loss_options=BORDERLINE.get(loss, {}),
        lr=1e-3,
    )
    return [
        MemberSpec(
            fold=f"fold{k}",
            seed=seed,
            data=data,
            rows=rows,
            fusion="fleser",
            head_options=no_dropout("fleser"),
            cfg=cfg,
        )
        for k, rows in enumerate(unequal_folds(len(data)))
        for seed in (0, 1)
    ]


def test_the_cpu_amp_path_really_uses_float16_autocast_and_a_cpu_grad_scaler(cpu_amp: list[StepLog]) -> None:
    spec = amp_members("ce")[0]
    member = train.setup(spec.data, spec.rows["train"], spec.fusion, spec.head_options, spec.cfg, torch.device("cpu"))
    assert member.use_amp and member.amp_dtype == torch.float16
    assert member.scaler.is_enabled() and member.scaler._device == "cpu"


@pytest.mark.parametrize("loss", list(LOSSES))
def test_stacked_and_sequential_engines_take_the_same_steps_under_amp(loss: str, cpu_amp: list[StepLog]) -> None:
    """Every loss, 3 folds x 2 seeds, 2 epochs under float16 autocast: each member skips exactly the steps the
    sequential loop skips (the GradScaler's first steps), and the epoch losses agree to float16 rounding (before the
    float32 loss: margin losses skipped 22 of 44 steps stacked against 10 sequential, losses 18 apart)."""
    specs = amp_members(loss)
    sequential, sequential_steps = fit(specs, "sequential", cpu_amp)
    stacked, stacked_steps = fit(specs, "stacked", cpu_amp)
    assert {s.engine for s in stacked} == {"stacked (6 members)"}
    assert stacked_steps == sequential_steps
    assert sum(map(len, stacked_steps)) == sum(-(-len(s.rows["train"]) // 16) for s in specs) * 2
    for a, b in zip(sequential, stacked, strict=True):
        np.testing.assert_allclose(
            [h["train_loss"] for h in b.history], [h["train_loss"] for h in a.history], rtol=1e-2, atol=1e-2
        )
        np.testing.assert_allclose(
            [h["val_loss"] for h in b.history], [h["val_loss"] for h in a.history], rtol=1e-2, atol=1e-2
        )


@pytest.mark.parametrize("loss", ["arcface", "cosface", "ce+arcface"])
def test_a_margin_loss_is_float32_with_a_finite_gradient_inside_a_float16_autocast_region(loss: str) -> None:
    """Features almost on a class weight: cos θ = 1 − 1e-9, which float16 rounds to 1.0 (an infinite ``acos``
    gradient); the loss computes in float32 whatever the caller's autocast region."""
    torch.manual_seed(0)
    loss_fn = build_loss(loss, 4, 8)
    margin = loss_fn.inner if hasattr(loss_fn, "inner") else loss_fn.auxiliary
    features = (margin.weight[:2].detach() * 3).requires_grad_()
    labels = torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.float16):
        value = loss_fn(torch.zeros(2, 4, requires_grad=True), features, labels)
    assert value.dtype == torch.float32
    value.backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
