"""The stacked engine: many members (fold x seed x search candidate x grid cell) trained as one model.

A *member* is one training run of the sequential loop
([`ser.fusion.train.select_member`][ser.fusion.train.select_member]): its fold's rows in its seed's order, its own
initialisation, input scaling, optimiser, schedule, early stopping and best checkpoint. Members whose models have the
same shapes (same head, head options, input widths, loss and batch size: [`stack_key`][ser.fusion.engine.stack_key])
train together:

* every member keeps its own plain ``nn.Module`` (built by the same `ser.fusion.train.setup`
  as the sequential loop, from its seed), its own torch optimiser and scheduler; only the storage of
  the parameters moves: each parameter of the live members is one tensor with a leading member axis
  ``(M, ...)``, and each member's parameter is a view of its slice (so the optimisers update the
  stack in place, and a member's ``state_dict`` is its own weights);
* a training step gathers every member's batch by index from inputs resident on the device
  (``(M, B, D)``), runs one ``torch.func.vmap`` of ``functional_call`` over the member axis
  (dropout draws different masks per member) and one backward; then each member whose batch it
  was steps its own optimiser (a fused kernel on its slices). Nothing in the step reads a number
  back to the host;
* folds of different sizes: a member whose epoch has fewer batches sits out the extra steps, and the
  last, smaller batches train in groups of equal size (gathered parameters, scattered gradients):
  no row is resampled or padded into a training batch;
* validation of all members is one batched eval pass per chunk (members' rows padded, padding
  ignored), then per member on the host, once per epoch: metrics, loss, schedule, early stopping
  and the best checkpoint. A member that stops leaves the stack (the stack is re-packed without it).

With dropout 0 and deterministic mode the members' numbers equal the sequential loop's (logits
within float rounding: the tests hold them to 1e-5). With dropout, masks come from one generator
for the whole stack (seeded from the first member's seed), so a member's numbers depend on the stack
it trained in; the same command gives the same stack and the same numbers.

Heads or settings that cannot stack fall back to the sequential loop, with the reason logged
([`unstackable_reason`][ser.fusion.engine.unstackable_reason]). Each member records how it trained (``engine`` in
``metrics.json``) and, as its seconds, its share of the stack's wall time.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ser.fusion import progress
from ser.fusion.checkpoints import CheckpointRule
from ser.fusion.classic_pool import fit_classic_members
from ser.fusion.data import FusionData, make_batch, to_device
from ser.fusion.heads import HEADS
from ser.fusion.losses import TrainingLoss
from ser.fusion.metrics import compute_metrics
from ser.fusion.train import (
    FusionModel,
    MemberSpec,
    Predictor,
    Selection,
    TorchPredictor,
    accumulator_dtype,
    check_finite,
    check_validation,
    checkpoint_rule,
    epoch_record,
    eval_batch_size,
    member_line,
    progress_units,
    refit_torch,
    resolve_device,
    select_member,
    setup,
    total_epochs,
)
from ser.seeding import seed_everything

logger = logging.getLogger(__name__)

SEQUENTIAL_ONLY: dict[str, str] = {
    "cnn_bilstm": "torch.func.vmap has no batching rule for nn.LSTM (aten::lstm)",
    "resnet18": "measured: stacked members drift from the sequential loop (validation loss 9e-4 apart after two "
    "epochs, where every stackable head stays within 1e-5), although its masked BatchNorm ignores padding",
}
"""Heads that always train in the sequential loop, with the reason."""


def own_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A member's ``state_dict`` copied element by element. Its parameters are views of the stack's
    ``(M, ...)`` tensors, and ``copy.deepcopy`` of a view copies the whole underlying storage: every
    member's weights, for every member's checkpoint (measured: 5.2 of 26 s of a 84-member sweep)."""
    return {name: tensor.detach().clone() for name, tensor in state.items()}


