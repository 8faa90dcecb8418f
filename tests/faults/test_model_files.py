"""Model files checked against ``index.json`` (issue 25, items 5 and 6): each member's file carries its SHA-256
and the index's account of it, member paths stay inside ``models/``, an empty member list and non-finite
weights or statistics are refused at load, and non-finite probabilities become an error row, never a label."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ser.fusion.model_files import INDEX_NAME, MODELS_DIR, ModelFileError, _load_classic, check_classic, write_index
from ser.predict.model import load_model


def _copy(tone_model: tuple[Path, Path], tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tone_model[0], run)
    return run


def _index(run: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run / MODELS_DIR / INDEX_NAME).read_text(encoding="utf-8"))
    return loaded


def _write_raw(run: Path, index: dict[str, Any]) -> None:
    (run / MODELS_DIR / INDEX_NAME).write_text(json.dumps(index), encoding="utf-8")


def _refit_index(run: Path) -> None:
    """Re-record the digests, as a fit that wrote the (tampered) files itself would."""
    index = _index(run)
    index.pop("format")
    write_index(run / MODELS_DIR, index)


def _member_file(run: Path) -> Path:
    return run / MODELS_DIR / _index(run)["members"][0]["file"]


def test_index_records_each_member_file_digest(tone_model: tuple[Path, Path]) -> None:
    import hashlib

    run, _ = tone_model
    member = _index(run)["members"][0]
    assert member["sha256"] == hashlib.sha256((run / MODELS_DIR / member["file"]).read_bytes()).hexdigest()
    assert len(member["binding"]) == 64


def test_changed_member_file_is_refused_naming_it(tone_model: tuple[Path, Path], tmp_path: Path) -> None:
    run = _copy(tone_model, tmp_path)
    path = _member_file(run)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    key = next(k for k in tensors if k.startswith("model."))
    tensors[key] = tensors[key] + 0.5  # another fold's weights: same shapes, other values
    save_file(tensors, str(path))
    with pytest.raises(ModelFileError, match=rf"{path.name} is not the file the fit saved.*restore the file"):
        load_model(run)


def test_reordered_classes_in_index_are_refused(tone_model: tuple[Path, Path], tmp_path: Path) -> None:
    run = _copy(tone_model, tmp_path)
    index = _index(run)
    index["classes"] = index["classes"][::-1]
    _write_raw(run, index)
    with pytest.raises(ModelFileError, match="changed after the fit"):
        load_model(run)


def test_normalize_flipped_in_index_is_refused(tone_model: tuple[Path, Path], tmp_path: Path) -> None:
    run = _copy(tone_model, tmp_path)
    index = _index(run)
    index["members"][0]["train"]["normalize"] = False
    _write_raw(run, index)
    with pytest.raises(ModelFileError, match="changed after the fit"):
        load_model(run)
    _refit_index(run)  # even with the digests re-recorded, the file's statistics contradict the index
    with pytest.raises(ModelFileError, match="normalize: false"):
        load_model(run)


@pytest.mark.parametrize("name", ["../x.safetensors", "/tmp/x.safetensors", "sub/x.safetensors", ".."])
def test_member_path_outside_models_is_refused(tone_model: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    run = _copy(tone_model, tmp_path)
    shutil.copy(_member_file(run), run / "x.safetensors")
    index = _index(run)
    index["members"][0]["file"] = name
    _write_raw(run, index)
    with pytest.raises(ModelFileError, match="not a plain file name inside models/"):
        load_model(run)


def test_run_without_digests_loads_with_warning(
    tone_model: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _copy(tone_model, tmp_path)
    index = _index(run)
    for member in index["members"]:
        del member["sha256"], member["binding"]
    _write_raw(run, index)
    with caplog.at_level(logging.WARNING):
        old = load_model(run).predict(tone_model[1])
    assert "records no SHA-256" in caplog.text
    new = load_model(tone_model[0]).predict(tone_model[1])
    assert old.label == new.label
    assert old.probabilities == pytest.approx(new.probabilities)


def test_index_without_members_is_refused(tone_model: tuple[Path, Path], tmp_path: Path) -> None:
    run = _copy(tone_model, tmp_path)
    index = _index(run)
    index["members"] = []
    _write_raw(run, index)
    with pytest.raises(ModelFileError, match="lists no members"):
        load_model(run)


@pytest.mark.parametrize("what", ["weights", "zero-std", "nan-std"])
def test_non_finite_weights_or_statistics_are_refused(tone_model: tuple[Path, Path], tmp_path: Path, what: str) -> None:
    from safetensors.torch import load_file, save_file

    run = _copy(tone_model, tmp_path)
    path = _member_file(run)
    tensors = load_file(str(path))
    if what == "weights":
        key = next(k for k in tensors if k.startswith("model.") and k.endswith("weight"))
        tensors[key][0] = float("nan")
        expect = rf"{key} holds non-finite"
    else:
        key = next(k for k in tensors if k.endswith(".std"))
        tensors[key][0] = 0.0 if what == "zero-std" else float("nan")
        expect = "zero or negative" if what == "zero-std" else rf"{key} holds non-finite"
    save_file(tensors, str(path))
    _refit_index(run)
    with pytest.raises(ModelFileError, match=expect):
        load_model(run)


def test_non_finite_probabilities_become_an_error_row(tone_model: tuple[Path, Path]) -> None:
    run, clip = tone_model
    model = load_model(run)

    class NaNPredictor:
        def probabilities(self, data: Any, rows: np.ndarray) -> np.ndarray:
            return np.full((len(rows), len(model.classes)), np.nan)

    model._predictors = [NaNPredictor()]
    answer = model.predict(clip, on_error="record")
    assert answer.label is None
    assert answer.probabilities == {}
    assert "not finite" in (answer.error or "")
    row = answer.row(model.classes)
    json.dumps(row, allow_nan=False)  # raises on a bare NaN


def _skops(tmp_path: Path, *, scaler: bool, classes: list[int] | None = None, nan: bool = False) -> Path:
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.random.default_rng(0).normal(size=(30, 4))
    y = np.arange(30) % 3
    estimator = LogisticRegression().fit(x, y)
    if classes is not None:
        estimator.classes_ = np.asarray(classes)
    if nan:
        estimator.coef_[0, 0] = np.nan
    path = tmp_path / "m.skops"
    skops.io.dump({"estimator": estimator, "scaler": StandardScaler().fit(x) if scaler else None}, path)
    return path


def _check(path: Path, n_classes: int) -> None:
    check_classic(path, _load_classic(path), n_classes, True)


def test_classic_file_checked_against_index(tmp_path: Path) -> None:
    _check(_skops(tmp_path, scaler=True), 3)
    with pytest.raises(ModelFileError, match="classes_"):
        _check(_skops(tmp_path, scaler=True, classes=[2, 1, 0]), 3)
    with pytest.raises(ModelFileError, match="classes_"):
        _check(_skops(tmp_path, scaler=True), 2)  # index lists fewer classes than the file
    with pytest.raises(ModelFileError, match=r"no StandardScaler.*normalize: true"):
        _check(_skops(tmp_path, scaler=False), 3)
    with pytest.raises(ModelFileError, match="coef_ holds non-finite"):
        _check(_skops(tmp_path, scaler=True, nan=True), 3)
