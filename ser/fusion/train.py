"""Training one fold: seeded, checkpoint chosen on validation only, test evaluated once.

The loop per fold and seed:

1. seed Python, numpy and torch (and ask torch for deterministic algorithms; on CUDA also
   ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` and no cuDNN autotuning, see
   [`deterministic_cuda_setup`][ser.seeding.deterministic_cuda_setup]);
2. z-score pooled inputs with statistics of the fold's TRAINING rows (never validation or test);
3. train for at most ``epochs``; after each epoch evaluate the validation rows, keep the weights of
   the best validation ``select`` metric (UA by default), stop after ``patience`` epochs without
   improvement;
4. restore the best weights and evaluate the test rows exactly once.

With ``refit`` the model is re-initialised from the same seed and trained on train + validation for
the selected number of epochs, at the learning rate each of those epochs had in the selection run
(replayed from the history, so a plateau schedule, which needs a validation loss the refit does not
have, follows the same trajectory as the run that chose the epoch count).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ser import devices
from ser.errors import UserError
from ser.fusion import progress
from ser.fusion.augment import SpecAugment
from ser.fusion.blocks import LayerWeights
from ser.fusion.checkpoints import CheckpointRule
from ser.fusion.classic import ClassicSelection, refit_classic, select_classic
from ser.fusion.classic import grid as classic_grid
from ser.fusion.config import TrainConfig
from ser.fusion.data import FusionData, Standardizer, batch_to_device, iterate_batches, to_device
from ser.fusion.heads import HEADS, head_module
from ser.fusion.losses import TrainingLoss, build_loss
from ser.fusion.metrics import compute_metrics
from ser.seeding import seed_everything

logger = logging.getLogger(__name__)


@dataclass
class FoldResult:
    """Outcome of one fold and seed."""

    fold: str
    """The protocol fold."""
    seed: int
    """The training seed."""
    best_epoch: int
    """The epoch whose weights were kept (0 for classic heads)."""
    epochs_run: int
    """Epochs trained before stopping (0 for classic heads)."""
    validation: dict[str, Any]
    """Validation metrics of the kept weights."""
    test: dict[str, Any]
    """Test metrics, computed once."""
    predictions: list[dict[str, Any]]
    """One row per test utterance: fold, seed, id, true and predicted class, class probabilities."""
    layer_weights: dict[str, list[float]] = field(default_factory=dict)
    """Modality -> the learned softmax layer weights (heads that learn them)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per-epoch training and validation values."""
    seconds: float = 0.0
    """Wall time of training and testing."""
    robustness: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra test set name (a corrupted copy) -> its metrics, evaluated once after the clean test."""
    candidate: dict[str, Any] = field(default_factory=dict)
    """The search candidate this member trained with (dotted key -> value; empty without a search)."""
    probabilities: np.ndarray | None = field(default=None, repr=False)
    """(n_test, C) class probabilities of the test rows (kept in memory for seed ensembles)."""
    test_labels: np.ndarray | None = field(default=None, repr=False)
    """(n_test,) true class indices of the test rows."""
    predictor: Any = field(default=None, repr=False)
    """The tested model (a [`Predictor`][ser.fusion.train.Predictor]), for the run's model files; not serialised
    here."""
    engine: str = "sequential"
    """How the member trained (see [`Selection.engine`][ser.fusion.train.Selection.engine])."""

    def to_dict(self) -> dict[str, Any]:
        skip = ("predictions", "probabilities", "test_labels", "predictor")
        record = {k: v for k, v in self.__dict__.items() if k not in skip}
        return copy.deepcopy(record)


