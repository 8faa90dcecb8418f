"""Shared fixtures: the real data beside the repository (``../shared/data``), skipped when absent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


REAL_DATA_FIXTURES = frozenset({"ravdess_root", "ravdess_egemaps", "meld_root", "emodb2s_root"})
"""Fixtures that read ``../shared/data``: a test using one is marked ``integration``."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if REAL_DATA_FIXTURES & fixtures:
            item.add_marker(pytest.mark.integration)
        if "ravdess_egemaps" in fixtures:  # extracts eGeMAPS of all 1200 clips once per session (~30 s)
            item.add_marker(pytest.mark.slow)


def shared_data_dir() -> Path:
    """``$SER_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    return Path(os.environ.get("SER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def ravdess_root() -> Path:
    """The real 16 kHz RAVDESS subset (actors 01-20); tests using it skip when it is absent."""
    root = shared_data_dir() / "ravdess16k"
    if not root.is_dir():
        pytest.skip(f"real RAVDESS data not found at {root}")
    return root


@pytest.fixture(scope="session")
def ravdess_egemaps(ravdess_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(manifest, store): the whole real RAVDESS manifest (1200 clips) and its eGeMAPS cache, extracted once
    per session and shared by the extraction and fusion integration tests."""
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction
    from ser.manifests.build import build_manifest

    folder = tmp_path_factory.mktemp("ravdess-egemaps")
    manifest = folder / "rav.jsonl"
    build_manifest("ravdess", ravdess_root, manifest)
    store = folder / "egemaps.h5"
    report = run_extraction(manifest, build_extractor("egemaps"), store, RunOptions(num_workers=2, progress=False))
    assert report.extracted == 1200 and not report.rejected
    return manifest, store


@pytest.fixture(scope="session")
def meld_root() -> Path:
    """The real MELD train/dev CSVs; tests using them skip when absent."""
    root = shared_data_dir() / "meld"
    if not root.is_dir():
        pytest.skip(f"real MELD data not found at {root}")
    return root


@pytest.fixture(scope="session")
def emodb2s_root() -> Path:
    """The real EmoDB copy cut to 2 s (535 clips, ``wav/SSTTTEV.flac``); tests using it skip when it is absent."""
    root = shared_data_dir() / "emodb2s"
    if not root.is_dir():
        pytest.skip(f"real EmoDB (2 s) data not found at {root}")
    return root


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """Small test models run fastest on one thread (and the CI machine has two cores)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 speakers (spk0..spk3) x 8 synthetic tone clips, labels of ravdess8; returns the manifest."""
    from tests.fakes.tones import write_tone_corpus

    return write_tone_corpus(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="session")
def tone_egemaps(tone_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The eGeMAPS store of the synthetic tone corpus (HDF5); do not change it: copy it first."""
    from ser.extract.registry import build_extractor
    from ser.extract.runner import RunOptions, run_extraction

    store = tmp_path_factory.mktemp("tone-egemaps") / "tones.egemaps.h5"
    run_extraction(tone_corpus, build_extractor("egemaps"), store, RunOptions(num_workers=0, progress=False))
    return store


def fit_tone_run(corpus: Path, store: Path, out: Path, head: str, *options: str) -> Path:
    """``ser fit`` of ``head`` on the tone corpus's eGeMAPS ``store``, fold spk0 (validation by utterance),
    into ``out``; returns the run directory."""
    from typer.testing import CliRunner

    from ser.cli import app

    args = ["fit", "-f", head, "-m", str(corpus), "-p", "speaker-loso", "--set", "val_by=utterance", "-q"]
    args += ["--audio", str(store), "--folds", "spk0", "-o", str(out), *options]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1].split("run directory: ")[1])


@pytest.fixture(scope="session")
def tone_mlp_run(tone_corpus: Path, tone_egemaps: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``ser fit`` run directory: eGeMAPS + mlp on the synthetic tone corpus, fold spk0, 3 epochs
    (a few seconds). Shared by every test that predicts with a small real run: copy it before changing it."""
    return fit_tone_run(
        tone_corpus, tone_egemaps, tmp_path_factory.mktemp("tone-mlp"), "mlp", "--set", "train.epochs=3"
    )


@pytest.fixture(scope="session")
def tone_logreg_run(tone_corpus: Path, tone_egemaps: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run directory of eGeMAPS + logreg (a classic, skops member), fold spk0: copy it before
    changing it."""
    return fit_tone_run(tone_corpus, tone_egemaps, tmp_path_factory.mktemp("tone-logreg"), "logreg")


@pytest.fixture(scope="session", autouse=True)
def adaptation_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test registers adapted checkpoints (``ser finetune``) in a temporary folder, never in the user's
    data folder (``$SER_ADAPTATIONS``); a test may point it elsewhere with ``monkeypatch.setenv``."""
    folder = tmp_path_factory.mktemp("adaptations")
    before = os.environ.get("SER_ADAPTATIONS")
    os.environ["SER_ADAPTATIONS"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("SER_ADAPTATIONS", None)
    else:
        os.environ["SER_ADAPTATIONS"] = before


@pytest.fixture(scope="session")
def meld_minilm(meld_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(manifest, store): 600 MELD training and 200 dev utterances, MiniLM features through the CLI (built once
    per session; do not change them)."""
    from typer.testing import CliRunner

    from ser.cli import app
    from ser.manifests.schema import read_manifest, write_manifest

    folder = tmp_path_factory.mktemp("meld")
    full = folder / "full.jsonl"
    runner = CliRunner()
    assert runner.invoke(app, ["manifest", "meld", str(meld_root), "-o", str(full)]).exit_code == 0
    manifest = read_manifest(full)
    train = [u for u in manifest.utterances if u.split == "train"][:600]
    dev = [u for u in manifest.utterances if u.split == "validation"][:200]
    subset = folder / "meld.jsonl"
    write_manifest(subset, manifest.header, train + dev)
    store = folder / "meld.minilm.h5"
    result = runner.invoke(
        app, ["extract", "--model", "minilm", "--manifest", str(subset), "-o", str(store), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    return subset, store