def unstackable_reason(spec: MemberSpec) -> str | None:
    """Why ``spec`` trains in the sequential loop, or None when it can stack."""
    if HEADS[spec.fusion].engine != "torch":
        return "classic heads are fitted by scikit-learn"
    if spec.cfg.engine == "sequential":
        return "train.engine=sequential"
    if spec.fusion in SEQUENTIAL_ONLY:
        return SEQUENTIAL_ONLY[spec.fusion]
    if spec.fusion == "fleser" and spec.head_options.get("fuzzy") == "batch":
        return "head.fuzzy=batch makes a prediction depend on its batch (and reads a number back every step)"
    sequences = any(d.pooled is None for d in spec.data.modalities.values())
    if spec.cfg.engine == "auto" and sequences:
        return (
            f"train.engine=auto on {resolve_device(spec.cfg.device).type}: a head on sequences already multiplies "
            "B x T rows per product, and stacking pads every member to the longest sequence (in Python, each step) "
            "and gives up the fused attention kernel for the plain one, whose T x T scores take memory per member "
            "(memocmt measured 1.4x slower stacked on CPU); train.engine=stacked forces it"
        )
    return None


def stack_key(spec: MemberSpec) -> tuple[Any, ...]:
    """Members with equal keys have models of the same shapes and batches of the same size."""
    cfg, data = spec.cfg, spec.data
    shapes = tuple((m, d.pooled is None, d.dim, d.n_layers) for m, d in sorted(data.modalities.items()))
    return (
        spec.fusion,
        repr(sorted(spec.head_options.items())),
        shapes,
        len(data.classes),
        cfg.batch_size,
        cfg.loss,
        repr(sorted(cfg.loss_options.items())),
        cfg.class_weighted,
        cfg.specaugment,
        repr(sorted(cfg.specaugment_options.items())),
        resolve_device(cfg.device).type,
        cfg.amp,
        cfg.deterministic,
        cfg.threads,
    )


def select_members(specs: Sequence[MemberSpec]) -> list[Selection]:
    """Train and select every member (validation only; test rows are never read), stacking those
    that can stack; results in the order of ``specs``.

    Classic heads are deterministic (their estimators draw no random numbers), so the members that
    differ only by seed are fitted once and the selection is recorded for each seed
    ([`share_deterministic`][ser.fusion.engine.share_deterministic])."""
    fitted, copies = share_deterministic(specs)
    shared = " (classic heads: one fit serves every seed)" if copies else ""
    progress.current().start(
        sum(progress_units(specs[i]) for i in fitted),
        f"training {len(fitted)} member{'s' * (len(fitted) != 1)}{shared}",
    )
    out: list[Selection | None] = [None] * len(specs)
    groups: dict[tuple[Any, ...], list[int]] = {}
    told: set[str] = set()
    classic = [i for i in fitted if HEADS[specs[i].fusion].engine == "sklearn"]
    for i, selection in zip(classic, fit_classic_members([specs[i] for i in classic]), strict=True):
        out[i] = selection
    for i in fitted:
        spec = specs[i]
        if out[i] is not None:
            continue
        reason = unstackable_reason(spec)
        if reason is not None:
            if HEADS[spec.fusion].engine == "torch" and spec.cfg.engine != "sequential" and reason not in told:
                told.add(reason)
                logger.info("%s trains one member at a time: %s", spec.fusion, reason)
            out[i] = select_member(
                spec.data,
                spec.fold,
                spec.rows,
                fusion=spec.fusion,
                head_options=spec.head_options,
                cfg=spec.cfg,
                seed=spec.seed,
            )
            continue
        groups.setdefault(stack_key(spec), []).append(i)
    for indices in groups.values():
        for i, selection in zip(indices, StackedTrainer([specs[i] for i in indices]).run(), strict=True):
            out[i] = selection
    for i, source in copies.items():
        out[i] = _seed_copy(out[source], specs[i].seed)
    progress.current().close()
    return [s for s in out if s is not None]


