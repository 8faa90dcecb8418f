"""``ser cache merge --manifest JOINED``: stores extracted per corpus (from different manifests) merged into one
store over the manifest that joins the corpora, read back with every row's audio identity checked; and the
refusals (different extractor settings, a row the joined manifest lacks, a changed audio file, ids in two stores)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cache.format import CacheError
from ser.cache.reader import CacheReader
from ser.cli import app
from ser.extract.merge_joined import merge_over_manifest
from ser.manifests.fingerprints import row_fingerprints, store_scheme
from ser.manifests.schema import ManifestHeader, Utterance, file_sha256, read_manifest, write_manifest
from tests.fakes.tones import write_tone_corpus


def _invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _corpus(folder: Path, corpus: str) -> Path:
    """A tiny tone corpus (2 speakers x 3 clips) whose ids and speakers carry the corpus name."""
    folder.mkdir(parents=True)
    tones = read_manifest(write_tone_corpus(folder, speakers=2, per_speaker=3))
    rows = [dataclasses.replace(u, id=f"{corpus}_{u.id}", speaker=f"{corpus}_{u.speaker}") for u in tones]
    manifest = folder / f"{corpus}.jsonl"
    write_manifest(manifest, ManifestHeader(corpus=corpus, root=".", label_set="ravdess8"), rows)
    return manifest


def _join(manifests: list[Path], out: Path) -> Path:
    """The joined manifest in the shape `ser manifest join` writes: ids kept, ``extra["corpus"]``, speakers
    ``<corpus>/<speaker>``, audio paths absolute."""
    rows: list[Utterance] = []
    corpora = []
    for path in manifests:
        manifest = read_manifest(path)
        corpora.append(manifest.header.corpus)
        rows += [
            dataclasses.replace(
                u,
                audio=str(manifest.audio_path(u)),
                speaker=f"{manifest.header.corpus}/{u.speaker}",
                extra={**(u.extra or {}), "corpus": manifest.header.corpus},
            )
            for u in manifest
        ]
    write_manifest(out, ManifestHeader(corpus="+".join(corpora), root=".", label_set="ravdess8"), rows)
    return out


def _extract(manifest: Path, store: Path, *extra: str) -> Path:
    code, output = _invoke(
        "extract", "--model", "logmel", "-m", manifest, "-o", store, "--num-workers", "0", "--no-progress", *extra
    )
    assert code == 0, output
    return store


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("corpora")
    a = _corpus(folder / "ravdess", "ravdess")
    b = _corpus(folder / "emodb", "emodb")
    return {
        "a": a,
        "b": b,
        "joined": _join([a, b], folder / "joined.jsonl"),
        "store_a": _extract(a, folder / "ravdess.h5"),
        "store_b": _extract(b, folder / "emodb.h5"),
    }


def _copy_corpus(corpora: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A private copy of the corpora folder (for tests that change files), with the joined manifest rewritten."""
    folder = tmp_path / "corpora"
    shutil.copytree(corpora["a"].parent.parent, folder)
    a, b = folder / "ravdess" / "ravdess.jsonl", folder / "emodb" / "emodb.jsonl"
    return {"a": a, "b": b, "joined": _join([a, b], folder / "joined.jsonl"), "folder": folder}


