"""``ser cache info / verify / merge`` through typer's CliRunner, and the compression check before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.manifests.schema import ManifestHeader, Utterance, file_sha256, write_manifest
from tests.cache.storeutil import make_attrs, make_row, make_rows, tamper, write_store, writer_open

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture(params=[".h5", ".zarr"])
def suffix(request: pytest.FixtureRequest) -> str:
    return request.param


# ------------------------------------------------------------------------------------------------ info


def test_info_of_a_complete_store(tmp_path: Path, suffix: str) -> None:
    store = write_store(tmp_path / f"feats{suffix}", make_rows(7), rejected={"bad": "silent audio"})
    code, out = _invoke("cache", "info", store)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"{store}: complete, 7 items, 1 rejected, ")
    assert "  pooled/mean: 4 layers x 6 (float32)" in lines
    assert "  pooled/cls: 1 layers x 10 (float32)" in lines
    frames = sum(r.length for r in make_rows(7))
    assert f"  seq/layer_03: {frames} frames x 3 (float16)" in lines
    assert any(line.startswith('  extractor: {"config": {') and '"name": "fake"' in line for line in lines)


def test_info_json_of_a_complete_store(tmp_path: Path, suffix: str) -> None:
    store = write_store(tmp_path / f"feats{suffix}", make_rows(7), rejected={"bad": "silent audio"})
    code, out = _invoke("cache", "info", store, "--json")
    assert code == 0, out
    info = json.loads(out)
    assert (info["status"], info["items"], info["rejected"]) == ("complete", 7, 1)
    assert info["pooled"] == {
        "mean": {"layers": 4, "dim": 6},
        "std": {"layers": 4, "dim": 6},
        "cls": {"layers": 1, "dim": 10},
    }
    assert info["seq"] == {"layers": {"layer_01": 6, "layer_03": 3}, "frames": sum(r.length for r in make_rows(7))}
    assert info["manifest"]["sha256"] == "0" * 64 and info["n_items"] == 7
    assert info["bytes"] > 0


def test_info_of_a_partial_store(tmp_path: Path, suffix: str) -> None:
    store = tmp_path / f"feats{suffix}"
    writer = writer_open(store, segment_bytes=1)  # every row is flushed as its own segment
    for row in make_rows(3):
        writer.add(row.uid, row.fingerprint, row.pooled, row.seq)
    writer.reject("bad", "silent audio")
    writer.close()
    code, out = _invoke("cache", "info", store)
    assert code == 0, out
    assert out.splitlines() == [
        f"{store}: partial (3 rows, 1 rejected, 4 segments in {store}.partial)",
        "resume by running the same `ser extract` command again",
    ]
    code, out = _invoke("cache", "info", store, "--json")
    info = json.loads(out)
    assert (info["status"], info["rows"], info["rejected"], info["segments"]) == ("partial", 3, 1, 4)
    assert info["attrs"]["extractor"]["name"] == "fake"


def test_info_of_nothing_is_a_one_line_error(tmp_path: Path) -> None:
    code, out = _invoke("cache", "info", tmp_path / "none.h5")
    assert code == 2
    assert out.strip() == f"error: {tmp_path / 'none.h5'}: no such cache store; create it with `ser extract`"


# ------------------------------------------------------------------------------------------------ merge


def test_merge_joins_shards(tmp_path: Path, suffix: str) -> None:
    rows = make_rows(9)
    shards = [
        write_store(tmp_path / f"s{i}{suffix}", part, attrs=make_attrs(shard=f"{i}/2"))
        for i, part in enumerate([rows[:4], rows[4:]])
    ]
    out = tmp_path / f"merged{suffix}"
    code, output = _invoke("cache", "merge", *shards, "-o", out)
    assert code == 0, output
    assert output.strip() == f"merged 2 shards into {out}"
    code, output = _invoke("cache", "info", out, "--json")
    info = json.loads(output)
    assert info["items"] == 9
    assert [m["n_items"] for m in info["merged_from"]] == [4, 5]


def test_merge_refuses_overlapping_shards_in_one_line(tmp_path: Path) -> None:
    rows = make_rows(4)
    a = write_store(tmp_path / "a.h5", rows[:3])
    b = write_store(tmp_path / "b.h5", rows[2:])
    code, out = _invoke("cache", "merge", a, b, "-o", tmp_path / "m.h5")
    assert code == 2
    assert out.strip() == f"error: id {rows[2].uid!r} is in both {a} and {b}; shards must be disjoint"
    assert not (tmp_path / "m.h5").exists()


# ------------------------------------------------------------------------------------------------ verify


def test_verify_exits_1_on_a_damaged_store(tmp_path: Path, suffix: str) -> None:
    rows = make_rows(5)
    store = write_store(tmp_path / f"feats{suffix}", rows)
    code, out = _invoke("cache", "verify", store)
    assert code == 0 and out.splitlines()[-1] == "ok"
    tamper(store, "pooled/mean", (3, 0, 0), np.nan)
    code, out = _invoke("cache", "verify", store)
    assert code == 1
    assert f"problem: pooled/mean: NaN/Inf in utterance '{rows[3].uid}'" in out
    assert "ok" not in out.splitlines()


def _manifest_and_store(tmp_path: Path, suffix: str) -> tuple[Path, Path, list[Utterance]]:
    """A manifest and a store extracted from it (fingerprints and sha256 as `ser extract` records them)."""
    utterances = [
        Utterance(id=f"u{i}", audio=f"u{i}.wav", text=f"words {i}", label="ang", speaker="s1") for i in range(4)
    ]
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="toy", root="."), utterances)
    attrs = make_attrs(manifest_sha=file_sha256(manifest))
    writer = writer_open(tmp_path / f"feats{suffix}", attrs=attrs)
    for i, utt in enumerate(utterances):
        row = make_row(utt.id, seed=i, length=2)
        writer.add(utt.id, utt.fingerprint(), row.pooled, row.seq)
    return manifest, writer.finalize(), utterances


def test_verify_with_the_extraction_manifest(tmp_path: Path, suffix: str) -> None:
    manifest, store, _ = _manifest_and_store(tmp_path, suffix)
    code, out = _invoke("cache", "verify", store, "--manifest", manifest)
    assert code == 0, out
    assert "manifest sha256 as at extraction" in out.splitlines()[0]
    assert "note:" not in out and out.splitlines()[-1] == "ok"


def test_verify_with_an_edited_manifest_checks_every_row(tmp_path: Path, suffix: str) -> None:
    manifest, store, utterances = _manifest_and_store(tmp_path, suffix)
    utterances[1].label = "neu"  # labels may change without re-extraction
    write_manifest(manifest, ManifestHeader(corpus="toy", root="."), utterances)
    code, out = _invoke("cache", "verify", store, "-m", manifest)
    assert code == 0, out
    assert (
        f"note: {manifest} (sha256 {file_sha256(manifest)[:12]}) is not the manifest this store was "
        "extracted from" in out
    )
    assert out.splitlines()[-1] == "ok"
    utterances[2].text = "other words"  # ... transcripts may not
    utterances[3].end = 1.5
    write_manifest(manifest, ManifestHeader(corpus="toy", root="."), utterances)
    code, out = _invoke("cache", "verify", store, "-m", manifest)
    assert code == 1
    assert "note: " in out
    assert (
        f"problem: {store}: 2 manifest rows changed since this store was extracted (audio path, segment, the "
        "audio file's content or, for text stores, the text differ): u2, u3. Their features were computed from "
        "the old rows: re-run `ser extract` with this manifest"
    ) in out


# ------------------------------------------------------------------------------------------------ compression


@pytest.mark.parametrize(
    ("out_name", "compression", "message"),
    [
        ("m.h5", "zstd", "m.h5: HDF5 stores take --compression gzip or lzf, not 'zstd' (zstd is for .zarr stores)"),
        (
            "m.zarr",
            "lzf",
            "m.zarr: Zarr stores take --compression zstd or gzip or blosc, not 'lzf' (lzf is for .h5 stores)",
        ),
        ("m.zarr", "foo", "m.zarr: Zarr stores take --compression zstd or gzip or blosc, not 'foo'; leave it out"),
    ],
)
def test_merge_refuses_an_unknown_compression_before_reading(
    tmp_path: Path, out_name: str, compression: str, message: str
) -> None:
    shard = write_store(tmp_path / "s.h5", make_rows(2))
    code, out = _invoke("cache", "merge", shard, "-o", tmp_path / out_name, "--compression", compression)
    assert code == 2
    assert message in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / out_name).exists()


def test_merge_with_a_valid_compression(tmp_path: Path) -> None:
    shard = write_store(tmp_path / "s.h5", make_rows(3))
    code, out = _invoke("cache", "merge", shard, "-o", tmp_path / "m.zarr", "--compression", "zstd")
    assert code == 0, out
    assert (tmp_path / "m.zarr" / "pooled" / "mean" / "zarr.json").read_text().count('"zstd"') == 1


def test_extract_refuses_a_compression_of_the_other_backend_before_extracting(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="toy", root=str(tmp_path)), [Utterance(id="a", audio="a.wav")])
    out = tmp_path / "x.h5"
    code, output = _invoke(
        "extract",
        "--model",
        "logmel",
        "-m",
        manifest,
        "-o",
        out,
        "--compression",
        "zstd",
        "--no-progress",
        "--num-workers",
        "0",
    )
    assert code == 2
    assert output.strip() == (
        f"error: {out}: HDF5 stores take --compression gzip or lzf, not 'zstd' (zstd is for "
        ".zarr stores); leave it out for an uncompressed store (fastest reads)"
    )
    assert not out.exists() and not (tmp_path / "x.h5.partial").exists()
