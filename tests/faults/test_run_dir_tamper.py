"""Tampered run directories (issue 25, item 17): every field of ``models/index.json`` the loader and predictor read
is checked once on load, so a deleted, mistyped or out-of-range field, deep JSON, a dim or layer the extractor has
not, and a skops member whose arrays disagree with the index are refused in one line naming the file and field, by
``load_model`` and by ``ser predict`` (exit 2, no traceback), even when the member digests were deleted."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.fusion.model_files import INDEX_NAME, MODELS_DIR, ModelFileError, _load_classic, write_index
from ser.predict.model import load_model


def _index(run: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run / MODELS_DIR / INDEX_NAME).read_text(encoding="utf-8"))
    return loaded


def _write_raw(run: Path, index: dict[str, Any]) -> None:
    (run / MODELS_DIR / INDEX_NAME).write_text(json.dumps(index), encoding="utf-8")


def _unbound(index: dict[str, Any]) -> dict[str, Any]:
    """The index without member digests, so only the schema can catch the edit."""
    for member in index["members"]:
        member.pop("sha256", None)
        member.pop("binding", None)
    return index


def _set_layer(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda index: index["inputs"]["audio"]["view"].__setitem__("layer", value)


EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no-engine": (lambda index: index["members"][0].pop("engine"), r"members\[0\]\.engine is None"),
    "other-engine": (lambda index: index["members"][0].__setitem__("engine", "sklearn"), r"members\[0\]\.engine"),
    "no-head-options": (lambda index: index["members"][0].pop("head_options"), r"members\[0\]\.head_options is None"),
    "unknown-head-option": (
        lambda index: index["members"][0].__setitem__("head_options", {"bogus": 1}),
        r"members\[0\]\.head_options \{'bogus': 1\}",
    ),
    "no-standardizer-setting": (
        lambda index: index["members"][0]["train"].__setitem__("normalize", "yes"),
        r"members\[0\]\.train: train\.normalize must be true or false",
    ),
    "seed-text": (lambda index: index["members"][0].__setitem__("seed", "0"), r"members\[0\]\.seed is '0'"),
    "no-inputs": (lambda index: index.__setitem__("inputs", {}), r"inputs is \{\}"),
    "unknown-head": (lambda index: index.__setitem__("fusion", "nope"), r"fusion is 'nope'"),
    "classes-repeated": (lambda index: index.__setitem__("classes", ["a", "a"]), r"classes is \['a', 'a'\]"),
    "view-kind": (
        lambda index: index["inputs"]["audio"]["view"].__setitem__("kind", "frames"),
        r"inputs\.audio\.view\.kind is 'frames'",
    ),
    "layer-word": (_set_layer("middle"), r"inputs\.audio\.view\.layer is 'middle'"),
    "layer-number-type": (_set_layer(3.5), r"inputs\.audio\.view\.layer is 3\.5"),
    "layer-out-of-range": (_set_layer("5"), r"inputs\.audio\.view\.layer is '5', but extractor egemaps gives 1 layer"),
    "dim-zero": (lambda index: index["inputs"]["audio"].__setitem__("dim", 0), r"inputs\.audio\.dim is 0"),
    "dim-changed": (
        lambda index: index["inputs"]["audio"].__setitem__("dim", 87),
        r"inputs\.audio\.dim is 87, but extractor egemaps gives 88-dim",
    ),
}


def _tamper(source: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None], *, unbind: bool) -> Path:
    run = tmp_path / "run"
    shutil.copytree(source, run)
    index = _index(run)
    edit(index)
    _write_raw(run, _unbound(index) if unbind else index)
    return run


def _assert_refused(run: Path, clip: Path, match: str) -> None:
    with pytest.raises(ModelFileError, match=match) as caught:
        load_model(run)
    message = str(caught.value)
    assert "\n" not in message
    assert "fit the run again" in message
    assert str(run / MODELS_DIR) in message
    result = CliRunner().invoke(app, ["predict", str(run), str(clip), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "fit the run again" in lines[0]


@pytest.mark.parametrize("case", list(EDITS))
def test_tampered_index_is_refused_by_field(tone_model: tuple[Path, Path], tmp_path: Path, case: str) -> None:
    edit, match = EDITS[case]
    run = _tamper(tone_model[0], tmp_path, edit, unbind=True)
    _assert_refused(run, tone_model[1], match)


def test_schema_runs_before_the_binding_check(tone_model: tuple[Path, Path], tmp_path: Path) -> None:
    edit, match = EDITS["no-engine"]
    run = _tamper(tone_model[0], tmp_path, edit, unbind=False)
    assert "binding" in _index(run)["members"][0]
    _assert_refused(run, tone_model[1], match)


def test_deeply_nested_index_is_refused(tone_model: tuple[Path, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tone_model[0], run)
    depth = 200_000
    (run / MODELS_DIR / INDEX_NAME).write_text('{"format": 1, "x": ' + "[" * depth + "]" * depth + "}")
    _assert_refused(run, tone_model[1], r"index\.json is not a run's index \(its JSON nests deeper")


def test_untampered_runs_still_load(tone_model: tuple[Path, Path], tone_logreg_run: Path) -> None:
    assert load_model(tone_model[0]).predict(tone_model[1]).label is not None
    assert load_model(tone_logreg_run).predict(tone_model[1]).label is not None


def _drop_classes(estimator: Any, scaler: Any) -> None:
    del estimator.classes_


def _narrow_coef(estimator: Any, scaler: Any) -> None:
    estimator.coef_ = estimator.coef_[:, :-1]


def _wrong_feature_count(estimator: Any, scaler: Any) -> None:
    estimator.n_features_in_ = 87


def _short_scaler_mean(estimator: Any, scaler: Any) -> None:
    scaler.mean_ = scaler.mean_[:-1]


SKOPS_EDITS = {
    "classes-missing": (_drop_classes, r"LogisticRegression has no classes_"),
    "coef-shape": (_narrow_coef, r"LogisticRegression's coef_ has shape \(\d+, 87\).*input width 88"),
    "n-features-in": (_wrong_feature_count, r"LogisticRegression's n_features_in_ is 87.*give 88 features"),
    "scaler-mean": (_short_scaler_mean, r"StandardScaler's mean_ has shape \(87,\).*needs \(88,\)"),
}


@pytest.mark.parametrize("case", list(SKOPS_EDITS))
def test_classic_member_disagreeing_with_index_is_refused(
    tone_model: tuple[Path, Path], tone_logreg_run: Path, tmp_path: Path, case: str
) -> None:
    """The member file is rewritten and its digests re-recorded (as a fit that wrote it would), so the
    check of the loaded estimator against the index is what refuses it."""
    import skops.io

    edit, match = SKOPS_EDITS[case]
    run = tmp_path / "run"
    shutil.copytree(tone_logreg_run, run)
    index = _index(run)
    path = run / MODELS_DIR / index["members"][0]["file"]
    classic = _load_classic(path)
    assert classic.scaler is not None
    edit(classic.estimator, classic.scaler)
    skops.io.dump({"estimator": classic.estimator, "scaler": classic.scaler}, path)
    index.pop("format")
    write_index(run / MODELS_DIR, index)
    with pytest.raises(ModelFileError, match=match) as caught:
        load_model(run)
    assert path.name in str(caught.value) and "\n" not in str(caught.value)
    result = CliRunner().invoke(app, ["predict", str(run), str(tone_model[1]), "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1, result.output


def test_weights_of_another_width_are_refused_in_one_line(tone_model: tuple[Path, Path], tmp_path: Path) -> None:
    """A member file whose first layer is narrower than the index's input dim: one line naming the tensor."""
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(tone_model[0], run)
    index = _index(run)
    path = run / MODELS_DIR / index["members"][0]["file"]
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.startswith("model.") and tensors[k].ndim == 2 and tensors[k].shape[1] == 88)
    tensors[key] = tensors[key][:, :87].clone()
    save_file(tensors, str(path))
    index.pop("format")
    write_index(run / MODELS_DIR, index)
    with pytest.raises(ModelFileError, match=rf"the file holds {key} of shape \(\d+, 87\), where that head has") as err:
        load_model(run)
    assert "\n" not in str(err.value)
