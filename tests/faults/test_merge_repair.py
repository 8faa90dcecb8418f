"""Nothing laundered, nothing dropped: ``ser cache merge`` refuses a damaged shard instead of writing fresh
checksums over its damage, and ``ser extract --repair`` with a smaller manifest keeps the rows it does not name."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from ser.cache.format import CacheError
from ser.cache.merge import merge_stores
from ser.cache.reader import CacheReader
from ser.cache.verify import verify_store
from ser.cli import app
from ser.manifests.schema import read_manifest, write_manifest
from tests.cache.storeutil import BACKENDS, make_attrs, make_rows, read_content, tamper, write_store
from tests.fakes.demo import demo_manifest

# ------------------------------------------------------------------------------------------------ merge


def _shards(tmp_path: Path, suffix: str) -> list[Path]:
    rows = make_rows(9)
    return [
        write_store(tmp_path / f"shard{i}{suffix}", rows[3 * i : 3 * i + 3], attrs=make_attrs(shard=f"{i}/3"))
        for i in range(3)
    ]


@pytest.mark.parametrize("suffix", BACKENDS)
def test_merge_refuses_a_shard_with_a_changed_value_and_writes_nothing(tmp_path: Path, suffix: str) -> None:
    shards = _shards(tmp_path, suffix)
    value = float(read_content(shards[1]).pooled["mean"][2, 0, 1])
    tamper(shards[1], "pooled/mean", (2, 0, 1), value + 3.0)  # finite and plausible: only the checksum sees it
    out = tmp_path / f"merged{suffix}"
    with pytest.raises(CacheError) as caught:
        merge_stores(shards, out)
    message = str(caught.value)
    assert f"shard {shards[1]} is damaged" in message
    assert "pooled/mean: rows 0-2 differ from the checksums" in message
    assert "--shard 1/3" in message and "--repair" in message
    assert str(shards[0]) not in message and str(shards[2]) not in message
    assert not out.exists()
    assert [p.name for p in sorted(tmp_path.iterdir())] == sorted(p.name for p in shards)


def test_merge_cli_names_the_damaged_shard_in_one_line(tmp_path: Path) -> None:
    shards = _shards(tmp_path, ".h5")
    with h5py.File(shards[2], "r+") as handle:
        handle["pooled/std"][0, 1, 2] += 3.0
    out = tmp_path / "merged.h5"
    result = CliRunner().invoke(app, ["cache", "merge", *map(str, shards), "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(shards[2]) in lines[0] and "pooled/std: rows 0-2" in lines[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_merge_of_intact_shards_still_verifies_ok(tmp_path: Path) -> None:
    shards = _shards(tmp_path, ".h5")
    merged = merge_stores(shards, tmp_path / "merged.h5")
    report = verify_store(merged)
    assert report.ok, report.problems
    assert len(read_content(merged).ids) == 9


# ------------------------------------------------------------------------------------------------ repair

N_ROWS, N_SMALL = 12, 7


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A 12-row eGeMAPS store of the demo clips (a manifest of 12 rows and one of its first 7), extracted twice:
    with the usual checksum blocks (all rows in one block) and with one row per block."""
    folder = tmp_path_factory.mktemp("repair")
    full = demo_manifest(folder, speakers=["Actor_01"])
    rows = read_manifest(full)
    write_manifest(full, rows.header, rows.utterances[:N_ROWS])
    small = folder / "small.jsonl"
    write_manifest(small, rows.header, rows.utterances[:N_SMALL])
    stores = {"full": full, "small": small}
    code, output = _extract(full, folder / "coarse.h5")
    assert code == 0, output
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ser.cache.checksums.CHECK_BYTES", 1)  # one row per checksummed block
        code, output = _extract(full, folder / "fine.h5")
    assert code == 0, output
    stores.update(coarse=folder / "coarse.h5", fine=folder / "fine.h5")
    yield stores