class FusionModel(nn.Module):
    """Learnable layer weights for ``layer=weighted`` inputs, then the head."""

    def __init__(self, head: nn.Module, layer_counts: dict[str, int], augment: SpecAugment | None = None) -> None:
        super().__init__()
        self.head = head
        self.mixers = nn.ModuleDict({m: LayerWeights(n) for m, n in layer_counts.items() if n > 1})
        self.augment = augment

    def _mix(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.augment is not None and self.training:  # SpecAugment of every sequence input, training only
            inputs = {
                k: self.augment(v, inputs[f"{k}_lengths"]) if f"{k}_lengths" in inputs else v for k, v in inputs.items()
            }
        if not self.mixers:
            return inputs
        return {k: self.mixers[k](v) if k in self.mixers else v for k, v in inputs.items()}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inputs by name -> (B, C) logits."""
        logits: torch.Tensor = self.head(self._mix(inputs))
        return logits

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs by name -> (B, C) logits and the (B, F) features the margin losses use."""
        head_features = getattr(self.head, "forward_features", None)
        if head_features is None:
            raise UserError(f"head {type(self.head).__name__} does not expose features; use loss ce or focal")
        outputs: tuple[torch.Tensor, torch.Tensor] = head_features(self._mix(inputs))
        return outputs

    def mixer_weights(self) -> dict[str, list[float]]:
        """Modality -> its learnt layer weights (``layer=weighted`` inputs only)."""
        weights: dict[str, list[float]] = {}
        for modality, mixer in self.mixers.items():
            assert isinstance(mixer, LayerWeights)  # __init__ fills the mixers with LayerWeights only
            weights[modality] = mixer.weights()
        return weights


AMP_DTYPES: dict[str, torch.dtype] = {"cuda": torch.float16}
"""Device types on which ``train.amp`` trains with autocast and a GradScaler, and the autocast dtype (both engines
read it; tests add ``"cpu"`` to run the same mixed-precision path on CPU)."""


def resolve_device(choice: str) -> torch.device:
    """``train.device`` as a torch device, checked by [`ser.devices.resolve_device`][ser.devices.resolve_device]."""
    return torch.device(devices.resolve_device(choice))


def _optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    # Fused kernels: one call per step instead of a dozen small ops per parameter tensor (the
    # optimiser step otherwise costs as much as the forward pass of these small heads).
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True)
    raise UserError(f"train.optimizer must be adam, adamw or sgd, not {cfg.optimizer!r}")


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.schedule == "none":
        return None
    if cfg.schedule == "step":
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        if cfg.schedule_at_start:  # one step ahead: the schedule of epoch e is the one after e steps
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": on purpose
                schedule.step()
        return schedule
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.gamma, patience=cfg.plateau_patience)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    raise UserError(f"train.schedule must be none, step, plateau or cosine, not {cfg.schedule!r}")


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1) from TRAINING labels; absent classes get weight 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def _batch_outputs(
    model: FusionModel,
    loss_fn: TrainingLoss,
    data: FusionData,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    standardizer: Standardizer | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]]:
    """Eval-mode forward passes over ``rows`` in order: per batch the (B, C) logits, the (B, F) features
    (margin losses only, else None), the (B, C) class scores the loss predicts from, and the (B,) labels."""
    model.eval()
    with torch.inference_mode():
        for _, inputs, labels in iterate_batches(
            data, rows, batch_size, shuffle=False, generator=None, standardizer=standardizer
        ):
            inputs = batch_to_device(inputs, device)
            if getattr(loss_fn, "needs_features", False):
                logits, features = model.forward_features(inputs)
            else:
                logits, features = model(inputs), None
            scores = loss_fn.predict_logits(logits.float(), features)  # margin losses predict from features
            yield logits, features, scores, to_device(labels, device)


def _evaluate(
    model: FusionModel,
    data: FusionData,
    rows: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
    standardizer: Standardizer | None,
    loss_fn: TrainingLoss,
) -> tuple[dict[str, Any], np.ndarray, float]:
    """Metrics over ALL ``rows`` at once, the (n, C) probabilities, and the mean loss."""
    probabilities, total_loss = [], 0.0
    for logits, features, scores, labels in _batch_outputs(
        model, loss_fn, data, rows, eval_batch_size(cfg), device, standardizer
    ):
        total_loss += float(loss_fn(logits.float(), features, labels)) * len(labels)
        probabilities.append(torch.softmax(scores.float(), dim=-1).cpu().numpy())
    probs = np.concatenate(probabilities) if probabilities else np.zeros((0, len(data.classes)))
    metrics = compute_metrics(data.labels[rows], probs.argmax(axis=1), data.classes)
    return metrics, probs, total_loss / max(len(rows), 1)