def share_deterministic(specs: Sequence[MemberSpec]) -> tuple[list[int], dict[int, int]]:
    """The indices of ``specs`` to fit, and for each classic member that repeats an earlier one but for
    its seed, the index of that earlier member (same data, fold, head options and train settings)."""
    fitted: list[int] = []
    copies: dict[int, int] = {}
    first: dict[tuple[Any, ...], int] = {}
    for i, spec in enumerate(specs):
        if HEADS[spec.fusion].engine != "sklearn":
            fitted.append(i)
            continue
        key = (id(spec.data), spec.fold, spec.fusion, repr(sorted(spec.head_options.items())), repr(spec.cfg))
        if key in first:
            copies[i] = first[key]
        else:
            first[key] = i
            fitted.append(i)
    return fitted, copies


def _seed_copy(selection: Selection | None, seed: int) -> Selection:
    """``selection`` recorded for another seed: the same predictor, numbers and (shared, run once) refit."""
    assert selection is not None
    if selection.refit is not None and not isinstance(selection.refit, _RefitOnce):
        selection.refit = _RefitOnce(selection.refit)
    return dataclasses.replace(selection, seed=seed, seconds=0.0)


class _RefitOnce:
    """A refit that runs on the first call and returns the same model afterwards (seed copies share it)."""

    def __init__(self, refit: Callable[[], Predictor]) -> None:
        self.refit = refit
        self.result: Predictor | None = None

    def __call__(self) -> Predictor:
        if self.result is None:
            self.result = self.refit()
        return self.result


_LINEAR = nn.functional.linear


def _flat_linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` on ``(..., D)`` inputs as one ``(N, D)`` product (N = all leading positions).

    Under ``vmap`` with a weight per member, ``F.linear`` on a ``(B, T, D)`` input is batched as one
    small product per time position with the weight copied ``T`` times (and its gradient summed back):
    tens of times the memory traffic of the ``(M, B * T, D) @ (M, D, H)`` product this gives.

    And ``F.linear``'s weight gradient comes out of vmap transposed (``(M, D, H)`` memory for an
    ``(M, H, D)`` weight), which autograd copies into a fresh gradient every step. With fewer rows
    than input features (``N < D``: pooled heads, batch 64) the product is computed as ``(W @ Xᵀ)ᵀ``
    instead: the weight gradient ``Gᵀ @ X`` is then in the weight's layout and only the smaller
    ``(N, H)`` output is copied (a 5-member fleser step 13 % faster). With many rows (sequences) the
    output copy would cost more than the gradient's, so it stays ``F.linear``.
    """
    flat = input.reshape(-1, input.shape[-1])  # (N, D)
    if flat.shape[0] >= flat.shape[1]:
        out = _LINEAR(flat, weight, bias)
    elif bias is None:
        out = (weight @ flat.T).T.contiguous()
    else:
        out = torch.addmm(bias.unsqueeze(-1), weight, flat.T).T.contiguous()  # (H, N) -> (N, H)
    return out.reshape(*input.shape[:-1], weight.shape[0])


_DROPOUT = nn.functional.dropout


def _uniform_dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """``F.dropout`` with the keep mask drawn as ``uniform >= p`` (``torch.rand_like``): the same
    distribution (each element kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``), at a
    third of the cost of the ``bernoulli_`` kernel on CPU (measured on (5, 64, 256): 236 us against
    800 us), which was an eighth of a stacked fleser step. ``inplace`` is ignored (an out-of-place
    result is always correct; vmap needs it)."""
    if not training or p == 0.0:
        return input
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if p == 1.0:
        return input * 0.0
    keep = torch.rand_like(input) >= p
    return input * (keep * (1.0 / (1.0 - p))).to(input.dtype)


@contextmanager
def batchable_kernels() -> Iterator[None]:
    """Kernels ``vmap`` batches well: the math kernel of ``scaled_dot_product_attention``, no fused
    fast path of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` (those kernels have no
    batching rule, so vmap would run them once per member), `_flat_linear` for every
    ``F.linear`` call and `_uniform_dropout` for every ``F.dropout`` call (restored on exit)."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    # nn.Linear, nn.Dropout, MultiheadAttention and the heads look these up per call
    nn.functional.linear = _flat_linear
    nn.functional.dropout = _uniform_dropout
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        nn.functional.linear = _LINEAR
        nn.functional.dropout = _DROPOUT
        torch.backends.mha.set_fastpath_enabled(fast)