def _extract(manifest: Path, store: Path, *extra: str) -> tuple[int, str]:
    command = ["extract", "--model", "egemaps", "-m", str(manifest), "-o", str(store), "--num-workers", "0"]
    result = CliRunner().invoke(app, [*command, "--no-progress", *extra])
    return result.exit_code, result.output


def _copy(source: Path, folder: Path) -> Path:
    folder.mkdir()
    return Path(shutil.copy(source, folder / "f.h5"))


def _damage(store: Path, uid: str) -> None:
    with CacheReader(store) as reader:
        row = reader.index[uid]
    with h5py.File(store, "r+") as handle:
        handle["pooled/functionals"][row, 0, 3] += 3.0


def _functionals(store: Path) -> dict[str, np.ndarray]:
    with CacheReader(store) as reader:
        values = reader.pooled("functionals")
        return {uid: values[row] for uid, row in reader.index.items()}


def test_repair_with_a_smaller_manifest_refuses_damage_it_cannot_re_extract(
    extracted: dict[str, Path], tmp_path: Path
) -> None:
    """All rows share one checksum block: the rows outside the manifest cannot be vouched for, so --repair refuses
    (it used to drop them: 12 rows in, 7 out, exit 0), naming them and the manifest to give, and changes nothing."""
    store = _copy(extracted["coarse"], tmp_path / "run")
    outside = [u.id for u in read_manifest(extracted["full"]).utterances[N_SMALL:]]
    _damage(store, read_manifest(extracted["small"]).utterances[2].id)
    before = store.read_bytes()
    code, output = _extract(extracted["small"], store, "--repair")
    assert code == 2, output
    assert f"{N_ROWS - N_SMALL} damaged row(s) are not in this manifest" in output
    assert repr(sorted(outside)[0]) in output and "the manifest that covers them" in output
    assert store.read_bytes() == before  # nothing dropped, nothing rewritten
    assert sorted(p.name for p in store.parent.iterdir()) == ["f.h5"]
    with CacheReader(store) as reader:
        assert len(reader) == N_ROWS
    # the manifest that covers every row repairs it, identical to the extraction
    code, output = _extract(extracted["full"], store, "--repair")
    assert code == 0 and f"{N_ROWS} damaged rows" in output, output
    assert verify_store(store).ok
    want, got = _functionals(extracted["coarse"]), _functionals(store)
    assert sorted(got) == sorted(want)
    for uid in want:
        np.testing.assert_array_equal(got[uid], want[uid], err_msg=uid)


def test_repair_with_a_smaller_manifest_keeps_the_rows_it_does_not_name(
    extracted: dict[str, Path], tmp_path: Path
) -> None:
    """One row per block: the damaged manifest row is extracted again, the 5 rows outside the manifest are kept."""
    store = _copy(extracted["fine"], tmp_path / "run")
    damaged = read_manifest(extracted["small"]).utterances[2].id
    _damage(store, damaged)
    code, output = _extract(extracted["small"], store, "--repair")
    assert code == 0 and "1 damaged row" in output, output
    got, want = _functionals(store), _functionals(extracted["fine"])
    assert sorted(got) == sorted(want) and len(got) == N_ROWS
    for uid in want:
        np.testing.assert_array_equal(got[uid], want[uid], err_msg=uid)
    assert verify_store(store).ok


def test_repair_refuses_a_damaged_row_outside_the_manifest(extracted: dict[str, Path], tmp_path: Path) -> None:
    store = _copy(extracted["fine"], tmp_path / "run")
    outside = read_manifest(extracted["full"]).utterances[N_SMALL + 1].id
    _damage(store, outside)
    code, output = _extract(extracted["small"], store, "--repair")
    assert code == 2, output
    assert f"1 damaged row(s) are not in this manifest ({outside!r};" in output
    with CacheReader(store) as reader:
        assert len(reader) == N_ROWS