def eval_batch_size(cfg: TrainConfig) -> int:
    """Rows per evaluation pass: four training batches, and at least 128 (a batch-1 recipe would
    otherwise evaluate four rows at a time; heads give the same output whatever the batch)."""
    return max(4 * cfg.batch_size, 128)


def check_head_weights(fusion: str, head: nn.Module) -> None:
    """Refuse a head built with a zero-width layer (``head.hidden=[0]``): it would "train" to chance."""
    empty = [f"{name} {tuple(p.shape)}" for name, p in head.named_parameters() if p.numel() == 0]
    if empty:
        raise UserError(
            f"head {fusion} has zero-width weights ({', '.join(empty[:3])}); check the head options (e.g. head.hidden)"
        )


def check_head(fusion: str, data: FusionData, head_options: dict[str, Any]) -> None:
    """Build the head once on the data's shapes (before a fit writes anything): options it refuses and
    zero-width layers become one clear error."""
    if HEADS[fusion].engine != "torch":
        return
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "initializing zero-element tensors": refused just below
            head = head_module(fusion).build(
                {m: d.dim for m, d in data.modalities.items()}, len(data.classes), **head_options
            )
    except (TypeError, ValueError) as err:
        raise UserError(f"fusion head {fusion}: {err}") from err
    check_head_weights(fusion, head)


@dataclass
class _Setup:
    """A freshly initialised model with its loss, optimiser(s), schedule(s) and input scaling."""

    model: FusionModel
    loss_fn: TrainingLoss
    optimizer: torch.optim.Optimizer
    scheduler: Any
    standardizer: Standardizer | None
    scaler: torch.amp.GradScaler
    use_amp: bool
    cfg: TrainConfig
    loss_optimizer: torch.optim.Optimizer | None = None
    """The loss parameters' own Adam (``train.loss_optimizer``), else None (they are in ``optimizer``)."""
    loss_scheduler: Any = None
    epoch: int = 0
    """Epochs completed (both stages)."""
    amp_dtype: torch.dtype = torch.float16
    """The autocast dtype of the forward pass when ``use_amp`` (from [`AMP_DTYPES`][ser.fusion.train.AMP_DTYPES])."""

    def zero_grad(self) -> None:
        """Clear the gradients of every optimised parameter (the model's and the loss's)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.loss_optimizer is not None:
            self.loss_optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One optimisation step of every optimiser from the gradients already computed."""
        self.scaler.step(self.optimizer)
        if self.loss_optimizer is not None:
            self.scaler.step(self.loss_optimizer)
        self.scaler.update()

    def end_epoch(self, val_loss: float) -> None:
        """Step the schedules once (the first stage of ``train.transfer_epochs`` has none)."""
        self.epoch += 1
        if self.loss_scheduler is not None:
            self.loss_scheduler.step()
        if self.epoch <= self.cfg.transfer_epochs:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif self.scheduler is not None:
            self.scheduler.step()

    @property
    def stage_ends(self) -> bool:
        """True right after the last epoch of the first of two stages."""
        return bool(self.cfg.transfer_epochs) and self.epoch == self.cfg.transfer_epochs

    def start_second_stage(self) -> None:
        """A fresh optimiser (over the same parameters) and schedule; the loss's own optimiser and its
        schedule go on (as 4M-SER's second stage)."""
        self.optimizer = _optimizer(optimised_parameters(self.model, self.loss_fn, self.cfg), self.cfg)
        self.scheduler = _scheduler(self.optimizer, self.cfg)


