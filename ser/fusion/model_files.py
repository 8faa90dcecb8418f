"""Model files of a run: every trained member with what inference needs, loaded without unpickling.

``<run>/models/``:

``index.json``                  format version, head, classes, label set, per input its view and the
                                store's records (extractor name / preset / config / config hash,
                                upstream model, the dtypes features were stored in), and one entry
                                per member (fold, seed, file, head options, training settings)
``<fold>-seed<seed>.safetensors``  a neural member: head weights (``model.*``), loss parameters
                                (``loss.*``: margin-loss class weights, centres) and the training
                                rows' z-scoring statistics (``standardizer.<modality>.mean|std``)
``<fold>-seed<seed>.skops``     a classic member (logreg, svm): the scikit-learn estimator and its
                                ``StandardScaler``, in skops' format (no pickle: a file naming any
                                type outside skops' default trust is refused unread, and the loaded
                                objects must be exactly these)
``final-seed<seed>.*``          with ``ser fit --final``: one model trained on every labelled row

safetensors holds plain tensors only, so loading a member never runs code from the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ser.atomic_files import atomic_path, write_json
from ser.errors import UserError
from ser.fusion.classic import ClassicPredictor
from ser.fusion.config import TrainConfig
from ser.fusion.data import Standardizer
from ser.fusion.heads import head_module
from ser.fusion.index_schema import IndexSchemaError, check_index
from ser.fusion.losses import build_loss
from ser.fusion.train import FusionModel, TorchPredictor
from ser.manifests.schema import file_sha256

logger = logging.getLogger(__name__)

MODEL_FORMAT = 1
"""Version of the layout above; a run written with another version is refused by name."""
MODELS_DIR = "models"
INDEX_NAME = "index.json"
FINAL = "final"
"""Fold name of the model ``ser fit --final`` trains on every labelled row."""

CLASSIC_TYPES = ("LogisticRegression", "SVC")
"""The estimators a classic member file may hold (with a ``StandardScaler`` or no scaler)."""


class ModelFileError(UserError):
    """A run directory's model files are missing, from another format or damaged."""


def member_name(fold: str, seed: int) -> str:
    """File stem of a member: ``Actor_01-seed0`` (characters outside ``[A-Za-z0-9._-]`` become ``_``)."""
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', fold)}-seed{seed}"


def save_member(models_dir: Path, name: str, predictor: Any) -> str:
    """Write one member's weights; returns the file name (relative to ``models_dir``)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(predictor, ClassicPredictor):
        import skops.io

        path = models_dir / f"{name}.skops"
        with atomic_path(path) as tmp:
            skops.io.dump({"estimator": predictor.estimator, "scaler": predictor.scaler}, tmp)
        return path.name
    assert isinstance(predictor, TorchPredictor)
    tensors = {f"model.{k}": v for k, v in predictor.model.state_dict().items()}
    tensors |= {f"loss.{k}": v for k, v in predictor.loss_fn.state_dict().items()}
    if predictor.standardizer is not None:
        for modality in predictor.standardizer.mean:
            tensors[f"standardizer.{modality}.mean"] = torch.from_numpy(predictor.standardizer.mean[modality])
            tensors[f"standardizer.{modality}.std"] = torch.from_numpy(predictor.standardizer.std[modality])
    # clone: safetensors refuses tensors that share memory (tied weights are stored twice, loaded strictly)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    path = models_dir / f"{name}.safetensors"
    with atomic_path(path) as tmp:
        _save_safetensors(tensors, tmp)
    return path.name


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors' ``save_file``, its I/O failures (a full disk) raised as the ``OSError`` they are."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata={"format": str(MODEL_FORMAT)})
    except SafetensorError as err:
        code = re.search(r"os error (\d+)", str(err))
        raise OSError(int(code.group(1)) if code else errno.EIO, str(err), str(path)) from err


def member_record(
    *,
    name: str,
    fold: str,
    seed: int,
    file: str,
    engine: str,
    head_options: dict[str, Any],
    train: TrainConfig,
    candidate: dict[str, Any],
    best_epoch: int,
    rows: int,
) -> dict[str, Any]:
    """The ``index.json`` entry of one member."""
    return {
        "name": name,
        "fold": fold,
        "seed": seed,
        "file": file,
        "engine": engine,
        "head_options": head_options,
        "train": asdict(train),
        "candidate": candidate,
        "best_epoch": best_epoch,
        "training_rows": rows,
    }


def write_index(models_dir: Path, index: dict[str, Any]) -> None:
    """Write ``index.json`` (atomically) with the format version; each member's record gets the SHA-256 of
    its file (``sha256``) and of what the index says about it (``binding``: classes, inputs, its record),
    which [`load_member`][ser.fusion.model_files.load_member] checks."""
    models_dir.mkdir(parents=True, exist_ok=True)
    index = _as_json(index)
    for member in _all_members(index):
        member["sha256"] = file_sha256(models_dir / member["file"])
        member["binding"] = _binding(index, member)
    write_json(models_dir / INDEX_NAME, {"format": MODEL_FORMAT, **index}, indent=1, default=str)


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from ``index.json`` (what ``default=str`` writes)."""
    return json.loads(json.dumps(value, default=str))


