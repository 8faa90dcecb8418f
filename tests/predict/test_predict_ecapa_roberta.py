"""``ser predict`` rebuilds an ECAPA-TDNN extractor and a RoBERTa extractor with a seeded pooler from a run's
records, and refuses a different upstream.

A tiny random ECAPA in SpeechBrain's folder layout and a tiny random RoBERTa without pooler weights (as the
released checkpoints) are read by the real loading code; their stores (84 real RAVDESS clips, the RoBERTa
pooler seeded with 3) train an audio-only ``mlp`` and a ``serfuse`` head on text + audio, and predicting the
fold's test rows must give the fit's own test probabilities.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cli import app
from tests.fakes.demo import demo_corpus, demo_manifest

SEED = 3
"""The RoBERTa store's ``pooler_seed`` (not the default 0)."""
TEXT = "Kids are talking by the door"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints, a manifest of 84 strong-intensity clips of three actors, an ECAPA and a RoBERTa store."""
    pytest.importorskip("transformers")
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction
    from ser.manifests.schema import read_manifest, write_manifest
    from tests.extract.test_ecapa import _write_checkpoint
    from tests.extract.test_text import _save_roberta

    folder = tmp_path_factory.mktemp("ecapa-roberta-predict")
    ecapa = _write_checkpoint(folder / "ecapa", seed=2)
    roberta = _save_roberta(folder / "roberta", pooler=False)
    manifest = demo_manifest(folder, speakers=["Actor_01", "Actor_02", "Actor_03"], name="small.jsonl")
    rows = read_manifest(manifest)
    write_manifest(manifest, rows.header, [u for u in rows.utterances if u.id.split("-")[3] == "02"])  # strong
    options = RunOptions(num_workers=0, progress=False)
    run_extraction(manifest, build_extractor("ecapa", checkpoint=str(ecapa)), folder / "ecapa.h5", options)
    text_extractor = build_extractor("roberta", checkpoint=str(roberta), pooler_seed=SEED)
    run_extraction(manifest, text_extractor, folder / "roberta.h5", options)
    return {
        "folder": folder,
        "manifest": manifest,
        "ecapa": ecapa,
        "roberta": roberta,
        "ecapa_store": folder / "ecapa.h5",
        "roberta_store": folder / "roberta.h5",
    }


def _fit(out: Path, *args: str) -> Path:
    settings = ["--set", "val_by=utterance", "--set", "train.epochs=2"]
    result = CliRunner().invoke(app, ["fit", "-p", "speaker-loso", *settings, "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1].split("run directory: ")[1])


@pytest.fixture(scope="module")
def mlp_run(stores: dict[str, Path]) -> Path:
    """An audio-only MLP on the ECAPA embedding (the store's recommended view), one fold."""
    args = ["-f", "mlp", "-m", str(stores["manifest"]), "--audio", str(stores["ecapa_store"]), "--folds", "Actor_02"]
    return _fit(stores["folder"] / "runs-mlp", *args)


@pytest.fixture(scope="module")
def serfuse_run(stores: dict[str, Path]) -> Path:
    """SER-Fuse on the RoBERTa pooler output (seed 3) and the ECAPA embedding, one fold."""
    return _fit(
        stores["folder"] / "runs-serfuse",
        *("-f", "serfuse", "-m", str(stores["manifest"]), "--folds", "Actor_03"),
        *("--text", f"{stores['roberta_store']}:stat=pooler,layer=last", "--audio", str(stores["ecapa_store"])),
    )


def _predict(run: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["predict", str(run), *args, "--device", "cpu", "--no-progress"])
    return result.exit_code, result.output


def _assert_reproduces_the_fold(run: Path, manifest: Path) -> None:
    """``--members FOLD`` on the manifest gives the fold's ``predictions.csv`` (labels, probabilities within 1e-5)."""
    with open(run / "predictions.csv", encoding="utf-8") as handle:
        expected = list(csv.DictReader(handle))
    fold = expected[0]["fold"]
    assert {row["fold"] for row in expected} == {fold} and len(expected) == 28
    code, output = _predict(run, "-m", str(manifest), "--members", fold)
    assert code == 0, output
    got = {row["id"]: row for row in csv.DictReader(output.splitlines())}
    classes = [k for k in expected[0] if k.startswith("p_")]
    for row in expected:
        assert got[row["id"]]["pred"] == row["pred"] and got[row["id"]]["error"] == ""
        assert max(abs(float(got[row["id"]][c]) - float(row[c])) for c in classes) <= 1e-5


def _index(run: Path) -> dict[str, Any]:
    return json.loads((run / "models" / "index.json").read_text())


def _clip() -> Path:
    return sorted((demo_corpus() / "Actor_04").glob("*.flac"))[0]


def test_an_ecapa_run_is_rebuilt_from_its_folder_and_reproduces_the_test_predictions(
    mlp_run: Path, stores: dict[str, Path]
) -> None:
    from ser import load_model
    from ser.extract.ecapa import EcapaExtractor

    audio = _index(mlp_run)["inputs"]["audio"]
    assert audio["extractor"]["name"] == "ecapa" and audio["extractor"]["config"]["model"] == str(stores["ecapa"])
    assert audio["view"] == {"kind": "pooled", "stat": "embedding", "layer": "last"} and audio["dim"] == 12
    _assert_reproduces_the_fold(mlp_run, stores["manifest"])
    model = load_model(mlp_run, device="cpu")
    extractor = model.extractors["audio"]
    assert isinstance(extractor, EcapaExtractor)
    assert extractor.upstream()["weights_sha256"] == audio["upstream"]["weights_sha256"]
    one = model.predict(_clip())
    code, output = _predict(mlp_run, str(_clip()))
    assert code == 0, output
    (row,) = csv.DictReader(output.splitlines())
    assert row["pred"] == one.label and row["error"] == ""
    assert all(abs(float(row[f"p_{c}"]) - p) <= 1e-6 for c, p in one.probabilities.items())


def test_an_ecapa_folder_elsewhere_is_accepted_and_other_weights_or_settings_are_refused(
    mlp_run: Path, stores: dict[str, Path], tmp_path: Path
) -> None:
    from tests.extract.test_ecapa import TINY_HYPERPARAMS, _write_checkpoint

    clip = str(_clip())
    copy = tmp_path / "ecapa-copy"
    shutil.copytree(stores["ecapa"], copy)
    code, output = _predict(mlp_run, clip, "--checkpoint", f"audio={copy}")
    assert code == 0, output  # the same files in another folder
    other = _write_checkpoint(tmp_path / "ecapa-other", seed=9)
    code, output = _predict(mlp_run, clip, "--checkpoint", f"audio={other}")
    assert code == 2 and "upstream.weights_sha256: the run used" in output
    assert "ecapa voxceleb extractor available now differs" in output
    std_norm = tmp_path / "ecapa-std-norm"
    shutil.copytree(stores["ecapa"], std_norm)
    (std_norm / "hyperparams.yaml").write_text(TINY_HYPERPARAMS.replace("std_norm: False", "std_norm: True", 1))
    code, output = _predict(mlp_run, clip, "--checkpoint", f"audio={std_norm}")
    assert code == 2 and "config.mean_var_norm: the run used" in output and "'std_norm': True" in output
    code, output = _predict(mlp_run, clip, "--checkpoint", f"audio={tmp_path / 'nowhere'}")
    assert code == 2 and "no such folder" in output
    moved = tmp_path / "moved-run"  # as if the store had been written from the other folder
    shutil.copytree(mlp_run, moved)
    index = _index(moved)
    index["inputs"]["audio"]["extractor"]["config"]["model"] = str(other)
    (moved / "models" / "index.json").write_text(json.dumps(index))
    code, output = _predict(moved, clip)
    assert code == 2 and "weights_sha256" in output and "differs from the one the run was trained on" in output


def test_a_roberta_run_with_pooler_seed_3_is_rebuilt_with_the_same_pooler(
    serfuse_run: Path, stores: dict[str, Path]
) -> None:
    from ser import load_model
    from ser.extract.base import Features, Item
    from ser.extract.registry import build_extractor
    from ser.extract.text import TextExtractor

    text = _index(serfuse_run)["inputs"]["text"]
    assert text["extractor"]["name"] == "roberta" and text["extractor"]["config"]["pooler_seed"] == SEED
    assert text["view"] == {"kind": "pooled", "stat": "pooler", "layer": "last"}
    _assert_reproduces_the_fold(serfuse_run, stores["manifest"])
    model = load_model(serfuse_run, members="all", device="cpu")
    extractor = model.extractors["text"]
    assert isinstance(extractor, TextExtractor)
    assert extractor.config()["pooler_seed"] == SEED and extractor.upstream()["pooler_init"]["seed"] == SEED

    def pooler(built: Any) -> np.ndarray:
        (features,) = built.extract([Item(id="t", text=TEXT)], [])
        assert isinstance(features, Features)
        return np.asarray(features.pooled["pooler"])

    default_seed = build_extractor("roberta", checkpoint=str(stores["roberta"]))
    assert not np.allclose(pooler(extractor), pooler(default_seed), atol=1e-4)  # the seed decides the features
    same_seed = build_extractor("roberta", checkpoint=str(stores["roberta"]), pooler_seed=SEED)
    np.testing.assert_array_equal(pooler(extractor), pooler(same_seed))
    answer = model.predict(_clip(), text=TEXT)
    assert answer.error is None and answer.label in model.classes
    code, output = _predict(serfuse_run, str(_clip()), "--text", TEXT, "--members", "all")
    assert code == 0, output
    (row,) = csv.DictReader(output.splitlines())
    assert row["pred"] == answer.label
    assert all(abs(float(row[f"p_{c}"]) - p) <= 1e-6 for c, p in answer.probabilities.items())


def test_a_recorded_pooler_seed_that_the_checkpoint_cannot_give_is_refused(
    serfuse_run: Path, stores: dict[str, Path], tmp_path: Path
) -> None:
    from tests.extract.test_text import _save_roberta

    trained_pooler = _save_roberta(tmp_path / "roberta-with-pooler", pooler=True)
    code, output = _predict(
        serfuse_run, str(_clip()), "--text", TEXT, "--members", "all", "--checkpoint", f"text={trained_pooler}"
    )
    assert code == 2 and "config.pooler_seed: the run used 3, now None" in output


def test_build_arguments_pass_the_recorded_options_on() -> None:
    from ser.predict.extractors import build_arguments

    roberta = {
        "extractor": {"name": "roberta", "config": {"model": "/m/roberta", "max_tokens": 64, "pooler_seed": SEED}},
        "upstream": {"model": "/m/roberta", "model_label": None},
    }
    assert build_arguments(roberta) == ("/m/roberta", "float32", {"max_tokens": 64, "pooler_seed": SEED})
    bert = {"extractor": {"name": "bert", "config": {"model": "/m/bert", "max_tokens": 64}}, "upstream": {}}
    assert build_arguments(bert) == ("/m/bert", "float32", {"max_tokens": 64})
    ecapa = {
        "extractor": {"name": "ecapa", "config": {"model": "speechbrain/spkrec-ecapa-voxceleb", "dtype": "float32"}},
        "upstream": {"revision": "0" * 40},
    }
    assert build_arguments(ecapa) == ("speechbrain/spkrec-ecapa-voxceleb", "float32", {})
    ecapa["extractor"]["config"]["revision"] = "v1"
    assert build_arguments(ecapa)[2] == {"revision": "v1"}
