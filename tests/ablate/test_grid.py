"""Grid files: expansion (product, zip, include, exclude, seeds), view-option axes, and refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from ser.ablate.grid import GridError, apply_cell, cells, expand, load_grid, parse_grid, set_view_option
from ser.fusion.config import FitConfig, TrainConfig

BASE = {
    "manifest": "m.jsonl",
    "protocol": "speaker-loso",
    "audio": "a.h5:stat=mean",
    "fusion": "mlp",
    "train": {"epochs": 3},
}


def grid(**parts: object) -> dict:
    return {"base": BASE, **parts}


def test_product_zip_include_exclude_and_seeds() -> None:
    spec = parse_grid(
        grid(
            axes={"fusion": ["mlp", "fleser"], "train.lr": [0.01, 0.001]},
            zip=[{"text": [None, "t.h5"], "head.dropout": [0.1, 0.3]}],
            include=[{"fusion": "early_fusion", "text": "t.h5"}],
            exclude=[{"fusion": "mlp", "train.lr": 0.001}],
            seeds=[0, 1, 2],
        )
    )
    expanded = cells(spec)
    # 2 x 2 x 2 = 8 crossed cells, minus the 2 (mlp, lr 0.001) ones, plus one included cell
    assert len(expanded) == 7
    assert expanded[0] == (("fusion", "mlp"), ("train.lr", 0.01), ("text", None), ("head.dropout", 0.1))
    assert expanded[-1] == (("fusion", "early_fusion"), ("text", "t.h5"))
    assert all(dict(c).get("text") != "t.h5" or dict(c).get("head.dropout") in (0.3, None) for c in expanded)
    jobs = expand(spec)
    assert len(jobs) == 7 * 3
    assert [job.seed for job in jobs[:3]] == [0, 1, 2]
    first = jobs[0].config
    assert first.train.lr == 0.01 and first.train.epochs == 3 and first.text is None
    assert first.head == {"dropout": 0.1} and first.seeds == [0]
    assert len({job.run_dir for job in jobs}) == len(jobs)


def test_run_directory_is_the_one_ser_fit_would_use() -> None:
    spec = parse_grid(grid(axes={"train.lr": [0.01]}, seeds=[4], out="runs/g"))
    (job,) = expand(spec)
    by_hand = FitConfig(
        fusion="mlp",
        manifest="m.jsonl",
        protocol="speaker-loso",
        audio="a.h5:stat=mean",
        seeds=[4],
        train=TrainConfig(epochs=3, lr=0.01),
        out="runs/g",
    )
    assert job.run_dir == Path("runs/g") / by_hand.slug()


def test_view_option_axes_edit_the_base_view() -> None:
    assert set_view_option("a.h5:stat=mean", "layer", 6) == "a.h5:stat=mean,layer=6"
    assert set_view_option("a.h5:stat=mean,layer=2", "layer", "weighted") == "a.h5:stat=mean,layer=weighted"
    assert set_view_option("a.h5:stat=mean,layer=2", "seq", "layer_12") == "a.h5:seq=layer_12"
    assert set_view_option("a.h5:seq=layer_12", "stat", "cls") == "a.h5:stat=cls"
    assert set_view_option("a.h5:layer=3", "store", "b.h5") == "b.h5:layer=3"
    assert set_view_option("a.h5", "layer", 0) == "a.h5:layer=0"
    record = apply_cell(BASE, [("audio:layer", 12), ("audio:store", "wavlm.h5")])
    assert record["audio"] == "wavlm.h5:stat=mean,layer=12"
    assert BASE["audio"] == "a.h5:stat=mean"  # the base is not modified
    with pytest.raises(GridError, match="names no store"):
        apply_cell(BASE, [("text:layer", 3)])
    with pytest.raises(GridError, match="MODALITY:OPTION"):
        apply_cell(BASE, [("speech:layer", 3)])


def test_seeds_default_from_base_and_duplicates_collapse() -> None:
    spec = parse_grid({"base": {**BASE, "seeds": [5, 6]}, "axes": {"fusion": ["mlp", "mlp"]}})
    jobs = expand(spec)
    assert [j.seed for j in jobs] == [5, 6]  # the repeated value is one cell


def test_grid_without_axes_is_the_base_cell() -> None:
    (job,) = expand(parse_grid({"base": BASE}))
    assert job.cell == () and job.label() == "base"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"base": BASE, "axis": {}}, "unknown grid keys"),
        ({"base": BASE, "axes": {"fusion": []}}, "non-empty list"),
        ({"base": BASE, "axes": {"seed": [0, 1]}}, "seeds are not an axis"),
        ({"base": BASE, "zip": [{"text": ["a", "b"], "fusion": ["mlp"]}]}, "different lengths"),
        ({"base": BASE, "axes": {"fusion": ["mlp"]}, "zip": [{"fusion": ["mlp"], "text": ["t"]}]}, "more than one"),
        ({"base": BASE, "axes": {"fusion": ["mlp"]}, "exclude": [{"text": "t"}]}, "not axes of this grid"),
        ({"base": {**BASE, "train": {"device": "cuda:1"}}}, "leave it at auto"),
        ({"base": BASE, "seeds": ["x"]}, "list of integers"),
        ({"base": BASE, "axes": {"out": ["a", "b"]}}, "cannot vary"),
        ([1, 2], "a grid is a mapping"),
    ],
)
def test_malformed_grids_are_refused_by_name(record: object, message: str) -> None:
    with pytest.raises(GridError, match=message):
        parse_grid(record)


def test_a_bad_cell_names_the_cell() -> None:
    spec = parse_grid(grid(axes={"fusion": ["mlp"], "train.learning_rate": [0.1]}))
    with pytest.raises(GridError, match=r"grid cell fusion=mlp train.learning_rate=0.1: unknown train keys"):
        expand(spec)


def test_load_grid_with_overrides_and_out(tmp_path: Path) -> None:
    path = tmp_path / "my-grid.yaml"
    path.write_text(yaml.safe_dump(grid(axes={"fusion": ["mlp"]})))
    spec = load_grid(path, overrides=["train.epochs=7"])
    assert spec.name == "my-grid" and spec.out == str(Path("runs") / "my-grid")
    assert expand(spec)[0].config.train.epochs == 7
    assert load_grid(path, out="elsewhere").out == "elsewhere"
    path.write_text("base: [unclosed")
    with pytest.raises(GridError, match="not valid YAML"):
        load_grid(path)
    with pytest.raises(GridError, match="cannot read"):
        load_grid(tmp_path / "missing.yaml")


def test_expanding_a_grid_imports_no_torch(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid(axes={"fusion": ["mlp", "fleser"]})))
    code = (
        "import sys; from ser.ablate.grid import expand, load_grid; expand(load_grid(sys.argv[1])); "
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_recipe_is_a_grid_axis() -> None:
    """``recipe: [ser, paper]``: each cell starts from its recipe; the base's own values stay departures."""
    base = {**BASE, "fusion": "server", "audio": "a.h5:seq", "text": "t.h5"}
    jobs = expand(parse_grid({"base": base, "axes": {"recipe": ["ser", "paper"]}}))
    by_recipe = {job.config.recipe: job.config for job in jobs}
    assert set(by_recipe) == {"ser", "paper"}
    ser, paper = by_recipe["ser"], by_recipe["paper"]
    assert (ser.train.batch_size, paper.train.batch_size) == (32, 1)
    assert (ser.train.epochs, paper.train.epochs) == (3, 3)  # the base's value wins over both recipes
    assert paper.train.checkpoint == "last" and ser.train.checkpoint == "best"
    assert paper.text == "t.h5:stat=pooler,layer=last" and ser.text == "t.h5"
    assert jobs[0].run_dir != jobs[1].run_dir and {job.run_dir.name.split("-")[1] for job in jobs} == {"ser", "paper"}
