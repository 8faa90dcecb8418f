"""What defines a fit: [`FitConfig`][ser.fusion.config.FitConfig] (inputs, protocol, seeds) and
[`TrainConfig`][ser.fusion.config.TrainConfig] (optimisation), plus the YAML / ``--set`` plumbing that builds them.

Precedence of the training settings in a record read by [`config_from_dict`][ser.fusion.config.config_from_dict]
(``ser fit``, ``ser ablate``): TrainConfig defaults < the head's recipe (``--recipe``, ``ser.fusion.recipes``) < YAML <
flags < ``--set``. Every value passes through the one option grammar (``ser.options.coerce``) by the
type of the field it sets: YAML files still load with YAML, but ``1e-4`` (text to YAML 1.1) becomes a
number and ``yes`` / ``none`` mean the same in a YAML file, ``--set`` and ``--search``.

Torch-free on purpose: ``ser ablate`` expands grids, hashes run directories and validates keys
without importing torch; only running a fit does (``ser.fusion.run``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ser.cache.format import config_hash
from ser.errors import UserError
from ser.fusion.checkpoints import CHECKPOINT_RULES
from ser.fusion.heads import head_recipe
from ser.fusion.recipes import DEFAULT_RECIPE, RECIPES
from ser.manifests.protocols import ValidationBy, ValidationRule
from ser.options import (
    coerce,
    coerce_fields,
    field_types,
    read_value,
    read_values,
    require_float,
    require_int,
    split_pair,
)
from ser.views import join_view, parse_view, split_options, split_view
from ser.yaml_files import read_yaml

if TYPE_CHECKING:
    from ser.views import View

MODALITIES = ("audio", "text", "mocap")
FOLD_PLACEHOLDER = "{fold}"
SPECAUGMENT_OPTIONS = ("time_width", "freq_width", "p_time", "p_freq", "n_time_masks", "n_freq_masks", "fill")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "plateau", "cosine")
SELECT_METRICS = ("ua", "wa", "macro_f1", "weighted_f1")
CHECKPOINTS = CHECKPOINT_RULES
ENGINES = ("auto", "stacked", "sequential")
VALIDATION_BY: tuple[str, ...] = typing.get_args(ValidationBy)
MAX_THREADS = 1024
"""Most ``train.threads``: far above any machine's cores, below the counts at which torch's thread pool
crashes the process (``train.threads=100000`` ended in a segmentation fault). An absolute bound, not one
sized to this machine's cores, because ``threads`` is part of the run's hash: a config valid here stays
valid on the cluster."""
MAX_SEED = 2**32 - 1
"""Largest training seed: numpy's ``np.random.seed`` takes 0 .. 2**32 - 1 (torch takes more)."""