def _all_members(index: dict[str, Any]) -> list[dict[str, Any]]:
    """Every member record of an index: the fold members and the final model."""
    members = [m for m in index.get("members") or [] if isinstance(m, dict)]
    final = index.get("final")
    return members + ([final] if isinstance(final, dict) else [])


def _binding(index: dict[str, Any], member: dict[str, Any]) -> str:
    """SHA-256 of what the index says one member is: classes, head, inputs and its own record (file digest
    included), so an edited index (classes reordered, ``normalize`` flipped, another file) is caught."""
    said = {
        "classes": index.get("classes"),
        "fusion": index.get("fusion"),
        "inputs": member.get("inputs") or index.get("inputs"),
        "member": {k: v for k, v in member.items() if k != "binding"},
    }
    return hashlib.sha256(json.dumps(said, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _check_file_name(run_dir: Path, member: dict[str, Any]) -> None:
    """A member's ``file`` must be a plain file name inside the run's ``models/`` (no folder, no ``..``)."""
    name = member.get("file")
    if (
        not isinstance(name, str)
        or not name
        or "/" in name
        or "\\" in name
        or name in (".", "..")
        or (Path(name).is_absolute())
    ):
        raise ModelFileError(
            f"{run_dir / MODELS_DIR / INDEX_NAME}: member {member.get('name')!r} names file {name!r}, which is not a "
            f"plain file name inside {MODELS_DIR}/; restore the run's index.json or fit the run again"
        )


def read_index(run_dir: Path) -> dict[str, Any]:
    """The ``models/index.json`` of a run directory, checked for completeness, format version and, once, against
    the schema of every field the loader and predictor read ([`check_index`][ser.fusion.index_schema.check_index])."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModelFileError(f"{run_dir} is not a run directory (no such folder); pass a folder written by ser fit")
    index_path = run_dir / MODELS_DIR / INDEX_NAME
    if not (run_dir / "metrics.json").is_file():
        raise ModelFileError(
            f"{run_dir} is not a finished run (no metrics.json): the fit did not complete, or the "
            "folder is not a ser fit run directory"
        )
    if not index_path.is_file():
        raise ModelFileError(
            f"{run_dir} has no model files ({MODELS_DIR}/{INDEX_NAME}): it was written by an older "
            "ser that saved no weights; run the same ser fit again to get them"
        )
    try:
        loaded = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFileError(f"{index_path} cannot be read ({err}); run ser fit again") from err
    except RecursionError:
        raise ModelFileError(
            f"{index_path} is not a run's index (its JSON nests deeper than Python can read); restore the run's "
            "index.json or fit the run again"
        ) from None
    if not isinstance(loaded, dict):
        raise ModelFileError(f"{index_path} holds no JSON object; run ser fit again")
    index: dict[str, Any] = loaded
    if index.get("format") != MODEL_FORMAT:
        raise ModelFileError(
            f"{index_path} is model format {index.get('format')!r}; this ser reads format "
            f"{MODEL_FORMAT}: use the ser version that wrote the run, or fit it again"
        )
    if index.get("saved") is False:
        raise ModelFileError(
            f"{run_dir} was fitted with --no-models (save_models: false): it holds no weights; fit "
            "it again without that option to use it for prediction"
        )
    members = index.get("members")
    if not isinstance(members, list) or not (members or isinstance(index.get("final"), dict)):
        raise ModelFileError(
            f'{index_path} lists no members ("members": {members!r}, no final model): there is nothing to '
            "predict with; restore the run's index.json or fit the run again"
        )
    try:
        check_index(index)
    except IndexSchemaError as err:
        raise ModelFileError(f"{index_path}: {err}") from None
    for member in _all_members(index):
        _check_file_name(run_dir, member)
        if not (run_dir / MODELS_DIR / member["file"]).is_file():
            raise ModelFileError(
                f"{run_dir / MODELS_DIR / member['file']} is missing (member {member['name']}); "
                "the run directory is incomplete: copy it whole or fit again"
            )
    return index


def _train_config(record: dict[str, Any]) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in record.items() if k in known})


def load_member(models_dir: Path, index: dict[str, Any], member: dict[str, Any], device: torch.device) -> Any:
    """A member as a predictor with ``probabilities(data, rows)``: a [`TorchPredictor`][ser.fusion.train.TorchPredictor]
    (weights read from safetensors, strictly) or a [`ClassicPredictor`][ser.fusion.classic.ClassicPredictor] (skops,
    allow-listed types only)."""
    path = models_dir / member["file"]
    _check_integrity(path, index, member)
    if member["engine"] == "sklearn":
        classic = _load_classic(path)
        dim = sum(int(spec["dim"]) for spec in index["inputs"].values())
        check_classic(path, classic, len(index["classes"]), _train_config(member["train"]).normalize, dim)
        return classic
    cfg = _train_config(member["train"])
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"{path} cannot be read ({err}); fit the run again") from err
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(
                f"{path}: {key} holds non-finite values (NaN or infinity); restore the file or fit the run again"
            )
    inputs = index["inputs"]
    dims = {m: int(spec["dim"]) for m, spec in inputs.items()}
    n_classes = len(index["classes"])
    head = head_module(index["fusion"]).build(dims, n_classes, **member["head_options"])
    model = FusionModel(head, {m: int(spec["n_layers"]) for m, spec in inputs.items()})
    weights = torch.ones(n_classes) if cfg.class_weighted else None  # the stored values replace these
    loss_fn = build_loss(cfg.loss, n_classes, getattr(head, "feature_dim", 0), weights, **cfg.loss_options)
    said = f"fusion {index['fusion']}, input dims {dims}, head options {member['head_options']}"
    for prefix, module in (("model.", model), ("loss.", loss_fn)):
        _check_shapes(path, said, prefix, module.state_dict(), _section(tensors, prefix))
    try:
        model.load_state_dict(_section(tensors, "model."), strict=True)
        loss_fn.load_state_dict(_section(tensors, "loss."), strict=True)
    except RuntimeError as err:
        raise ModelFileError(
            f"{path} does not fit the head recorded in {INDEX_NAME} ({' '.join(str(err).split())}); "
            f"restore the run's {INDEX_NAME} or fit the run again"
        ) from err
    standardizer = None
    if cfg.normalize:
        pooled = [m for m, spec in inputs.items() if spec["view"]["kind"] == "pooled"]
        for m in pooled:
            if f"standardizer.{m}.mean" not in tensors or f"standardizer.{m}.std" not in tensors:
                raise ModelFileError(
                    f"{path} holds no z-scoring statistics for {m}, but {INDEX_NAME} says normalize: true; "
                    "restore the file or fit the run again"
                )
            for stat in ("mean", "std"):
                shape = tuple(tensors[f"standardizer.{m}.{stat}"].shape)
                if not shape or shape[-1] != dims[m]:
                    raise ModelFileError(
                        f"{path}: standardizer.{m}.{stat} has shape {shape}, but {INDEX_NAME} says inputs.{m}.dim "
                        f"is {dims[m]}; restore the run's {INDEX_NAME} or fit the run again"
                    )
            if not bool((tensors[f"standardizer.{m}.std"] > 0).all()):
                raise ModelFileError(
                    f"{path}: standardizer.{m}.std holds zero or negative values (training floors it above 0); "
                    "restore the file or fit the run again"
                )
        standardizer = Standardizer(
            {m: tensors[f"standardizer.{m}.mean"].numpy() for m in pooled},
            {m: tensors[f"standardizer.{m}.std"].numpy() for m in pooled},
        )
    elif any(k.startswith("standardizer.") for k in tensors):
        raise ModelFileError(
            f"{path} holds z-scoring statistics, but {INDEX_NAME} says normalize: false; restore the run's "
            f"{INDEX_NAME} or fit the run again"
        )
    return TorchPredictor(model.to(device), loss_fn.to(device), standardizer, cfg, device)


def _check_shapes(
    path: Path, said: str, prefix: str, wanted: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]
) -> None:
    """The tensors of one section (``model.``, ``loss.``) of a member file against those of the head the index
    describes (``said``): the same names and shapes, or one line naming the first that differs."""
    missing = sorted(set(wanted) - set(stored))
    extra = sorted(set(stored) - set(wanted))
    wrong = [k for k in wanted if k in stored and tuple(wanted[k].shape) != tuple(stored[k].shape)]
    if missing:
        what = f"has no {prefix}{missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    elif extra:
        what = f"holds {prefix}{extra[0]}, which that head has not" + (
            f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        )
    elif wrong:
        key = wrong[0]
        what = (
            f"holds {prefix}{key} of shape {tuple(stored[key].shape)}, where that head has {tuple(wanted[key].shape)}"
        )
    else:
        return
    raise ModelFileError(
        f"{path} does not fit the head {INDEX_NAME} describes ({said}): the file {what}; restore the run's "
        f"{INDEX_NAME} or fit the run again"
    )


def _check_integrity(path: Path, index: dict[str, Any], member: dict[str, Any]) -> None:
    """The member file's SHA-256 and the index's account of it against what the fit recorded; a run written
    before the digests existed is accepted with a warning."""
    recorded = member.get("sha256")
    if recorded is None:
        logger.warning(
            "%s: %s records no SHA-256 for this member (a run written by an older ser); its file and record "
            "cannot be checked; fit the run again to get checked model files",
            path,
            INDEX_NAME,
        )
        return
    actual = file_sha256(path)
    if actual != recorded:
        raise ModelFileError(
            f"{path} is not the file the fit saved for member {member.get('name')!r} (SHA-256 {actual[:12]}..., "
            f"recorded {str(recorded)[:12]}...); restore the file from the run as written, or fit the run again"
        )
    if member.get("binding") != _binding(index, member):
        raise ModelFileError(
            f"{path.parent / INDEX_NAME} was changed after the fit for member {member.get('name')!r} (classes, "
            f"inputs or training settings differ from those its file {path.name} was saved with); restore the "
            "run's index.json, or fit the run again"
        )


def _load_classic(path: Path) -> ClassicPredictor:
    """A classic member from its skops file: refused before loading when the file names any type skops
    does not trust by default (skops then builds only scikit-learn, numpy and builtin containers, no
    callables), and after loading unless it is exactly a logreg / SVC estimator and its scaler."""
    import skops.io
    from sklearn.preprocessing import StandardScaler

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
        if untrusted:
            raise ModelFileError(
                f"{path} names types outside the allow-list ({', '.join(untrusted)}); refusing to load it"
            )
        saved = skops.io.load(path)
    except ModelFileError:
        raise
    except Exception as err:  # a damaged zip or schema: say which file
        raise ModelFileError(f"{path} cannot be loaded ({type(err).__name__}: {err}); fit the run again") from err
    estimator = saved.get("estimator") if isinstance(saved, dict) else None
    scaler = saved.get("scaler") if isinstance(saved, dict) else None
    if type(estimator).__name__ not in CLASSIC_TYPES or not (scaler is None or type(scaler) is StandardScaler):
        raise ModelFileError(
            f"{path} holds {type(estimator).__name__} / {type(scaler).__name__}, outside the "
            f"allow-list ({', '.join(CLASSIC_TYPES)} with a StandardScaler); refusing to use it"
        )
    return ClassicPredictor(estimator, scaler, {})


FITTED = {
    "LogisticRegression": ("classes_", "coef_", "intercept_", "n_features_in_"),
    "SVC": ("classes_", "support_vectors_", "n_features_in_"),
    "StandardScaler": ("n_features_in_",),
}
"""The fitted attributes each allow-listed type must hold for prediction."""


def check_classic(
    path: Path, classic: ClassicPredictor, n_classes: int, normalize: bool, dim: int | None = None
) -> None:
    """A loaded classic member against its index record: every fitted attribute present (``FITTED``), the
    estimator's ``classes_`` distinct sorted indices into the index's ``n_classes`` classes, a scaler present
    exactly when ``normalize``, the feature count of estimator and scaler ``dim`` (the sum of the index's input
    dims, when given), every fitted array finite."""
    estimator, scaler = classic.estimator, classic.scaler
    for owner in (estimator, scaler):
        absent = [a for a in FITTED.get(type(owner).__name__, ()) if a not in vars(owner)] if owner is not None else []
        if absent:
            raise ModelFileError(
                f"{path}: the {type(owner).__name__} has no {', '.join(absent)} (it is not a fitted model); "
                "restore the file or fit the run again"
            )
    classes = np.asarray(estimator.classes_)
    if (
        classes.ndim != 1
        or not np.issubdtype(classes.dtype, np.integer)
        or len(set(classes.tolist())) != len(classes)
        or list(classes) != sorted(classes.tolist())
        or (len(classes) and (classes.min() < 0 or classes.max() >= n_classes))
    ):
        raise ModelFileError(
            f"{path}: the estimator's classes_ {classes.tolist()} are not distinct sorted indices into the "
            f"{n_classes} classes of {INDEX_NAME}; restore the file or fit the run again"
        )
    if (scaler is not None) != normalize:
        raise ModelFileError(
            f"{path} holds {'a' if scaler is not None else 'no'} StandardScaler, but {INDEX_NAME} says "
            f"normalize: {str(normalize).lower()}; restore the file and {INDEX_NAME}, or fit the run again"
        )
    if dim is not None:
        _check_classic_dims(path, estimator, scaler, dim, len(classes))
    for owner in (estimator, scaler):
        for attr, value in (vars(owner) if owner is not None else {}).items():
            if attr.endswith("_") and _non_finite(value):
                raise ModelFileError(
                    f"{path}: {type(owner).__name__}.{attr} holds non-finite values (NaN or infinity); restore "
                    "the file or fit the run again"
                )
    if scaler is not None and getattr(scaler, "scale_", None) is not None and not bool(np.all(scaler.scale_ > 0)):
        raise ModelFileError(f"{path}: the StandardScaler's scale_ holds zero; restore the file or fit the run again")


def _check_classic_dims(path: Path, estimator: Any, scaler: Any, dim: int, n_fitted: int) -> None:
    """Every per-feature array of the estimator and scaler against the index's input width ``dim``, and the
    per-class rows of ``coef_`` / ``intercept_`` against the estimator's ``n_fitted`` classes."""
    rows = n_fitted if n_fitted > 2 else 1  # a binary linear model keeps one row
    expected: list[tuple[Any, str, tuple[int | None, ...]]] = [
        (estimator, "coef_", (rows, dim)),
        (estimator, "intercept_", (rows,)),
        (estimator, "support_vectors_", (None, dim)),
        (scaler, "mean_", (dim,)),
        (scaler, "scale_", (dim,)),
        (scaler, "var_", (dim,)),
    ]
    for owner in (estimator, scaler):
        count = vars(owner).get("n_features_in_") if owner is not None else None
        if count is not None and count != dim:
            raise ModelFileError(
                f"{path}: the {type(owner).__name__}'s n_features_in_ is {count!r}, but the inputs of "
                f"{INDEX_NAME} give {dim} features; restore the file and {INDEX_NAME}, or fit the run again"
            )
    for owner, attr, shape in expected:
        value = vars(owner).get(attr) if owner is not None else None
        if value is None:
            continue
        got = tuple(np.shape(value))
        if len(got) != len(shape) or any(
            want is not None and want != have for want, have in zip(shape, got, strict=True)
        ):
            wanted = (
                "("
                + ", ".join("N" if want is None else str(want) for want in shape)
                + ("," if len(shape) == 1 else "")
                + ")"
            )
            raise ModelFileError(
                f"{path}: the {type(owner).__name__}'s {attr} has shape {got}, but {INDEX_NAME} (input width "
                f"{dim}, {n_fitted} fitted classes) needs {wanted}; restore the file and {INDEX_NAME}, or fit the "
                "run again"
            )


def _non_finite(value: Any) -> bool:
    """Whether a fitted attribute (a float, or an array of floats) holds NaN or infinity."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        return not bool(np.isfinite(value).all())
    return False


def _section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def input_record(modality: Any) -> dict[str, Any]:
    """The ``index.json`` entry of one input (a [`ModalityData`][ser.fusion.data.ModalityData])."""
    view = modality.view
    return {
        "view": {"kind": view.kind, "stat": view.stat, "layer": view.layer},
        "described": view.describe(),
        "dim": modality.dim,
        "n_layers": modality.n_layers,
        **modality.records,
    }


def as_float32(values: np.ndarray, stored_dtype: str) -> np.ndarray:
    """Features as training read them: rounded to the store's dtype (sequences are float16 by default),
    then float32."""
    return np.asarray(values).astype(stored_dtype, copy=False).astype(np.float32, copy=False)