class _StepModule(nn.Module):
    """A member's model and loss as one module (what ``functional_call`` runs per member).

    ``forward(inputs, labels)`` returns the (scalar) training loss with ``evaluating`` False, and
    ``(logits (B, C), features (B, F) or the logits again, scores (B, C))`` with it True (scores:
    what the loss predicts from, e.g. margin losses use the features)."""

    def __init__(self, model: FusionModel, loss_fn: TrainingLoss) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.needs_features = bool(getattr(loss_fn, "needs_features", False))
        self.evaluating = False

    def forward(
        self, inputs: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.needs_features:
            logits, features = self.model.forward_features(inputs)
        else:
            logits, features = self.model(inputs), None
        if self.evaluating:
            scores = self.loss_fn.predict_logits(logits.float(), features)
            return logits, logits if features is None else features, scores
        loss: torch.Tensor = self.loss_fn(logits, features, labels)  # float32, autocast off (TrainingLoss.forward)
        return loss


@dataclass
class _Member:
    """One member's state inside the stack."""

    spec: MemberSpec
    setup: Any
    step_module: _StepModule
    generator: torch.Generator
    train_rows: np.ndarray
    rule: CheckpointRule
    """The kept epoch and its validation score, and the member's ``train.patience``."""
    live: bool = True
    epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_val: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    """This epoch's shuffled training rows."""


@dataclass(frozen=True)
class _Positions:
    """Members of one step: their indices into the engine's member list, and on the device their positions in the
    live list (``index``) and the same member indices (``member_index``)."""

    members: list[int]
    index: torch.Tensor
    member_index: torch.Tensor


class _Inputs:
    """Every member's pooled inputs resident on the device, rows addressed globally: one tensor per
    modality holding each distinct data object's rows once, plus per member the row offset of its
    data and its z-scoring statistics."""

    def __init__(self, members: list[_Member], device: torch.device) -> None:
        sources: list[FusionData] = []
        for member in members:
            if not any(member.spec.data is d for d in sources):
                sources.append(member.spec.data)
        offsets, total = [], 0
        for data in sources:
            offsets.append(total)
            total += len(data)
        self.offset = {id(d): o for d, o in zip(sources, offsets, strict=True)}
        first = sources[0]
        self.pooled = [m for m, d in first.modalities.items() if d.pooled is not None]
        self.sequences = [m for m, d in first.modalities.items() if d.pooled is None]
        self.values = {
            m: to_device(torch.from_numpy(np.concatenate([d.modalities[m].pooled for d in sources])), device)
            for m in self.pooled
        }
        self.labels = to_device(torch.from_numpy(np.concatenate([d.labels for d in sources])), device)
        self.device = device
        self.scaling: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for modality in self.pooled:
            stats = [member.setup.standardizer for member in members]
            if all(s is not None for s in stats):
                self.scaling[modality] = (
                    to_device(torch.stack([torch.from_numpy(s.mean[modality]) for s in stats]), device),
                    to_device(torch.stack([torch.from_numpy(s.std[modality]) for s in stats]), device),
                )
        self.normalized = [m.setup.standardizer is not None for m in members]

    def global_rows(self, member: _Member, rows: np.ndarray) -> np.ndarray:
        return rows + self.offset[id(member.spec.data)]

    def batch(
        self,
        members: list[_Member],
        positions: list[int],
        index: torch.Tensor,
        rows: torch.Tensor,
        local: list[np.ndarray],
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Inputs ``(G, B, ...)`` and labels ``(G, B)`` of members ``positions`` (indices into the
        engine's member list; ``index``: the same on the device) for global row indices ``rows`` (G, B);
        ``local`` holds the same rows as each member's own indices (for sequences, read from the member's data)."""
        inputs: dict[str, torch.Tensor] = {}
        for modality in self.pooled:
            values = self.values[modality][rows]  # (G, B, ...)
            if modality in self.scaling:
                mean, std = self.scaling[modality]
                shape = (len(positions), 1, *mean.shape[1:])
                values = (values - mean[index].view(shape)) / std[index].view(shape)
            inputs[modality] = values
        for modality in self.sequences:
            padded = [
                make_batch_sequences(members[p].spec.data, modality, r) for p, r in zip(positions, local, strict=True)
            ]
            length = max(x.shape[1] for x, _ in padded)
            inputs[modality] = to_device(
                torch.stack([nn.functional.pad(x, (0, 0, 0, length - x.shape[1])) for x, _ in padded]), self.device
            )
            inputs[f"{modality}_lengths"] = to_device(torch.stack([n for _, n in padded]), self.device)
        return inputs, self.labels[rows]


def make_batch_sequences(data: FusionData, modality: str, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) zero-padded frames and (B,) lengths of one sequence modality."""
    single = FusionData(
        ids=data.ids,
        labels=data.labels,
        speakers=data.speakers,
        classes=data.classes,
        modalities={modality: data.modalities[modality]},
    )
    batch = make_batch(single, rows, None)
    return batch[modality], batch[f"{modality}_lengths"]


class StackedTrainer:
    """Trains members of one [`stack_key`][ser.fusion.engine.stack_key] together (see the module docstring)."""

    def __init__(self, specs: list[MemberSpec]) -> None:
        self.started = time.perf_counter()
        first = specs[0].cfg
        self.device = resolve_device(first.device)
        if first.threads > 0 and self.device.type == "cpu":
            torch.set_num_threads(first.threads)
        self.batch_size = first.batch_size
        self.members: list[_Member] = []
        for spec in specs:
            check_validation(spec.fold, spec.rows)
            generator = seed_everything(spec.seed, spec.cfg.deterministic)  # same order of draws as sequential
            member_setup = setup(spec.data, spec.rows["train"], spec.fusion, spec.head_options, spec.cfg, self.device)
            self.members.append(
                _Member(
                    spec=spec,
                    setup=member_setup,
                    generator=generator,
                    step_module=_StepModule(member_setup.model, member_setup.loss_fn),
                    train_rows=spec.rows["train"],
                    rule=checkpoint_rule(spec.cfg),
                )
            )
        torch.manual_seed(specs[0].seed)  # dropout masks of the whole stack
        self.inputs = _Inputs(self.members, self.device)
        self.base = copy.deepcopy(self.members[0].step_module)
        self.stacked: dict[str, torch.Tensor] = {}
        self.stacked_buffers: dict[str, torch.Tensor] = {}
        self.live: list[int] = []
        self._pack()

    # ------------------------------------------------------------------ stacked storage

    def _pack(self) -> None:
        """Stack the live members' parameters and buffers; point each member's tensors at its slice."""
        self._unpack()
        self.live = [i for i, m in enumerate(self.members) if m.live]
        if not self.live:
            return
        modules = [self.members[i].step_module for i in self.live]
        named = [dict(m.named_parameters()) for m in modules]
        self.names = list(named[0])
        self.member_params = {i: [n[name] for name in self.names] for i, n in zip(self.live, named, strict=True)}
        for name in self.names:
            big = torch.stack([n[name].detach() for n in named]).requires_grad_()
            for j, n in enumerate(named):
                n[name].data = big.data[j]
            self.stacked[name] = big
        buffers = [dict(m.named_buffers()) for m in modules]
        for name in buffers[0]:
            big = torch.stack([b[name] for b in buffers])
            for j, b in enumerate(buffers):
                b[name].data = big[j]
            self.stacked_buffers[name] = big

    def _unpack(self) -> None:
        """Give every member its own storage again (before a re-pack or at the end)."""
        for i in self.live:
            module = self.members[i].step_module
            for p in module.parameters():
                p.data = p.data.clone()
                p.grad = None
            for b in module.buffers():
                b.data = b.data.clone()
        self.stacked, self.stacked_buffers = {}, {}

    # ------------------------------------------------------------------ training

    def _forward_losses(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        inputs: dict[str, torch.Tensor],
        labels: torch.Tensor,
        use_amp: bool,
        amp_dtype: torch.dtype,
    ) -> torch.Tensor:
        def one(
            p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: dict[str, torch.Tensor], y: torch.Tensor
        ) -> torch.Tensor:
            loss: torch.Tensor = functional_call(self.base, (p, b), (x, y))
            return loss

        with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp), batchable_kernels():
            return vmap(one, randomness="different")(params, buffers, inputs, labels)

    def _step(self, positions: _Positions, rows: torch.Tensor, local: list[np.ndarray], totals: torch.Tensor) -> None:
        """One optimisation step of members ``positions`` (indices into the live list), all with
        batches of the same size. Reads nothing back and copies nothing from the host but sequence frames."""
        members = positions.members
        inputs, labels = self.inputs.batch(self.members, members, positions.member_index, rows, local)
        use_amp = self.members[members[0]].setup.use_amp
        amp_dtype = self.members[members[0]].setup.amp_dtype
        whole = len(members) == len(self.live)
        if whole:
            params, buffers = self.stacked, self.stacked_buffers
        else:  # a group of the last, smaller batches: gathered copies, buffers written back after
            index = positions.index
            params = {k: v.detach()[index].requires_grad_() for k, v in self.stacked.items()}
            buffers = {k: v[index] for k, v in self.stacked_buffers.items()}
        losses = self._forward_losses(params, buffers, inputs, labels, use_amp, amp_dtype)
        if use_amp:
            total = torch.stack([self.members[i].setup.scaler.scale(losses[j]) for j, i in enumerate(members)]).sum()
        else:
            total = losses.sum()
        total.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        if not whole:
            for k, v in self.stacked_buffers.items():
                v[index] = buffers[k]
        grads = [params[name].grad for name in self.names]  # None: a parameter this head never uses
        for j, i in enumerate(members):
            for param, grad in zip(self.member_params[i], grads, strict=True):
                param.grad = None if grad is None else grad[j]
            self.members[i].setup.step()
        for i in members:
            for param in self.member_params[i]:
                param.grad = None
        for v in params.values():
            v.grad = None
        totals.index_add_(0, positions.index, losses.detach().to(totals.dtype) * rows.shape[1])

    def _positions(self, positions: list[int]) -> _Positions:
        """Live positions with their index tensors on the device (made once per epoch or per group)."""
        members = [self.live[p] for p in positions]
        return _Positions(
            members=members,
            index=to_device(torch.tensor(positions, dtype=torch.long), self.device),
            member_index=to_device(torch.tensor(members, dtype=torch.long), self.device),
        )

    def _train_epoch(self) -> np.ndarray:
        """One epoch of every live member; returns their mean training losses (one host read)."""
        batch = self.batch_size
        live = [self.members[i] for i in self.live]
        orders: list[np.ndarray] = []  # per live member: its training rows in this epoch's shuffled order
        for member in live:
            member.setup.model.train()
            member.setup.loss_fn.train()
            rows = member.train_rows
            orders.append(rows[torch.randperm(len(rows), generator=member.generator).numpy()])
        self.base.train()
        lengths = [len(order) for order in orders]
        full = min(n // batch for n in lengths)
        # Steps every member takes with a whole batch: one index tensor for the epoch.
        table = to_device(
            torch.from_numpy(
                np.stack(
                    [self.inputs.global_rows(m, order[: full * batch]) for m, order in zip(live, orders, strict=True)]
                )
            ),
            self.device,
        )
        totals = torch.zeros(len(live), dtype=accumulator_dtype(self.device), device=self.device)
        positions = self._positions(list(range(len(live))))
        for step in range(full):
            span = slice(step * batch, (step + 1) * batch)
            self._step(positions, table[:, span], [order[span] for order in orders], totals)
        # The rest: members with more batches, and the last smaller ones, grouped by batch size.
        for step in range(full, max(-(-n // batch) for n in lengths)):
            by_size: dict[int, list[int]] = {}
            for j, order in enumerate(orders):
                size = len(order[step * batch : (step + 1) * batch])
                if size:
                    by_size.setdefault(size, []).append(j)
            for group in by_size.values():
                local = [orders[j][step * batch : (step + 1) * batch] for j in group]
                group_rows = to_device(
                    torch.from_numpy(
                        np.stack([self.inputs.global_rows(live[j], r) for j, r in zip(group, local, strict=True)])
                    ),
                    self.device,
                )
                self._step(self._positions(group), group_rows, local, totals)
        return totals.cpu().numpy() / np.maximum(lengths, 1)

    # ------------------------------------------------------------------ validation

    def _validate(self) -> list[tuple[dict[str, Any], np.ndarray, float]]:
        """Per live member: validation metrics, (n, C) probabilities and mean loss. Batched over members
        in the sequential loop's chunks (``4 x batch_size`` rows, shorter members padded with their last
        row and the padding dropped), so each member's loss sums the same per-chunk terms."""
        live = [self.members[i] for i in self.live]
        chunk = eval_batch_size(self.members[self.live[0]].spec.cfg)
        rows = [m.spec.rows["validation"] for m in live]
        longest = max(len(r) for r in rows)
        outputs: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in live]
        for member in live:
            member.setup.model.eval()
            member.setup.loss_fn.eval()
        self.base.eval()
        self.base.evaluating = True
        every = self._positions(list(range(len(live))))
        try:
            with torch.inference_mode():
                for start in range(0, longest, chunk):
                    width = min(chunk, longest - start)
                    local = [_padded(r[start : start + chunk] if start < len(r) else r[-1:], width) for r in rows]
                    table = to_device(
                        torch.from_numpy(
                            np.stack([self.inputs.global_rows(m, r) for m, r in zip(live, local, strict=True)])
                        ),
                        self.device,
                    )
                    inputs, labels = self.inputs.batch(self.members, self.live, every.member_index, table, local)
                    logits, features, scores = self._forward_eval(inputs, labels)
                    for j, r in enumerate(rows):
                        valid = max(0, min(chunk, len(r) - start))
                        if valid:
                            outputs[j].append((logits[j, :valid], features[j, :valid], scores[j, :valid]))
                results = []
                for j, member in enumerate(live):
                    results.append(self._member_validation(member, rows[j], outputs[j]))
        finally:
            self.base.evaluating = False
        return results

    def _forward_eval(
        self, inputs: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        def one(
            p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: dict[str, torch.Tensor], y: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = functional_call(self.base, (p, b), (x, y))
            return outputs

        with batchable_kernels():
            return vmap(one, randomness="different")(self.stacked, self.stacked_buffers, inputs, labels)

    def _member_validation(
        self, member: _Member, rows: np.ndarray, parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    ) -> tuple[dict[str, Any], np.ndarray, float]:
        data, loss_fn = member.spec.data, member.setup.loss_fn
        labels = to_device(torch.from_numpy(data.labels[rows]), self.device)
        total, start = 0.0, 0
        for logits, features, _ in parts:
            chunk_labels = labels[start : start + len(logits)]
            start += len(logits)
            total += float(
                loss_fn(logits.float(), features if member.step_module.needs_features else None, chunk_labels)
            ) * len(chunk_labels)
        probs = torch.softmax(torch.cat([s for _, _, s in parts]).float(), dim=-1).cpu().numpy()
        metrics = compute_metrics(data.labels[rows], probs.argmax(axis=1), data.classes)
        return metrics, probs, total / max(len(rows), 1)

    # ------------------------------------------------------------------ the loop

    def run(self) -> list[Selection]:
        """Train every member to its end; each member's model holds its best checkpoint after."""
        epoch_seconds = self.started
        while self.live:
            live = [self.members[i] for i in self.live]
            lrs = [m.setup.optimizer.param_groups[0]["lr"] for m in live]
            train_losses = self._train_epoch()
            validations = self._validate()
            stopped = False
            for member, lr, train_loss, (metrics, probs, val_loss) in zip(
                live, lrs, train_losses, validations, strict=True
            ):
                stopped |= self._end_epoch(member, lr, float(train_loss), metrics, probs, val_loss)
            if stopped:
                self._pack()
        self.seconds = time.perf_counter() - epoch_seconds
        logger.info(
            "stacked engine: %d members of %s in %.1f s", len(self.members), self.members[0].spec.fusion, self.seconds
        )
        return [self._selection(m) for m in self.members]

    def _end_epoch(
        self, member: _Member, lr: float, train_loss: float, metrics: dict[str, Any], probs: np.ndarray, val_loss: float
    ) -> bool:
        """A member's epoch bookkeeping (as the sequential loop); True when the member stops."""
        spec, cfg = member.spec, member.spec.cfg
        member.epoch += 1
        check_finite(spec.fold, spec.seed, member.epoch, lr, train_loss, probs)
        member.history.append(epoch_record(member.epoch, lr, train_loss, val_loss, metrics, cfg))
        member.setup.end_epoch(val_loss)
        if member.rule.update(member.epoch, metrics, train_loss, val_loss):
            member.best_val = metrics
            member.best_state = own_copy(member.step_module.state_dict())
        if member.setup.stage_ends:
            assert member.best_state is not None
            member.step_module.load_state_dict(member.best_state)  # in place: the stack's slices
            member.setup.start_second_stage()
            member.rule = checkpoint_rule(cfg)
        elif member.rule.should_stop:
            member.live = False
        if member.epoch >= total_epochs(cfg):
            member.live = False
        reporter = progress.current()
        reporter.advance(1 if member.live else 1 + total_epochs(cfg) - member.epoch)
        if not member.live:
            reporter.member_done(
                member_line(
                    spec.fold,
                    spec.seed,
                    cfg.select,
                    member.rule.best_score,
                    f"epoch {member.rule.best_epoch}/{member.epoch}",
                )
            )
        return not member.live

    def _selection(self, member: _Member) -> Selection:
        spec, cfg = member.spec, member.spec.cfg
        assert member.best_state is not None
        member.step_module.load_state_dict(member.best_state)
        refit = None
        if cfg.refit:
            lrs = [past["lr"] for past in member.history[: member.rule.best_epoch]]
            refit = functools.partial(
                refit_torch,
                spec.data,
                np.concatenate([spec.rows["train"], spec.rows["validation"]]),
                fusion=spec.fusion,
                head_options=spec.head_options,
                cfg=cfg,
                seed=spec.seed,
                device=self.device,
                lrs=lrs,
            )
        predictor = TorchPredictor(
            member.setup.model, member.setup.loss_fn, member.setup.standardizer, cfg, self.device
        )
        return Selection(
            fold=spec.fold,
            seed=spec.seed,
            score=float(member.rule.best_score),
            best_epoch=member.rule.best_epoch,
            epochs_run=member.epoch,
            validation=member.best_val,
            history=member.history,
            seconds=self.seconds / len(self.members),
            predictor=predictor,
            refit=refit,
            engine=f"stacked ({len(self.members)} members)",
        )


def _padded(rows: np.ndarray, width: int) -> np.ndarray:
    """``rows`` padded to ``width`` by repeating its last row (a member whose validation set is shorter)."""
    if len(rows) == width:
        return rows
    return np.concatenate([rows, np.full(width - len(rows), rows[-1])])