@dataclass(kw_only=True)
class TrainConfig:
    """Optimisation settings of a fit (``train.*`` keys in YAML and ``--set``)."""

    epochs: int = 100
    """Most training epochs per fold."""
    batch_size: int = 32
    """Training rows per optimiser step."""
    optimizer: str = "adamw"
    """adam, adamw or sgd."""
    lr: float = 1e-3
    """Learning rate."""
    weight_decay: float = 1e-2
    """Weight decay of the optimiser."""
    momentum: float = 0.9
    """SGD momentum."""
    schedule: str = "none"
    """none, step (StepLR: lr x gamma every step_size epochs), plateau (ReduceLROnPlateau on the
    validation loss: lr x gamma after plateau_patience epochs without improvement), cosine (cosine
    annealing to 0 over ``epochs``). Stepped once per epoch. With ``refit`` a plateau schedule
    replays the lr of each epoch of the selection run (the refit has no validation loss)."""
    step_size: int = 30
    """Epochs between two learning-rate drops of the ``step`` schedule."""
    schedule_at_start: bool = False
    """Step a ``step`` schedule at the START of each epoch, as SERVER's notebook did (each drop lands one
    epoch earlier: epochs 30, 60, 90 instead of 31, 61, 91 for StepLR(30, 0.1))."""
    gamma: float = 0.1
    """Factor of step and plateau schedules."""
    plateau_patience: int = 10
    """Epochs without a better validation score before the ``plateau`` schedule drops the learning rate."""
    patience: int = 20
    """Early stopping: epochs without a new kept checkpoint (0 = train all epochs)."""
    select: str = "ua"
    """Validation metric that chooses the checkpoint (``checkpoint=best``) and compares search
    candidates: ua, wa, macro_f1 or weighted_f1."""
    checkpoint: str = "best"
    """Which epoch's weights are kept (``ser.fusion.checkpoints``): best (best validation ``select``
    metric), last, val_loss (lowest validation loss) or train_val_loss (training and validation loss
    both below those of the last kept epoch, as SER-Fuse saved)."""
    transfer_epochs: int = 0
    """A first stage of this many epochs at a constant learning rate, after which the kept checkpoint
    is reloaded and ``epochs`` more train with a fresh optimiser and the schedule, the checkpoint rule
    starting afresh (4M-SER's ``transfer_learning`` configs: 50). 0: one stage."""
    loss_optimizer: bool = False
    """Train the loss's parameters (centers, margin weights) with their own Adam (the model's lr and
    weight decay) instead of the model's optimiser, as 4M-SER's margin trainer did."""
    loss_milestones: list[int] = field(default_factory=list)
    """With ``loss_optimizer``: epochs (1-based) from which the loss parameters' lr is multiplied by
    0.1 once more (4M-SER: 8, 14, 20, 25). This schedule runs through both stages."""
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
    """Same config + seed = same numbers: torch.use_deterministic_algorithms (warn_only: an op without
    a deterministic kernel warns instead of failing), and on CUDA ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
    (set at the start of the fit unless already set) with cuDNN autotuning off."""
    refit: bool = False
    """After choosing the epoch count on validation, retrain from the same seed on train +
    validation for that many epochs (replaying the selection run's per-epoch learning rates, so
    plateau schedules work too), then test (validation never sees the test fold either way)."""
    threads: int = 1
    """CPU threads for torch (0 = torch's default; at most ``MAX_THREADS``, 1024). One thread is fastest for
    the small heads: their matrices are too small for intra-op parallelism to pay, and ablation grids run several fits
    side by side. It is part of the run's hash because torch's float sums depend on it (measured:
    weights 1.7e-5 apart after 50 steps with 1 and 2 threads). The BLAS threads of numpy and
    scikit-learn (classic heads) are not set here: they are sized to each problem and to the idle
    cores (``ser.threads``), which does not change their numbers."""
    engine: str = "auto"
    """stacked: the members of a fit (folds x seeds x search candidates) whose models share shapes
    train as one model with a leading member axis (``ser.fusion.engine``); sequential: one member
    after the other (the reference loop); auto: stacked where it was measured to pay (heads on
    pooled vectors, on every device), else sequential. With dropout 0 both give the same
    numbers; with dropout the masks differ (the engine is part of the run's hash)."""

    specaugment: bool = False
    """SpecAugment on every SEQUENCE input during training (log-mel frames, SSL frames, token
    states): time masks over valid frames and masks over feature channels; never at evaluation.
    (The spectrogram heads have their own, ``head.specaugment``; use one or the other.)"""
    specaugment_options: dict[str, Any] = field(default_factory=dict)
    """time_width, freq_width ([lo, hi] frames / channels), p_time, p_freq, n_time_masks,
    n_freq_masks, fill (min: the item's floor, right for log-mel; mean: its average, the default for
    learned features; zero). Defaults: the Copenhagen project's 10-30 frames / 5-15 bins at p 0.5."""

    def check(self) -> None:
        """Refuse every bad value by name, one line (before a fit creates anything)."""
        for name, value, choices in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
            ("select", self.select, SELECT_METRICS),
            ("checkpoint", self.checkpoint, CHECKPOINTS),
            ("engine", self.engine, ENGINES),
        ):
            if value not in choices:
                raise UserError(f"train.{name} must be one of {', '.join(choices)}, not {value!r}")
        for name, low in (
            ("epochs", 1),
            ("batch_size", 1),
            ("step_size", 1),
            ("plateau_patience", 0),
            ("patience", 0),
            ("transfer_epochs", 0),
        ):
            require_int(f"train.{name}", getattr(self, name), low)
        require_int("train.threads", self.threads, 0, MAX_THREADS)
        require_float("train.lr", self.lr, low=0.0, strict=True)
        require_float("train.weight_decay", self.weight_decay, low=0.0)
        require_float("train.momentum", self.momentum, low=0.0, high=1.0)
        require_float("train.gamma", self.gamma, low=0.0, strict=True)
        for name in (
            "class_weighted",
            "normalize",
            "amp",
            "deterministic",
            "refit",
            "specaugment",
            "loss_optimizer",
            "schedule_at_start",
        ):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"train.{name} must be true or false, not {getattr(self, name)!r}")
        for name in ("loss_options", "specaugment_options"):
            if not isinstance(getattr(self, name), dict):
                raise UserError(f"train.{name} must be a mapping (KEY: VALUE), not {getattr(self, name)!r}")
        check_device("train.device", self.device)
        self._check_stages()
        unknown = sorted(set(self.specaugment_options) - set(SPECAUGMENT_OPTIONS))
        if unknown:
            raise UserError(
                f"train.specaugment_options {unknown} are unknown; they are {', '.join(SPECAUGMENT_OPTIONS)}"
            )

    def _check_stages(self) -> None:
        """Refuse combinations of checkpoint rule, stages and loss optimiser that mean nothing."""
        if not isinstance(self.loss_milestones, list) or not all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in self.loss_milestones
        ):
            raise UserError(f"train.loss_milestones must be a list of epochs >= 1, not {self.loss_milestones!r}")
        if self.loss_milestones and not self.loss_optimizer:
            raise UserError("train.loss_milestones schedule the loss's own optimiser: set train.loss_optimizer=true")
        if self.schedule_at_start and self.schedule != "step":
            raise UserError("train.schedule_at_start applies to train.schedule=step only")
        if self.checkpoint == "last" and self.patience:
            raise UserError("train.checkpoint=last keeps every epoch, so nothing can stop early: set train.patience=0")
        if self.transfer_epochs and self.refit:
            raise UserError(
                "train.refit replays one stage of training; it cannot replay train.transfer_epochs' two stages"
            )

    @classmethod
    def for_head(cls, fusion: str, recipe: str = DEFAULT_RECIPE, **changes: Any) -> TrainConfig:
        """The ``train.*`` values of the head's recipe (``ser.fusion.recipes``) with ``changes`` on top."""
        values = head_recipe(fusion, recipe).train_for(changes.get("loss"))
        return cls(**coerce_fields(cls, {**values, **changes}, "train"))