def setup(
    data: FusionData,
    train_rows: np.ndarray,
    fusion: str,
    head_options: dict[str, Any],
    cfg: TrainConfig,
    device: torch.device,
) -> _Setup:
    standardizer = Standardizer.fit(data, train_rows) if cfg.normalize else None
    dims = {m: d.dim for m, d in data.modalities.items()}
    try:
        head = head_module(fusion).build(dims, len(data.classes), **head_options)
    except TypeError as err:
        raise UserError(f"fusion head {fusion}: {err}") from err
    augment = None
    if cfg.specaugment:
        # user-given values, checked by SpecAugment itself (a wrong type or value is a UserError below)
        options: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in cfg.specaugment_options.items()
        }
        try:
            augment = SpecAugment(**{"fill": "mean", **options})
        except (TypeError, ValueError) as err:
            raise UserError(f"train.specaugment_options: {err}") from err
    check_head_weights(fusion, head)
    model = FusionModel(head, {m: d.n_layers for m, d in data.modalities.items()}, augment).to(device)
    weights = class_weights(data.labels[train_rows], len(data.classes)) if cfg.class_weighted else None
    if cfg.loss not in ("ce", "focal") and not hasattr(head, "forward_features"):
        raise UserError(f"loss {cfg.loss!r} needs features, but head {fusion!r} does not expose them; use ce or focal")
    try:
        loss_fn = build_loss(
            cfg.loss,
            len(data.classes),
            getattr(head, "feature_dim", 0),
            weights.to(device) if weights is not None else None,
            **cfg.loss_options,
        ).to(device)
    except (ValueError, TypeError) as err:
        raise UserError(f"train.loss {cfg.loss!r}: {err}") from err
    optimizer = _optimizer(optimised_parameters(model, loss_fn, cfg), cfg)
    loss_optimizer, loss_scheduler = _loss_optimizer(loss_fn, cfg)
    amp_dtype = AMP_DTYPES.get(device.type) if cfg.amp else None
    use_amp = amp_dtype is not None
    return _Setup(
        model,
        loss_fn,
        optimizer,
        None if cfg.transfer_epochs else _scheduler(optimizer, cfg),
        standardizer,
        torch.amp.GradScaler(device.type if use_amp else "cuda", enabled=use_amp),
        use_amp,
        cfg,
        loss_optimizer,
        loss_scheduler,
        amp_dtype=amp_dtype or torch.float16,
    )


def optimised_parameters(model: nn.Module, loss_fn: nn.Module, cfg: TrainConfig) -> list[nn.Parameter]:
    """What the model's optimiser updates: the model's parameters, and the loss's unless they have their
    own optimiser (``train.loss_optimizer``)."""
    return [*model.parameters(), *([] if cfg.loss_optimizer else loss_fn.parameters())]


def _loss_optimizer(loss_fn: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer | None, Any]:
    """The loss parameters' own Adam (the model's lr and weight decay) and its milestone schedule: x 0.1
    for each milestone m with m - 1 <= the number of epochs done (4M-SER's margin trainer)."""
    params = list(loss_fn.parameters())
    if not cfg.loss_optimizer or not params:
        return None, None
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    milestones = sorted(cfg.loss_milestones)
    if not milestones:
        return optimizer, None
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: 0.1 ** sum(1 for m in milestones if m - 1 <= done)
    )
    return optimizer, schedule


