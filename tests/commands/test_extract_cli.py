"""``ser extract`` and ``ser extractors`` through typer's CliRunner; real-data runs over the whole RAVDESS manifest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cache.reader import CacheReader
from ser.cli import app
from ser.extract.audio import load_audio
from ser.extract.registry import EXTRACTORS
from ser.manifests.schema import ManifestHeader, Utterance, read_manifest, write_manifest
from tests.fakes import write_tone

runner = CliRunner()


def _manifest(root: Path, *, bad: bool = False) -> Path:
    """Three short tones (and, with ``bad``, a row whose file is missing)."""
    rows = []
    for i, seconds in enumerate([0.2, 0.35, 0.5]):
        write_tone(root / f"t{i}.wav", seconds=seconds, frequency=300.0 + 100 * i)
        rows.append(Utterance(id=f"t{i}", audio=f"t{i}.wav"))
    if bad:
        rows.append(Utterance(id="gone", audio="gone.wav"))
    path = root / ("bad.jsonl" if bad else "m.jsonl")
    write_manifest(path, ManifestHeader(corpus="tones", root=str(root)), rows)
    return path


def _extract(manifest: Path, out: Path, *extra: str) -> object:
    return runner.invoke(
        app,
        [
            "extract",
            "--model",
            "logmel",
            "-m",
            str(manifest),
            "-o",
            str(out),
            "--no-progress",
            "--num-workers",
            "0",
            *extra,
        ],
    )


def test_extract_writes_the_store_and_a_summary(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    out = tmp_path / "out.h5"
    result = _extract(manifest, out)
    assert result.exit_code == 0, result.output
    assert f"{out}: 3 extracted (0 were already done), 0 rejected" in result.output
    assert re.search(r", [0-9.]+ utt/s, [0-9.e-]+ audio-h/s, [0-9.]+x real time$", result.output.splitlines()[-1])
    with CacheReader(out) as reader:
        assert sorted(reader.ids) == ["t0", "t1", "t2"] and reader.rejected == {}
        assert reader.layout.pooled == {"mean": (1, 64), "std": (1, 64)} and reader.layout.seq == {}
    result = _extract(manifest, out)
    assert result.exit_code == 0, result.output
    assert "already complete (same extractor config): 3 rows stored, 0 rejected; nothing to do" in result.output
    result = _extract(manifest, out, "--preset", "librosa")
    assert result.exit_code == 2 and "another extractor config" in result.output


def test_rejected_rows_finish_the_store_with_exit_3(tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    result = _extract(_manifest(tmp_path, bad=True), out, "--seq", "logmel")
    assert result.exit_code == 3, result.output
    assert "3 extracted (0 were already done), 1 rejected" in result.output
    assert f"1 rows rejected; reasons in {out}.rejects.tsv" in result.output
    lines = Path(f"{out}.rejects.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id\tstatus\treason" and lines[1].startswith("gone\trejected\tmissing audio file")
    with CacheReader(out) as reader:
        assert sorted(reader.ids) == ["t0", "t1", "t2"] and list(reader.rejected) == ["gone"]
        assert reader.sequence("t2", "logmel").shape == (1 + 8000 // 160, 64)


def test_shard_and_family_options_reach_the_run(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    out = tmp_path / "x.h5"
    result = _extract(manifest, out, "--shard", "1/2", "-O", "n_mels=32")
    assert result.exit_code == 0, result.output
    assert "x.shard1of2.h5: 1 extracted" in result.output and not out.exists()
    with CacheReader(tmp_path / "x.shard1of2.h5") as reader:
        assert reader.ids == ["t1"]  # rows 1, 3, 5 ... of the manifest
        assert reader.layout.pooled["mean"] == (1, 32)
        assert reader.attrs["extractor"]["config"]["n_mels"] == 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "unknown extractor 'nope'"),
        (["--model", "logmel", "--preset", "huge"], "unknown logmel preset 'huge'"),
        (["--model", "logmel", "-O", "colour=red"], "logmel: unknown options ['colour']"),
        (["--model", "logmel", "--shard", "2/2"], "--shard 2/2: i must be between 0 and N-1"),
        (["--model", "logmel", "--shard=-1/2"], "--shard -1/2: i must be between 0 and N-1"),
        (["--model", "logmel", "--shard", "first"], "--shard takes i/N"),
        (["--model", "logmel", "--seq", "7"], "no layer '7' to store as a sequence"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(tmp_path: Path, args: list[str], message: str) -> None:
    manifest = _manifest(tmp_path)
    out = tmp_path / "out.h5"
    result = runner.invoke(
        app, ["extract", *args, "-m", str(manifest), "-o", str(out), "--no-progress", "--num-workers", "0"]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists() and not list(tmp_path.glob("out*.partial"))


def test_missing_manifest_exits_2(tmp_path: Path) -> None:
    result = _extract(tmp_path / "none.jsonl", tmp_path / "out.h5")
    assert result.exit_code == 2 and "no such manifest file" in result.output


def test_extractors_lists_every_family_and_preset() -> None:
    result = runner.invoke(app, ["extractors"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for family, info in EXTRACTORS.items():
        assert f"{family}: {info.description}" in lines, family
        for preset, upstream in info.presets.items():
            assert any(line.split(maxsplit=1) == [preset, upstream] for line in lines), (family, preset)


def test_extract_help_documents_the_options() -> None:
    result = runner.invoke(app, ["extract", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--seq", "--shard", "--checkpoint", "--model", "--num-workers", "--batch-seconds"):
        assert option in result.output, option


# ------------------------------------------------------------------------------------------ re-runs of a finished store


def _verify_cli(store: Path, manifest: Path) -> str:
    result = runner.invoke(app, ["cache", "verify", str(store), "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    assert "manifest coverage and fingerprints" in result.output
    return result.output


def test_rerun_with_rejects_exits_3_and_retry_rejected_extracts_them(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, bad=True)
    out = tmp_path / "out.h5"
    assert _extract(manifest, out).exit_code == 3
    again = _extract(manifest, out)
    assert again.exit_code == 3, again.output
    assert "already complete (same extractor config): 3 rows stored, 1 rejected; nothing to do" in again.output
    assert (
        f"1 rows rejected; reasons in {out}.rejects.tsv (run again with --retry-rejected to try them once more)"
        in again.output
    )
    write_tone(tmp_path / "gone.wav", seconds=0.3, frequency=700.0)  # the file system is back
    retried = _extract(manifest, out, "--retry-rejected")
    assert retried.exit_code == 0, retried.output
    assert f"{out}: extended the finished store (1 rejected row to retry)" in retried.output
    assert "1 extracted (3 were already done), 0 rejected" in retried.output
    assert "4 items, 0 rejected" in _verify_cli(out, manifest)


def test_grown_manifest_extends_the_store_and_verifies(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    out = tmp_path / "out.h5"
    assert _extract(manifest, out, "--seq", "logmel").exit_code == 0
    rows = read_manifest(manifest).utterances
    for i in (3, 4):
        write_tone(tmp_path / f"t{i}.wav", seconds=0.25, frequency=800.0 + 50 * i)
        rows.append(Utterance(id=f"t{i}", audio=f"t{i}.wav"))
    rows[0] = Utterance(id="t0", audio="t0.wav", start=0.0, end=0.1)  # and one row now a segment
    write_manifest(manifest, ManifestHeader(corpus="tones", root=str(tmp_path)), rows)
    grown = _extract(manifest, out, "--seq", "logmel")
    assert grown.exit_code == 0, grown.output
    assert "extended the finished store (2 new rows, 1 changed row)" in grown.output
    assert "3 extracted (2 were already done), 0 rejected" in grown.output
    assert "5 items, 0 rejected" in _verify_cli(out, manifest)
    with CacheReader(out) as reader:
        assert reader.sequence("t0", "logmel").shape == (1 + 1600 // 160, 64)


# ------------------------------------------------------------------------------------------ options and devices


def test_option_words_reach_the_config_as_booleans_and_numbers(tmp_path: Path) -> None:
    result = _extract(
        _manifest(tmp_path),
        tmp_path / "out.h5",
        "-O",
        "center=No",
        "-O",
        "peak_normalize=YES",
        "-O",
        "n_mels=40",
        "-O",
        "f_max=7000.5",
        "-O",
        "pad_mode=constant",
    )
    assert result.exit_code == 0, result.output
    with CacheReader(tmp_path / "out.h5") as reader:
        config = reader.attrs["extractor"]["config"]
    assert (config["center"], config["peak_normalize"], config["n_mels"], config["f_max"], config["pad_mode"]) == (
        False,
        True,
        40,
        7000.5,
        "constant",
    )


def test_logmel_center_false_reaches_the_store(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    out = tmp_path / "out.h5"
    result = _extract(manifest, out, "-O", "center=false", "--seq", "logmel")
    assert result.exit_code == 0, result.output
    with CacheReader(out) as reader:
        assert reader.attrs["extractor"]["config"]["center"] is False
        assert reader.sequence("t2", "logmel").shape == (1 + (8000 - 512) // 160, 64)  # whole windows only
    centred = _extract(manifest, tmp_path / "centred.h5", "-O", "center=TRUE", "--seq", "logmel")
    assert centred.exit_code == 0, centred.output
    with CacheReader(tmp_path / "centred.h5") as reader:
        assert reader.attrs["extractor"]["config"]["center"] is True
        assert reader.sequence("t2", "logmel").shape == (1 + 8000 // 160, 64)


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from tests.extract.conftest import _save_ssl

    return _save_ssl(tmp_path_factory.mktemp("hubert"), "hubert", "group", seed=1)


def _hubert(manifest: Path, out: Path, checkpoint: Path, *extra: str) -> Any:
    return runner.invoke(
        app,
        [
            "extract",
            "--model",
            "hubert",
            "--checkpoint",
            str(checkpoint),
            "-m",
            str(manifest),
            "-o",
            str(out),
            "--no-progress",
            "--num-workers",
            "0",
            "--seq",
            "last",
            *extra,
        ],
    )


def test_ssl_normalize_false_reaches_the_store_and_the_model(tmp_path: Path, tiny_hubert: Path) -> None:
    import torch
    from transformers import AutoModel

    from ser.extract.audio import load_audio

    manifest = _manifest(tmp_path)
    raw, normalised = tmp_path / "raw.h5", tmp_path / "normalised.h5"
    assert _hubert(manifest, raw, tiny_hubert, "-O", "normalize=false").exit_code == 0
    assert _hubert(manifest, normalised, tiny_hubert).exit_code == 0  # the checkpoint says do_normalize=True
    model = AutoModel.from_pretrained(tiny_hubert).eval()
    audio = load_audio(tmp_path / "t2.wav", sample_rate=16000)
    with torch.no_grad():
        direct = model(torch.from_numpy(audio)[None]).last_hidden_state[0].numpy()  # unnormalised input
    with CacheReader(raw) as a, CacheReader(normalised) as b:
        assert a.attrs["extractor"]["config"]["normalize"] is False
        assert b.attrs["extractor"]["config"]["normalize"] is True
        np.testing.assert_allclose(a.sequence("t2", "layer_02"), direct, atol=2e-3, rtol=0)  # float16 frames
        np.testing.assert_allclose(a.pooled("mean", ids=["t2"])[0, -1], direct.mean(axis=0), atol=1e-5, rtol=0)
        assert not np.allclose(b.pooled("mean", ids=["t2"])[0, -1], direct.mean(axis=0), atol=1e-3)
    bad = _hubert(manifest, tmp_path / "bad.h5", tiny_hubert, "-O", "normalize=maybe")
    assert bad.exit_code == 2
    assert "hubert: -O normalize=maybe is not valid: normalize must be true or false" in bad.output


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "--device gpu: unknown device; use auto, cpu, cuda, cuda:N or mps"),
        ("cuda:one", "--device cuda:one: unknown device"),
        ("cuda", "--device cuda: CUDA is not available here"),
    ],
)
def test_bad_device_exits_2_before_anything_is_built(
    tmp_path: Path, tiny_hubert: Path, device: str, message: str
) -> None:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    manifest = _manifest(tmp_path)
    for result in (
        _hubert(manifest, tmp_path / "h.h5", tiny_hubert, "--device", device),
        _extract(manifest, tmp_path / "l.h5", "--device", device),
    ):
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("*.h5*"))


def test_missing_checkpoint_folder_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "extract",
            "--model",
            "hubert",
            "--checkpoint",
            "./models/nope",
            "-m",
            str(_manifest(tmp_path)),
            "-o",
            str(tmp_path / "o.h5"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "--checkpoint ./models/nope: no such folder" in result.output


def test_cli_defaults_are_the_run_options_defaults() -> None:
    """The CLI spells its defaults as literals (no torch import for --help); they must not drift."""
    import inspect

    from ser.extract.runner import RunOptions

    (command,) = [c for c in app.registered_commands if c.name == "extract"]
    assert command.callback is not None
    defaults = {name: param.default.default for name, param in inspect.signature(command.callback).parameters.items()}
    options = RunOptions()
    for name in (
        "batch_seconds",
        "batch_items",
        "num_workers",
        "max_total_seconds",
        "flush_seconds",
        "seq",
        "retry_rejected",
        "compression",
    ):
        assert defaults[name] == getattr(options, name), name


# ------------------------------------------------------------------------------------------ real data


def test_real_ravdess_egemaps_whole_corpus(ravdess_egemaps: tuple[Path, Path]) -> None:
    """The shared session extraction (1200 clips, tests/conftest.py) verified through the CLI."""
    manifest, store = ravdess_egemaps
    output = _verify_cli(store, manifest)
    assert "1200 items, 0 rejected" in output
    rows = read_manifest(manifest)
    ids = [u.id for u in rows]
    with CacheReader(store) as reader:
        functionals = reader.pooled("functionals", ids=ids)
        assert functionals.shape == (1200, 1, 88) and np.isfinite(functionals).all()
        assert reader.pooled("lld_mean").shape == (1200, 1, 25)
        assert len(reader.attrs["upstream"]["functional_names"]) == 88
    assert len({u.speaker for u in rows}) == 20
    # every clip has its own values, except one pair of recordings that hold the very same samples
    _, first, counts = np.unique(functionals.reshape(1200, -1), axis=0, return_index=True, return_counts=True)
    assert len(counts) == 1199
    twins = [
        uid
        for uid, row in zip(ids, functionals, strict=True)
        if np.array_equal(row, functionals[first[counts == 2][0]])
    ]
    assert len(twins) == 2 and all(uid.endswith("-07") for uid in twins), twins
    by_id = {u.id: u for u in rows}
    twin_audio = [load_audio(rows.audio_path(by_id[uid]), sample_rate=16000) for uid in twins]
    np.testing.assert_array_equal(*twin_audio)
    # the CLI computes the same config hash as the library: the finished store is recognised as complete
    again = runner.invoke(
        app, ["extract", "--model", "egemaps", "-m", str(manifest), "-o", str(store), "--no-progress"]
    )
    assert again.exit_code == 0, again.output
    assert "already complete (same extractor config): 1200 rows stored, 0 rejected" in again.output


def test_real_ravdess_minilm_text_carries_only_the_statement(ravdess_egemaps: tuple[Path, Path]) -> None:
    """RAVDESS has two sentences, so the text branch sees two inputs whatever the emotion (all 1200 clips)."""
    manifest, _ = ravdess_egemaps
    store = manifest.with_name("minilm.h5")
    result = runner.invoke(
        app,
        ["extract", "--model", "minilm", "-m", str(manifest), "-o", str(store), "--no-progress", "--num-workers", "0"],
    )
    assert result.exit_code == 0, result.output
    assert "1200 extracted (0 were already done), 0 rejected" in result.output
    assert "1200 items, 0 rejected" in _verify_cli(store, manifest)
    rows = read_manifest(manifest).utterances
    with CacheReader(store) as reader:
        mean = reader.pooled("mean", ids=[u.id for u in rows])
        assert mean.shape == (1200, 7, 384) and np.isfinite(mean).all()
    flat = mean.reshape(1200, -1)
    by_text: dict[str, np.ndarray] = {}
    for row, vector in zip(rows, flat, strict=True):
        assert row.text is not None
        if row.text in by_text:  # batched with other texts, yet identical to the first copy
            np.testing.assert_allclose(vector, by_text[row.text], atol=1e-5, rtol=0)
        by_text[row.text] = vector
    assert sorted(by_text) == ["Dogs are sitting by the door", "Kids are talking by the door"]
    assert not np.allclose(*by_text.values(), atol=1e-3)
    assert len({row.label for row in rows}) == 8  # eight emotions map onto two vectors