@dataclass(frozen=True)
class PinnedRun:
    """A fit that writes a grid cell's run directory with a smaller ``train.batch_size`` than the cell's:
    ``ser ablate`` halves the batch of a cell that runs out of GPU memory even alone, and the cell must
    still end done in its own directory (``ser.ablate.job``). Set by ``ser ablate`` only."""

    name: str
    """The cell's run-directory name (its ``FitConfig.slug()``)."""
    batch_size: int
    """The cell's own ``train.batch_size`` (the fit records the change as a departure)."""


@dataclass(kw_only=True)
class FitConfig:
    """Everything that defines a fit (YAML keys; nested ``head`` and ``train``)."""

    fusion: str
    """Head name (``ser fusion list``)."""
    manifest: str
    """The manifest file (JSON lines) whose rows are fitted."""
    recipe: str = DEFAULT_RECIPE
    """How the head is run (``ser.fusion.recipes``): ``ser`` (harmonised across heads) or ``paper`` (the
    original experiment). A record read by [`config_from_dict`][ser.fusion.config.config_from_dict] starts from it;
    explicit values override it and are logged as departures."""
    protocol: str
    """Protocol preset (``ser protocol list``)."""
    audio: str | None = None
    """Audio store and view, ``STORE[:stat=..,layer=..|seq=..]``. ``{fold}`` in a store path (any
    modality) is replaced by each fold's name: one store per fold, e.g. per-fold fine-tuned upstreams."""
    text: str | None = None
    """Text store and view, as for ``audio``."""
    mocap: str | None = None
    """Motion-capture store and view, as for ``audio``."""
    label_set: str | None = None
    """Default: the manifest's label set, else the corpus default."""
    val_fraction: float = ValidationRule.fraction
    """Share of each fold's training pool carved out for validation (``ValidationRule``)."""
    val_by: str = ValidationRule.by
    """speaker or utterance (``ValidationRule``)."""
    split_seed: int = ValidationRule.seed
    """Seed of the validation carving (independent of the training seeds)."""
    protocol_options: dict[str, Any] = field(default_factory=dict)
    """Options of the protocol preset (``-O KEY=VALUE``, ``ser protocol list``)."""
    folds: list[str] | None = None
    """Fold names to run (None = all)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds: every fold trains once per seed."""
    head: dict[str, Any] = field(default_factory=dict)
    """Overrides of the head's config (paper defaults otherwise)."""
    augmented: bool = True
    """Train on the augmented copies (``ser extract --augment``) of each fold's training rows when a
    store holds them; validation and test never see a copy."""
    robustness: list[str] = field(default_factory=list)
    """Corrupted copies of the audio store (``ser extract --corrupt``): after the clean test, each
    fold's test rows are evaluated once more on each, read with the ``audio`` view's options."""
    search: dict[str, list[Any]] = field(default_factory=dict)
    """Model selection on validation: dotted ``train.*`` / ``head.*`` key -> the values to try. Every
    combination (candidate) trains per fold and seed; per fold the candidate with the best validation
    ``train.select`` metric, averaged over the seeds, is chosen, and only its members touch the test
    rows (once). metrics.json records the choice per fold."""
    ensemble: bool = False
    """Also report each fold's seed ensemble: the mean of its seed members' class probabilities
    (needs two or more seeds), beside the mean ± std over seeds."""
    save_models: bool = True
    """Write every member's weights to ``models/`` (for ``ser predict``); false in a large grid saves disk
    (a fleser member is about 3 MB). Does not change the numbers or the run directory's name."""
    final: bool = False
    """Also train one deployment model on every labelled row (train and validation of every fold),
    for the number of epochs the folds chose on validation (see ``ser.fusion.final``); it is saved
    with the members in ``models/`` and is what ``ser predict`` uses by default."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation. Built from a record ([`config_from_dict`][ser.fusion.config.config_from_dict]) it starts from the
    head's paper preset; constructed in Python it is what is passed (``TrainConfig.for_head(fusion)`` for the
    preset, plain ``TrainConfig()`` for the defaults)."""
    out: str = "runs"
    """Parent folder of the run directory."""
    pinned: PinnedRun | None = field(default=None, compare=False)
    """Set by ``ser ablate`` only (``PinnedRun``): the run directory's name and the cell's batch size when
    the cell trains with a halved batch. Not part of the run's hash nor of config equality."""

    def check(self) -> None:
        """Refuse bad fit-level values by name, one line (before a fit creates anything)."""
        if not isinstance(self.seeds, list) or not self.seeds:
            raise UserError(
                f"seeds must be a non-empty list of whole numbers >= 0 (e.g. --seeds 0,1,2), not {self.seeds!r}"
            )
        for seed in self.seeds:
            require_int("every seed", seed, 0, MAX_SEED)
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds {self.seeds} repeat a seed; each seed trains one member, give each once")
        require_float("val_fraction", self.val_fraction, low=0.0, high=1.0, strict=True)
        if self.val_by not in VALIDATION_BY:
            raise UserError(f"val_by must be {' or '.join(VALIDATION_BY)}, not {self.val_by!r}")
        require_int("split_seed", self.split_seed, 0)
        if self.final and self.train.transfer_epochs:
            raise UserError(
                "--final replays one stage of training; it cannot replay train.transfer_epochs' two stages "
                "(set train.transfer_epochs=0 or drop --final)"
            )
        if self.final and self.save_models is False:
            raise UserError("--final trains a model to deploy, but --no-models saves no weights; drop one of them")
        if self.folds is not None and (
            not isinstance(self.folds, list)
            or not self.folds
            or not all(isinstance(f, str) and f.strip() for f in self.folds)
        ):
            raise UserError(f"folds must be fold names (e.g. --folds Ses01,Ses02) or all, not {self.folds!r}")
        for name in ("augmented", "ensemble", "final", "save_models"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be true or false, not {getattr(self, name)!r}")
        for name in ("head", "protocol_options", "search"):
            if not isinstance(getattr(self, name), dict):
                raise UserError(f"{name} must be a mapping (KEY: VALUE), not {getattr(self, name)!r}")
        self.train.check()

    def views(self, fold: str | None = None) -> dict[str, View]:
        """The input views, with ``{fold}`` in store paths replaced by ``fold`` when given."""

        def resolve(text: str) -> str:
            return text.replace(FOLD_PLACEHOLDER, fold) if fold is not None else text

        return {m: parse_view(resolve(v)) for m in MODALITIES if (v := getattr(self, m))}

    def per_fold(self) -> bool:
        """True when some store path holds ``{fold}`` (one store per fold)."""
        return any(FOLD_PLACEHOLDER in v for v in (self.audio, self.text, self.mocap, *self.robustness) if v)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def slug(self) -> str:
        """Readable name + hash of everything that changes the numbers (``out`` excluded)."""
        record = self.to_dict()
        record.pop("out")
        for key in ("search", "ensemble", "final"):  # off by default: runs without them keep their names
            if not record[key]:
                record.pop(key)
        record.pop("save_models")  # where the weights go, not what they are
        record.pop("pinned")  # the name of the directory, not what is in it
        names = (self.fusion, self.recipe, self.protocol, self.label_set or "default")
        parts = [safe_name(part) for part in names]
        return "-".join([*parts, config_hash(record)[:10]])


DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(name: str, choice: Any) -> None:
    """Refuse an unknown device name, or CUDA / MPS where this machine has none (torch is imported only
    when one is asked for)."""
    text = str(choice).strip().lower()
    if not isinstance(choice, str) or not DEVICE_PATTERN.match(text):
        raise UserError(f"{name} must be auto, cpu, cuda, cuda:N or mps, not {choice!r}")
    if text.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.partition(":")[2] or 0)
        if index >= count:
            raise UserError(f"{name}={choice}: this machine has {count} CUDA device(s); use auto or cpu")
    if text == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise UserError(f"{name}=mps: MPS is not available here; use auto or cpu")