def _train_epoch(
    setup: _Setup,
    data: FusionData,
    rows: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
) -> float:
    """One pass over ``rows``; returns the mean training loss. Batches go to the device without blocking
    (pinned memory on CUDA) and the loss sums on the device: one host read per epoch."""
    setup.model.train()
    setup.loss_fn.train()
    epoch_loss = torch.zeros((), dtype=accumulator_dtype(device), device=device)
    for _, inputs, labels in iterate_batches(
        data, rows, cfg.batch_size, shuffle=True, generator=generator, standardizer=setup.standardizer
    ):
        inputs = batch_to_device(inputs, device)
        labels = to_device(labels, device)
        setup.zero_grad()
        with torch.autocast(device.type, dtype=setup.amp_dtype, enabled=setup.use_amp):
            if getattr(setup.loss_fn, "needs_features", False):
                logits, features = setup.model.forward_features(inputs)
            else:
                logits, features = setup.model(inputs), None
        loss = setup.loss_fn(logits, features, labels)  # float32, autocast off (TrainingLoss.forward)
        setup.scaler.scale(loss).backward()
        setup.step()
        epoch_loss += loss.detach().to(epoch_loss.dtype) * len(labels)
    return float(epoch_loss.item()) / max(len(rows), 1)


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """The dtype of loss sums kept on ``device``: float64 (the host's float), float32 on MPS (no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass
class TorchPredictor:
    """A trained neural head with everything its evaluation needs."""

    model: FusionModel
    """The trained head."""
    loss_fn: TrainingLoss
    """The training loss (some losses predict from the features)."""
    standardizer: Standardizer | None
    """The z-scoring of the pooled inputs (None when ``train.normalize`` is off)."""
    cfg: TrainConfig
    """The training settings."""
    device: torch.device
    """Where the model runs."""

    def evaluate(self, data: FusionData, rows: np.ndarray) -> tuple[dict[str, Any], np.ndarray, float]:
        """Metrics over ALL ``rows`` at once, the (n, C) probabilities and the mean loss."""
        return _evaluate(self.model, data, rows, self.cfg, self.device, self.standardizer, self.loss_fn)

    def probabilities(self, data: FusionData, rows: np.ndarray) -> np.ndarray:
        """(len(rows), C) class probabilities (no labels needed: ``ser predict``)."""
        parts = [
            torch.softmax(scores.float(), dim=-1).cpu().numpy()
            for _, _, scores, _ in _batch_outputs(
                self.model, self.loss_fn, data, rows, eval_batch_size(self.cfg), self.device, self.standardizer
            )
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(data.classes)))

    def layer_weights(self) -> dict[str, list[float]]:
        return self.model.mixer_weights()


class Predictor(Protocol):
    """What the test stage and inference need of a trained member (neural or classic)."""

    def evaluate(self, data: FusionData, rows: np.ndarray) -> tuple[dict[str, Any], np.ndarray, float]: ...

    def probabilities(self, data: FusionData, rows: np.ndarray) -> np.ndarray: ...


@dataclass
class Selection:
    """One member (fold x seed x search candidate) trained and selected on validation; its test rows
    are untouched until [`test_member`][ser.fusion.train.test_member]."""

    fold: str
    """The protocol fold."""
    seed: int
    """The training seed."""
    score: float
    """Validation ``train.select`` metric of the chosen checkpoint (or grid point)."""
    best_epoch: int
    """The epoch of the chosen checkpoint (0 for classic heads)."""
    epochs_run: int
    """Epochs trained before stopping."""
    validation: dict[str, Any]
    """Validation metrics of the chosen checkpoint."""
    history: list[dict[str, float]]
    """Per-epoch training and validation values."""
    seconds: float
    """Wall time of training and selection."""
    predictor: Predictor
    """The selected model."""
    refit: Callable[[], Predictor] | None = None
    """Builds the model that is tested instead of ``predictor`` (``train.refit``)."""
    engine: str = "sequential"
    """How the member trained: ``sequential`` or ``stacked (N members)`` (``ser.fusion.engine``)."""


@dataclass
class MemberSpec:
    """What one member trains on and with (the arguments of the sequential ``select_member``)."""

    fold: str
    """The protocol fold."""
    seed: int
    """The training seed."""
    data: FusionData
    """The fit's data (all folds)."""
    rows: dict[str, np.ndarray]
    """``train``, ``validation`` (and ``test``, which the engine never reads) row indices into ``data``."""
    fusion: str
    """The head's name."""
    head_options: dict[str, Any]
    """Overrides of the head's config."""
    cfg: TrainConfig
    """The member's training settings."""


class DivergenceError(UserError):
    """Training produced non-finite numbers: the member has no result to report."""


