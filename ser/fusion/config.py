"""What defines a fit: :class:`FitConfig` (inputs, protocol, seeds) and :class:`TrainConfig`
(optimisation), plus the YAML / ``--set`` plumbing that builds them.

Torch-free on purpose: ``ser ablate`` expands grids, hashes run directories and validates keys
without importing torch; only running a fit does (``ser.fusion.run``).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ser.cache.format import config_hash
from ser.errors import UserError

if TYPE_CHECKING:
    from ser.fusion.data import View

MODALITIES = ("audio", "text", "mocap")


@dataclass(kw_only=True)
class TrainConfig:
    """Optimisation settings of a fit (``train.*`` keys in YAML and ``--set``)."""

    epochs: int = 100
    """Most training epochs per fold."""
    batch_size: int = 32
    optimizer: str = "adamw"
    """adam, adamw or sgd."""
    lr: float = 1e-3
    weight_decay: float = 1e-2
    momentum: float = 0.9
    """SGD momentum."""
    schedule: str = "none"
    """none, step (StepLR step_size/gamma), plateau (on validation loss), cosine (over epochs)."""
    step_size: int = 30
    gamma: float = 0.1
    plateau_patience: int = 10
    patience: int = 20
    """Early stopping: epochs without a better validation metric (0 = train all epochs)."""
    select: str = "ua"
    """Validation metric that chooses the checkpoint: ua, wa, macro_f1 or weighted_f1."""
    loss: str = "ce"
    """ce, focal, ce+center, ce+contrastive_center, arcface, cosface, ce+arcface, ce+cosface."""
    loss_options: dict[str, Any] = field(default_factory=dict)
    """Extra loss arguments (gamma for focal, lam for the lambda combination, ...)."""
    class_weighted: bool = False
    """Weight CE by inverse class frequency of the fold's training rows."""
    normalize: bool = True
    """Z-score pooled inputs with the fold's training statistics."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N."""
    amp: bool = True
    """Mixed precision on GPU (ignored on CPU)."""
    deterministic: bool = True
    """torch.use_deterministic_algorithms (same config + seed = same numbers)."""
    refit: bool = False
    """After choosing the epoch count on validation, retrain from the same seed on train +
    validation for that many epochs, then test (validation never sees the test fold either way)."""
    threads: int = 1
    """CPU threads for torch (0 = torch's default). One thread is fastest for the small heads: their
    matrices are too small for intra-op parallelism to pay, and ablation grids run several fits
    side by side."""



@dataclass(kw_only=True)
class FitConfig:
    """Everything that defines a fit (YAML keys; nested ``head`` and ``train``)."""

    fusion: str
    """Head name (``ser fusion list``)."""
    manifest: str
    protocol: str
    """Protocol preset (``ser protocol list``)."""
    audio: str | None = None
    """Audio store and view, ``STORE[:stat=..,layer=..|seq=..]``."""
    text: str | None = None
    mocap: str | None = None
    label_set: str | None = None
    """Default: the manifest's label set, else the corpus default."""
    val_fraction: float = 0.2
    val_by: str = "speaker"
    split_seed: int = 0
    """Seed of the validation carving (independent of the training seeds)."""
    protocol_options: dict[str, Any] = field(default_factory=dict)
    folds: list[str] | None = None
    """Fold names to run (None = all)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    head: dict[str, Any] = field(default_factory=dict)
    """Overrides of the head's config (paper defaults otherwise)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs"

    def views(self) -> dict[str, View]:
        from ser.fusion.data import parse_view

        return {m: parse_view(v) for m in MODALITIES if (v := getattr(self, m))}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def slug(self) -> str:
        """Readable name + hash of everything that changes the numbers (``out`` excluded)."""
        record = self.to_dict()
        record.pop("out")
        label = self.label_set or "default"
        return f"{self.fusion}-{self.protocol}-{label}-{config_hash(record)[:10]}"


def config_from_dict(record: dict[str, Any]) -> FitConfig:
    """Build a :class:`FitConfig` from a (YAML) dict, refusing unknown keys by name."""
    known = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise UserError(f"unknown config keys {unknown}; known: {sorted(known)}")
    record = dict(record)
    train = record.pop("train", {}) or {}
    train_known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(train) - train_known)
    if bad:
        raise UserError(f"unknown train keys {bad}; known: {sorted(train_known)}")
    missing = [k for k in ("fusion", "manifest", "protocol") if not record.get(k)]
    if missing:
        raise UserError(f"the fit config needs {', '.join(missing)} (flags --fusion/--manifest/--protocol or YAML)")
    return FitConfig(**record, train=TrainConfig(**_coerce_numbers(TrainConfig, train)))


def _coerce_numbers(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """YAML reads ``1e-4`` as a string; turn such values of int/float fields into numbers (or refuse)."""
    types = typing.get_type_hints(cls)
    out = dict(values)
    for key, value in values.items():
        if isinstance(value, str) and types.get(key) in (int, float):
            try:
                out[key] = types[key](float(value)) if types[key] is int else float(value)
            except ValueError:
                raise UserError(f"train.{key} must be a number, not {value!r}") from None
    return out


def apply_overrides(record: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """Apply ``--set key=value`` overrides (dotted keys into nested dicts; values parsed as YAML)."""
    import yaml

    record = json.loads(json.dumps(record))
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}")
        target = record
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UserError(f"--set {key}: {part} is not a section")
        target[leaf] = yaml.safe_load(raw)
    return record