def safe_name(text: str) -> str:
    """``text`` as one harmless path component: characters outside ``[A-Za-z0-9._+=,-]`` become ``_``
    and leading dots are replaced, so a label-set path such as ``../../sets.json#rv`` can never
    leave the output folder (``.._.._sets.json_rv``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+=,-]", "_", str(text))
    return re.sub(r"^\.+", lambda match: "_" * len(match.group()), cleaned) or "_"


SEARCH_SECTIONS = ("train", "head")


def parse_search(pairs: list[str]) -> dict[str, list[Any]]:
    """``--search KEY=V1,V2`` (repeatable) -> ``{KEY: [V1, V2]}``; each value is read as its field's type
    for ``train.*`` keys and by [`ser.options.read_value`][ser.options.read_value] otherwise (``1e-4``, ``true``,
    ``none``); a value list in brackets is read whole (YAML flow), for values that hold commas
    (``head.hidden=[[256],[512,256]]``).

    A key given twice is refused rather than merged or overwritten: the second flag silently replacing
    the first searched fewer values than asked, and merging would guess whether the user meant a
    correction or an addition (and in which order the candidates run); one flag per key says it."""
    space: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or not raw.strip():
            raise UserError(f"--search expects KEY=V1,V2,..., got {pair!r}")
        if key in space:
            raise UserError(f"--search {key} is given twice; give all its values in one flag: --search {key}=V1,V2,...")
        annotation = override_type(key)
        where = f"--search {key}"
        if raw.lstrip().startswith("["):
            values = read_flow(raw, where)
            if not isinstance(values, list):
                raise UserError(f"{where}: expected a list of values, got {raw!r}")
            space[key] = [value if annotation is None else coerce(value, annotation, key) for value in values]
        else:
            space[key] = [read_override(part, annotation, key) for part in raw.split(",")]
    return space


def search_candidates(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a search space, in the order given (the first key varies slowest); ``[{}]``
    for no search. Keys must be ``train.*`` or ``head.*`` with at least one value, without repeats."""
    import itertools

    if not isinstance(space, dict):
        raise UserError(f"search must map train.* / head.* keys to lists of values, not {space!r}")
    for key, values in space.items():
        section, _, name = str(key).partition(".")
        if section not in SEARCH_SECTIONS or not name or "." in name:
            raise UserError(
                f"search key {key!r}: only train.NAME and head.NAME can be searched (inputs, seeds, "
                "folds and protocols are grid axes of `ser ablate`)"
            )
        if not isinstance(values, list) or not values:
            raise UserError(f"search {key}: give a non-empty list of values")
        texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(texts)) != len(texts):
            raise UserError(f"search {key}: the values {values} repeat")
    return [dict(zip(space, point, strict=True)) for point in itertools.product(*space.values())]