def check_finite(fold: str, seed: int, epoch: int, lr: float, train_loss: float, val_probs: np.ndarray) -> None:
    """Stop a member whose loss or validation outputs stopped being finite (a diverged run would
    otherwise predict class 0 everywhere and be reported as a chance-level result)."""
    if math.isfinite(train_loss) and np.isfinite(val_probs).all():
        return
    cause = f"training loss {train_loss}" if not math.isfinite(train_loss) else "non-finite validation outputs"
    raise DivergenceError(
        f"fold {fold} seed {seed}: training diverged at epoch {epoch} ({cause}, lr {lr:g}); "
        "lower train.lr, add a schedule, or check the inputs for extreme values"
    )


def check_validation(fold_name: str, rows: dict[str, np.ndarray]) -> None:
    if len(rows["validation"]) == 0:
        raise UserError(f"fold {fold_name}: the validation set is empty; raise --val-fraction or check the protocol")


def select_member(
    data: FusionData,
    fold_name: str,
    rows: dict[str, np.ndarray],
    *,
    fusion: str,
    head_options: dict[str, Any],
    cfg: TrainConfig,
    seed: int,
) -> Selection:
    """Train on ``rows["train"]`` and choose the checkpoint (neural heads: the best validation epoch;
    classic heads: the best grid point) on ``rows["validation"]``. ``rows["test"]`` is not read."""
    check_validation(fold_name, rows)
    if HEADS[fusion].engine == "sklearn":
        return select_classic_member(MemberSpec(fold_name, seed, data, rows, fusion, head_options, cfg))
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    generator = seed_everything(seed, cfg.deterministic)
    if cfg.threads > 0 and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    state = setup(data, rows["train"], fusion, head_options, cfg, device)
    model, loss_fn, standardizer = state.model, state.loss_fn, state.standardizer
    rule = checkpoint_rule(cfg)
    best_state = None
    best_val: dict[str, Any] = {}
    history: list[dict[str, float]] = []
    epoch = 0
    reporter = progress.current()
    for epoch in range(1, total_epochs(cfg) + 1):
        reporter.advance()
        lr = state.optimizer.param_groups[0]["lr"]
        train_loss = _train_epoch(state, data, rows["train"], cfg, device, generator)
        val_metrics, val_probs, val_loss = _evaluate(
            model, data, rows["validation"], cfg, device, standardizer, loss_fn
        )
        check_finite(fold_name, seed, epoch, lr, train_loss, val_probs)
        history.append(epoch_record(epoch, lr, train_loss, val_loss, val_metrics, cfg))
        state.end_epoch(val_loss)
        if rule.update(epoch, val_metrics, train_loss, val_loss):
            best_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(loss_fn.state_dict()))
            best_val = val_metrics
        if state.stage_ends:
            assert best_state is not None
            model.load_state_dict(best_state[0])
            loss_fn.load_state_dict(best_state[1])
            state.start_second_stage()
            rule = checkpoint_rule(cfg)
        elif rule.should_stop:
            break
    reporter.advance(total_epochs(cfg) - epoch)
    reporter.member_done(member_line(fold_name, seed, cfg.select, rule.best_score, f"epoch {rule.best_epoch}/{epoch}"))
    assert best_state is not None
    model.load_state_dict(best_state[0])
    loss_fn.load_state_dict(best_state[1])  # centers / margin weights chosen with the model
    refit = None
    if cfg.refit:
        refit = functools.partial(
            refit_torch,
            data,
            np.concatenate([rows["train"], rows["validation"]]),
            fusion=fusion,
            head_options=head_options,
            cfg=cfg,
            seed=seed,
            device=device,
            lrs=[past["lr"] for past in history[: rule.best_epoch]],
        )
    return Selection(
        fold=fold_name,
        seed=seed,
        score=float(rule.best_score),
        best_epoch=rule.best_epoch,
        epochs_run=epoch,
        validation=best_val,
        history=history,
        seconds=time.perf_counter() - start,
        predictor=TorchPredictor(model, loss_fn, standardizer, cfg, device),
        refit=refit,
    )