def test_per_corpus_stores_merge_over_the_joined_manifest(corpora: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "merged.h5"
    code, output = _invoke(
        "cache", "merge", corpora["store_a"], corpora["store_b"], "--manifest", corpora["joined"], "-o", out
    )
    assert code == 0, output
    assert output.strip() == f"merged 2 stores into {out} over {corpora['joined']}"
    joined = read_manifest(corpora["joined"])
    with CacheReader(out) as merged, CacheReader(corpora["store_a"]) as a, CacheReader(corpora["store_b"]) as b:
        assert merged.ids == a.ids + b.ids and len(merged) == 12
        np.testing.assert_array_equal(merged.pooled("mean", ids=a.ids), a.pooled("mean"))
        np.testing.assert_array_equal(merged.pooled("mean", ids=b.ids), b.pooled("mean"))
        assert merged.attrs["manifest"] == {
            "path": str(corpora["joined"].resolve()),
            "sha256": file_sha256(corpora["joined"]),
            "n_items": 12,
            "corpus": "ravdess+emodb",
        }
        assert [(m["path"], m["n_items"], m["manifest"]["corpus"]) for m in merged.attrs["merged_from"]] == [
            ("ravdess.h5", 6, "ravdess"),
            ("emodb.h5", 6, "emodb"),
        ]
        assert merged.manifest_note(file_sha256(corpora["joined"])) is None
        scheme, modality = store_scheme(merged.attrs)
        expected = row_fingerprints(joined, list(joined), modality=modality, scheme=scheme)
        merged.check_rows(expected)  # every row's audio identity under the joined manifest
        assert merged.changed_rows(expected) == []
        # the per-corpus stores' fingerprints name the audio as their own manifests wrote it: not the joined rows
        assert sorted(a.changed_rows(expected)) == sorted(a.ids)


def test_fit_reads_the_merged_store_and_a_store_extracted_over_the_joined_manifest(
    corpora: dict[str, Path], tmp_path: Path
) -> None:
    merged = tmp_path / "merged.h5"
    code, output = _invoke(
        "cache", "merge", corpora["store_a"], corpora["store_b"], "-m", corpora["joined"], "-o", merged
    )
    assert code == 0, output
    direct = _extract(corpora["joined"], tmp_path / "direct.h5")
    for store in (merged, direct):
        run = tmp_path / f"run-{store.stem}"
        code, output = _invoke(
            *("fit", "-f", "logreg", "-m", corpora["joined"], "--audio", store, "-p", "speaker-loso", "-q"),
            *("-l", "ravdess8", "--set", "val_by=utterance", "--no-models", "-o", run),
        )
        assert code == 0, output
        metrics = json.loads(next(run.rglob("metrics.json")).read_text())
        assert len(metrics["runs"]) == 4  # one fold per speaker of both corpora
    with CacheReader(merged) as m, CacheReader(direct) as d:
        assert sorted(m.ids) == sorted(d.ids)
        assert dict(zip(m.ids, m.fingerprints, strict=True)) == dict(zip(d.ids, d.fingerprints, strict=True))


def test_refuses_stores_extracted_with_different_settings(corpora: dict[str, Path], tmp_path: Path) -> None:
    other = _extract(corpora["b"], tmp_path / "emodb80.h5", "-O", "n_mels=80")
    out = tmp_path / "merged.h5"
    code, output = _invoke("cache", "merge", corpora["store_a"], other, "-m", corpora["joined"], "-o", out)
    assert code == 2, output
    line = output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in output
    assert str(corpora["store_a"]) in line and str(other) in line
    assert "config.n_mels: 64 vs 80" in line
    assert "layout.pooled.mean: [1, 64] vs [1, 80]" in line
    assert not out.exists()


def test_refuses_a_stored_row_absent_from_the_joined_manifest(corpora: dict[str, Path], tmp_path: Path) -> None:
    joined = read_manifest(corpora["joined"])
    smaller = tmp_path / "smaller.jsonl"
    write_manifest(smaller, joined.header, [u for u in joined if u.id != "emodb_spk1_2"])
    with pytest.raises(CacheError) as caught:
        merge_over_manifest([corpora["store_a"], corpora["store_b"]], tmp_path / "merged.h5", smaller)
    message = str(caught.value)
    assert f"{corpora['store_b']}: 1 stored rows are not rows of {smaller}: emodb_spk1_2" in message
    assert str(corpora["b"].resolve()) in message  # the manifest to join
    assert not (tmp_path / "merged.h5").exists()


def test_refuses_a_changed_audio_file(corpora: dict[str, Path], tmp_path: Path) -> None:
    copy = _copy_corpus(corpora, tmp_path)
    store_a, store_b = shutil.copy(corpora["store_a"], tmp_path), shutil.copy(corpora["store_b"], tmp_path)
    merge_over_manifest([store_a, store_b], tmp_path / "ok.h5", copy["joined"])  # a moved copy still matches
    wav = copy["folder"] / "emodb" / "spk0_1.wav"
    data = bytearray(wav.read_bytes())
    data[-2] ^= 0x01  # one sample's low bit, same size
    wav.write_bytes(bytes(data))
    with pytest.raises(CacheError) as caught:
        merge_over_manifest([store_a, store_b], tmp_path / "merged.h5", copy["joined"])
    message = str(caught.value)
    assert f"{store_b}: 1 rows of {copy['joined']} are not what the store was extracted from" in message
    assert "emodb_spk0_1" in message and "re-extract" in message
    assert not (tmp_path / "merged.h5").exists()


def test_refuses_ids_in_two_stores(corpora: dict[str, Path], tmp_path: Path) -> None:
    twice = Path(shutil.copy(corpora["store_a"], tmp_path / "again.h5"))
    out = tmp_path / "merged.h5"
    code, output = _invoke("cache", "merge", corpora["store_a"], twice, "-m", corpora["joined"], "-o", out)
    assert code == 2, output
    assert f"is in both {corpora['store_a']} and {twice}" in output and "disjoint" in output
    assert not out.exists()