def read_fit_record(path: str | Path) -> dict[str, Any]:
    """The mapping of a fit-config YAML file (``ser fit --config``); empty file -> {}."""
    record = read_yaml(path, "fit config") or {}
    if not isinstance(record, dict):
        raise UserError(
            f"{path}: a fit config is a mapping of FitConfig keys (fusion, manifest, protocol, audio, "
            "head: {...}, train: {...}, ...)"
        )
    return record


def config_from_dict(record: dict[str, Any]) -> FitConfig:
    """Build a [`FitConfig`][ser.fusion.config.FitConfig] from a (YAML) dict, refusing unknown keys by name and coercing
    every known value to its field's type (``ser.options.coerce``)."""
    known = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise UserError(f"unknown config keys {unknown}; known: {sorted(known)}")
    record = dict(record)
    train = record.pop("train", {}) or {}
    if not isinstance(train, dict):
        raise UserError(f"train must be a mapping (KEY: VALUE), not {train!r}")
    train_known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(train) - train_known)
    if bad:
        raise UserError(f"unknown train keys {bad}; known: {sorted(train_known)}")
    missing = [k for k in ("fusion", "manifest", "protocol") if not record.get(k)]
    if missing:
        raise UserError(f"the fit config needs {', '.join(missing)} (flags --fusion/--manifest/--protocol or YAML)")

    record = apply_recipe(record, train)
    train = record.pop("train")
    return FitConfig(
        **coerce_fields(FitConfig, record), train=TrainConfig(**coerce_fields(TrainConfig, train, "train"))
    )