def progress_units(member: MemberSpec) -> int:
    """A member's units of work for [`ser.fusion.progress`][ser.fusion.progress]: its epochs (neural heads) or its grid
    points (classic heads)."""
    if HEADS[member.fusion].engine == "sklearn":
        return len(classic_grid(classic_config(member.data, member.fusion, member.head_options)))
    return total_epochs(member.cfg)


def member_line(fold: str, seed: int, select: str, score: float, chosen: str) -> str:
    """One line for a member that finished training and selection (printed as it ends); ``chosen`` says
    what validation chose, e.g. ``epoch 14/40`` or ``C=1``."""
    name = select.upper() if select in ("ua", "wa") else select
    return f"fold {fold} seed {seed}: validation {name} {100 * score:.2f} ({chosen})"


def checkpoint_rule(cfg: TrainConfig) -> CheckpointRule:
    """A member's checkpoint rule (``train.checkpoint``, ``train.select``, ``train.patience``)."""
    return CheckpointRule(cfg.checkpoint, cfg.select, cfg.patience)


def total_epochs(cfg: TrainConfig) -> int:
    """Epochs of both stages (``train.transfer_epochs`` + ``train.epochs``)."""
    return cfg.transfer_epochs + cfg.epochs


def epoch_record(
    epoch: int, lr: float, train_loss: float, val_loss: float, metrics: dict[str, Any], cfg: TrainConfig
) -> dict[str, float]:
    """One row of a member's history (both engines write the same)."""
    score = metrics[cfg.select]
    return {"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss, f"val_{cfg.select}": score}


def refit_torch(
    data: FusionData,
    pooled: np.ndarray,
    *,
    fusion: str,
    head_options: dict[str, Any],
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    lrs: list[float],
) -> TorchPredictor:
    """Re-initialise from the same seed and train on train + validation for the selected number of
    epochs, at the selection run's learning rate of each epoch (any schedule)."""
    generator = seed_everything(seed, cfg.deterministic)
    state = setup(data, pooled, fusion, head_options, cfg, device)
    for lr in lrs:
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        _train_epoch(state, data, pooled, cfg, device, generator)
        if state.loss_scheduler is not None:
            state.loss_scheduler.step()
    return TorchPredictor(state.model, state.loss_fn, state.standardizer, cfg, device)


def classic_config(data: FusionData, fusion: str, head_options: dict[str, Any]) -> Any:
    """The config object of a classic head (its estimator kind and grid) for ``data``'s inputs."""
    return head_module(fusion).build({m: d.dim for m, d in data.modalities.items()}, len(data.classes), **head_options)


def search_classic(member: MemberSpec, refit_now: bool = False) -> ClassicSelection:
    """A classic member's grid search on its ``train`` / ``validation`` rows (the part of
    [`select_classic_member`][ser.fusion.train.select_classic_member] that a worker process may run:
    [`ser.fusion.classic_pool`][ser.fusion.classic_pool]); with ``refit_now`` and ``train.refit``, its refit on
    train + validation too (it does not read the test rows)."""
    cfg, rows = member.cfg, member.rows
    config = classic_config(member.data, member.fusion, member.head_options)
    chosen = select_classic(
        member.data, rows, config=config, normalize=cfg.normalize, select=cfg.select, seed=member.seed
    )
    if refit_now and cfg.refit:
        chosen.refitted = refit_classic(
            member.data,
            np.concatenate([rows["train"], rows["validation"]]),
            config=config,
            params=chosen.predictor.params,
            normalize=cfg.normalize,
            seed=member.seed,
        )
    return chosen


def _kept(predictor: Predictor) -> Predictor:
    """``predictor`` itself (a refit already done, handed to the test stage as one)."""
    return predictor


def select_classic_member(member: MemberSpec, chosen: ClassicSelection | None = None) -> Selection:
    """A classic member selected on validation: its grid search (``chosen`` when a worker process ran
    it already, else run here), its line on the progress reporter and its refit on train + validation."""
    data, rows, cfg, seed = member.data, member.rows, member.cfg, member.seed
    config = classic_config(data, member.fusion, member.head_options)
    if chosen is None:
        chosen = search_classic(member)
    progress.current().member_done(
        member_line(
            member.fold,
            seed,
            cfg.select,
            chosen.score,
            ", ".join(f"{k}={v:g}" for k, v in chosen.predictor.params.items()),
        )
    )
    refit: Callable[[], Predictor] | None = None
    if chosen.refitted is not None:
        refit = functools.partial(_kept, chosen.refitted)
    elif cfg.refit:
        refit = functools.partial(
            refit_classic,
            data,
            np.concatenate([rows["train"], rows["validation"]]),
            config=config,
            params=chosen.predictor.params,
            normalize=cfg.normalize,
            seed=seed,
        )
    return Selection(
        fold=member.fold,
        seed=seed,
        score=chosen.score,
        best_epoch=0,
        epochs_run=0,
        validation=chosen.validation,
        history=chosen.history,
        seconds=chosen.seconds,
        predictor=chosen.predictor,
        refit=refit,
        engine="scikit-learn (deterministic: one fit serves every seed)",
    )


def test_member(
    selection: Selection,
    data: FusionData,
    rows: dict[str, np.ndarray],
    *,
    extra_tests: dict[str, tuple[FusionData, np.ndarray]] | None = None,
    candidate: dict[str, Any] | None = None,
) -> FoldResult:
    """Refit when asked, then evaluate ``rows["test"]`` exactly once (and once each of ``extra_tests``:
    the same test utterances read from corrupted copies of a store, scaled with the training statistics)."""
    start = time.perf_counter()
    predictor = selection.refit() if selection.refit is not None else selection.predictor
    test_metrics, probs, _ = predictor.evaluate(data, rows["test"])
    fold_name, seed = selection.fold, selection.seed
    predictions = [
        {
            "fold": fold_name,
            "seed": seed,
            "id": data.ids[r],
            "true": data.classes[data.labels[r]],
            "pred": data.classes[int(p.argmax())],
            **{f"p_{c}": round(float(v), 6) for c, v in zip(data.classes, p, strict=True)},
        }
        for r, p in zip(rows["test"], probs, strict=True)
    ]
    robustness = {
        name: predictor.evaluate(extra, extra_rows)[0] for name, (extra, extra_rows) in (extra_tests or {}).items()
    }
    layer_weights = predictor.layer_weights() if isinstance(predictor, TorchPredictor) else {}
    logger.info(
        "fold %s seed %d: best epoch %d/%d, validation %.4f, test UA %.4f WA %.4f",
        fold_name,
        seed,
        selection.best_epoch,
        selection.epochs_run,
        selection.score,
        test_metrics["ua"],
        test_metrics["wa"],
    )
    return FoldResult(
        fold=fold_name,
        seed=seed,
        best_epoch=selection.best_epoch,
        epochs_run=selection.epochs_run,
        validation=selection.validation,
        test=test_metrics,
        predictions=predictions,
        layer_weights=layer_weights,
        history=selection.history,
        seconds=selection.seconds + time.perf_counter() - start,
        robustness=robustness,
        candidate=dict(candidate or {}),
        probabilities=probs,
        test_labels=data.labels[rows["test"]],
        predictor=predictor,
        engine=selection.engine,
    )


def train_fold(
    data: FusionData,
    fold_name: str,
    rows: dict[str, np.ndarray],
    *,
    fusion: str,
    head_options: dict[str, Any],
    cfg: TrainConfig,
    seed: int,
    extra_tests: dict[str, tuple[FusionData, np.ndarray]] | None = None,
) -> FoldResult:
    """One member from start to end: [`select_member`][ser.fusion.train.select_member] on train / validation, then
    [`test_member`][ser.fusion.train.test_member] (refit with ``cfg.refit``, one test pass, once per
    ``extra_tests``)."""
    selection = select_member(data, fold_name, rows, fusion=fusion, head_options=head_options, cfg=cfg, seed=seed)
    return test_member(selection, data, rows, extra_tests=extra_tests)
