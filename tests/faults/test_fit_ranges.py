"""Issue 25, items 12 and 15: every ``ser fit`` value outside its range (head options checked from their
declared types, seeds, threads) and a repeated ``--search`` key are refused in one line with exit 2,
before any run directory exists."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.errors import UserError
from ser.fusion.config import parse_search
from ser.fusion.heads import HEADS, check_head_ranges, field_range, head_module, resolve_head_config
from tests.fakes.caches import make_corpus

BAD_VALUES = [
    (["--set", "train.threads=100000"], "train.threads must be a whole number >= 0 and <= 1024, not 100000"),
    (["--set", "head.dropout=nan"], "head.dropout must be a finite number >= 0 and < 1, not nan"),
    (["--set", "head.dropout=1"], "head.dropout must be a finite number >= 0 and < 1"),
    (["--set", "head.dropout=-0.1"], "head.dropout must be a finite number >= 0 and < 1"),
    (["--set", "head.input_dropout=inf"], "head.input_dropout must be a finite number >= 0 and < 1"),
    (["--set", "head.hidden=[-5]"], "head.hidden must be a whole number >= 1 and <= 65536"),
    (["--set", "head.hidden=[1e8]"], "head.hidden must be a whole number >= 1 and <= 65536"),
    (["--search", "head.hidden=[[-3],[8]]"], "head.hidden must be a whole number >= 1 and <= 65536"),
    (["--search", "head.dropout=0.1,nan"], "head.dropout must be a finite number >= 0 and < 1"),
    (["--search", "train.threads=1,5000"], "train.threads must be a whole number >= 0 and <= 1024"),
    (["--seeds", "99999999999999999999"], "every seed must be a whole number >= 0 and <= 4294967295"),
    (["--seeds", "0,4294967296"], "every seed must be a whole number >= 0 and <= 4294967295"),
    (
        ["--search", "train.lr=1e-3", "--search", "train.lr=1e-4"],
        "--search train.lr is given twice; give all its values in one flag",
    ),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    manifest, audio, _ = make_corpus(tmp_path_factory.mktemp("fit-ranges"), n_speakers=3, per_speaker=8)
    return manifest, audio


def _fit(corpus: tuple[Path, Path], out: Path, *extra: str) -> tuple[int, str]:
    manifest, audio = corpus
    args = ["fit", "-f", "mlp", "-m", str(manifest), "-p", "speaker-loso", "--audio", f"{audio}:layer=1"]
    args += ["--set", "val_by=utterance", "--set", "train.epochs=1", "--folds", "spk0", "-o", str(out), *extra]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


@pytest.mark.parametrize(("extra", "message"), BAD_VALUES, ids=[" ".join(e) for e, _ in BAD_VALUES])
def test_out_of_range_values_are_one_line_exit_2_and_write_nothing(
    corpus: tuple[Path, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    code, output = _fit(corpus, tmp_path / "runs", *extra)
    assert code == 2, output
    assert message in output and "Traceback" not in output
    # one error line (the progress line "ser fit: HEAD, checking the inputs ..." goes to stderr before it)
    assert len([line for line in output.strip().splitlines() if not line.startswith("ser fit: ")]) == 1
    assert not (tmp_path / "runs").exists()


def test_edge_values_inside_the_ranges_still_fit(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    code, output = _fit(
        corpus,
        tmp_path / "runs",
        "--seeds",
        "4294967295",
        "--set",
        "train.threads=1",
        "--set",
        "head.hidden=[1]",
        "--set",
        "head.dropout=0",
    )
    assert code == 0, output
    assert len(list((tmp_path / "runs").glob("*/metrics.json"))) == 1


def test_a_repeated_search_key_is_refused_and_distinct_keys_combine() -> None:
    with pytest.raises(UserError, match=r"--search head\.dropout is given twice"):
        parse_search(["head.dropout=0.1", "train.lr=1e-3", "head.dropout=0.2"])
    assert parse_search(["head.dropout=0.1,0.2", "train.lr=1e-3"]) == {"head.dropout": [0.1, 0.2], "train.lr": [0.001]}


@pytest.mark.parametrize("name", list(HEADS))
def test_every_head_default_and_recipe_passes_and_every_number_field_has_a_range(name: str) -> None:
    info = HEADS[name]
    for recipe in info.recipes.values():
        resolve_head_config(name, dict(recipe.head))
    config = head_module(name).CONFIG
    hints = typing.get_type_hints(config)
    for item in dataclasses.fields(config):
        is_number = any(t in (int, float) for t in (hints[item.name], *_args(hints[item.name])))
        assert (field_range(item.name, hints[item.name]) is not None) == is_number, item.name


def _args(annotation: typing.Any) -> list[typing.Any]:
    return [a for arg in typing.get_args(annotation) for a in (arg, *_args(arg))]


def test_ranges_come_from_the_declared_types() -> None:
    @dataclasses.dataclass(kw_only=True)
    class Toy:
        widths: tuple[int, ...] = (4, 8)
        rate: float | None = None
        head_dropout: float = 0.5
        pad: float = -13.8
        name: str = "x"

    check_head_ranges(Toy())
    with pytest.raises(UserError, match=r"head\.widths must be a whole number >= 1 and <= 65536, not \(4, 0\)"):
        check_head_ranges(Toy(widths=(4, 0)))
    with pytest.raises(UserError, match=r"head\.rate must be a finite number, not inf"):
        check_head_ranges(Toy(rate=float("inf")))
    with pytest.raises(UserError, match=r"head\.head_dropout must be a finite number >= 0 and < 1, not 1\.0"):
        check_head_ranges(Toy(head_dropout=1.0))