def apply_recipe(record: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its head's recipe under it (defaults < recipe < YAML < flags < ``--set``): the
    recipe's ``train.*`` (with its values for the chosen loss) and ``head.*`` values where the record
    gives none, and its views for inputs named without one (a bare store path)."""
    name = record.get("recipe") or DEFAULT_RECIPE
    if name not in RECIPES:
        raise UserError(f"recipe must be one of {', '.join(RECIPES)}, not {name!r}")
    recipe = head_recipe(record["fusion"], name)
    head = record.get("head") or {}
    if not isinstance(head, dict):
        raise UserError(f"head must be a mapping (KEY: VALUE), not {head!r}")
    out = {**record, "recipe": name, "head": {**recipe.head, **head}}
    out["train"] = {**recipe.train_for(train.get("loss")), **train}
    for modality, options in recipe.inputs.items():
        text = record.get(modality)
        if isinstance(text, str) and text and not split_view(text)[1]:
            out[modality] = join_view(text, split_options(options))
    return out


def override_type(key: str) -> Any | None:
    """The type annotation of the field a dotted key sets (``train.lr`` -> float, ``seeds`` -> list[int]),
    None where no field type is known here (``head.*``: the head's config resolves it at fit time;
    ``protocol_options.*``: the protocol does)."""
    section, dot, name = key.partition(".")
    if not dot:
        return None if section == "train" else field_types(FitConfig).get(section)
    if section == "train" and "." not in name:
        return field_types(TrainConfig).get(name)
    return None


def read_flow(raw: str, where: str) -> Any:
    """A bracketed value (``[[256],[512,256]]``, ``{gamma: 2}``) read as YAML flow, with its text items
    read by [`ser.options.read_value`][ser.options.read_value] (``1e-3`` -> 0.001, ``none`` -> None)."""
    import yaml

    try:
        return read_values(yaml.safe_load(raw))
    except yaml.YAMLError as err:
        raise UserError(f"{where}: cannot read {raw!r} ({err})") from None


def read_override(raw: str, annotation: Any | None, name: str) -> Any:
    """The value of one ``KEY=VALUE`` text: by ``annotation`` when the field type is known, else by
    [`ser.options.read_value`][ser.options.read_value]; bracketed lists and mappings are read whole
    ([`read_flow`][ser.fusion.config.read_flow])."""
    if raw.strip()[:1] in ("[", "{"):
        value = read_flow(raw, f"--set {name}")
        return value if annotation is None else coerce(value, annotation, name)
    return read_value(raw) if annotation is None else coerce(raw, annotation, name)


def apply_overrides(record: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """Apply ``--set key=value`` overrides (dotted keys into nested dicts); each value is read by the
    type of the field it sets ([`read_override`][ser.fusion.config.read_override])."""
    record = json.loads(json.dumps(record))
    for pair in pairs:
        key, raw = split_pair(pair, "--set")
        set_dotted(record, key, read_override(raw, override_type(key), key), where=f"--set {key}")
    return record


def set_dotted(record: dict[str, Any], key: str, value: Any, *, where: str) -> None:
    """``record["train"]["lr"] = value`` for ``key = "train.lr"`` (sections created as needed)."""
    target = record
    *parents, leaf = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise UserError(f"{where}: {part} is not a section")
    target[leaf] = value
