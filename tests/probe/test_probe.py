"""``ser probe``: one probe per layer equals a plain fit on that layer's view, the table has one row per
layer plus the learned mix with the paired comparison, one-layer stores and sequence heads are refused,
and the figures hold the expected series."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.cli import app
from ser.probe.figures import layer_weights_figure, probe_figure
from ser.probe.table import probe_rows
from tests.fakes.caches import make_corpus
from tests.figure_bounds import texts_outside
from tests.probe.runs import ua_by_member

COMMON = ["-p", "speaker-loso", "-l", "ravdess8", "--folds", "spk0,spk1", "--set", "val_by=utterance"]
# no dropout: the stacked and sequential engines then give the same numbers
MLP = [
    "--set",
    "head.dropout=0",
    "--set",
    "head.input_dropout=0",
    "--set",
    "train.epochs=4",
    "--set",
    "train.patience=0",
    "--set",
    "train.batch_size=16",
    "--seeds",
    "0,1",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(manifest, 3-layer audio store whose layer 1 carries the labels, 1-layer text store)."""
    return make_corpus(tmp_path_factory.mktemp("probe"), n_speakers=4, per_speaker=12)


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _summary(output: str) -> Path:
    return Path(next(line for line in output.splitlines() if line.endswith("probe.csv"))[len("wrote ") :]).parent


def _fit_run(output: str) -> Path:
    return Path(output.strip().splitlines()[-1].split("run directory: ")[1])


def test_logreg_probe_equals_a_plain_fit_on_each_layer(corpus: tuple[Path, Path, Path], tmp_path: Path) -> None:
    manifest, audio, _ = corpus
    output = _invoke(
        ["probe", "-f", "logreg", "-m", str(manifest), "--audio", str(audio), *COMMON, "-o", str(tmp_path / "p")]
    )
    folder = _summary(output)
    rows = list(csv.DictReader((folder / "probe.csv").open()))
    assert [row["layer"] for row in rows] == ["0", "1", "2"]  # logreg cannot learn layer weights: no mix
    assert not (folder / "layer_weights.png").exists() and (folder / "probe.png").exists()
    for row in rows:
        fit = _invoke(
            [
                "fit",
                "-f",
                "logreg",
                "-m",
                str(manifest),
                "--audio",
                f"{audio}:stat=mean,layer={row['layer']}",
                *COMMON,
                "-o",
                str(tmp_path / "f"),
            ]
        )
        plain = _fit_run(fit)
        assert plain.name == row["run_dir"]  # the probe wrote the run directory `ser fit` writes for that view
        assert ua_by_member(plain) == ua_by_member(tmp_path / "p" / row["run_dir"])  # the same numbers, fold by fold
        assert float(row["ua_mean"]) == pytest.approx(
            json.loads((plain / "metrics.json").read_text())["test"]["ua"]["mean"]
        )
    best = max(rows, key=lambda row: float(row["ua_mean"]))
    assert best["layer"] == "1" and best["verdict"] == "best layer"  # the layer that carries the labels
    others = [row for row in rows if row is not best]
    assert all(float(row["diff_vs_best"]) < 0 and row["wilcoxon_p"] for row in others)
    assert "| 1 |" in output and "best layer" in output


def test_mlp_sweep_stacked_equals_sequential_and_a_plain_fit(corpus: tuple[Path, Path, Path], tmp_path: Path) -> None:
    manifest, audio, _ = corpus
    base = ["probe", "-f", "mlp", "-m", str(manifest), "--audio", str(audio), *COMMON, *MLP, "-q"]
    stacked = _summary(_invoke([*base, "--engine", "stacked", "-o", str(tmp_path / "s")]))
    sequential = _summary(_invoke([*base, "--engine", "sequential", "-o", str(tmp_path / "q")]))
    rows = {
        name: list(csv.DictReader((folder / "probe.csv").open()))
        for name, folder in (("s", stacked), ("q", sequential))
    }
    assert [row["layer"] for row in rows["s"]] == ["0", "1", "2", "weighted"]
    for a, b in zip(rows["s"], rows["q"], strict=True):
        ua_a, ua_b = ua_by_member(tmp_path / "s" / a["run_dir"]), ua_by_member(tmp_path / "q" / b["run_dir"])
        assert ua_a.keys() == ua_b.keys() and all(abs(ua_a[k] - ua_b[k]) <= 1e-5 for k in ua_a)
        assert a["n_folds"] == "2" and a["n_seeds"] == "2"
    plain = _fit_run(
        _invoke(
            [
                "fit",
                "-f",
                "mlp",
                "-m",
                str(manifest),
                "--audio",
                f"{audio}:stat=mean,layer=2",
                *COMMON,
                *MLP,
                "--engine",
                "sequential",
                "-q",
                "-o",
                str(tmp_path / "f"),
            ]
        )
    )
    probe_ua = ua_by_member(tmp_path / "s" / rows["s"][2]["run_dir"])
    assert all(abs(probe_ua[k] - v) <= 1e-5 for k, v in ua_by_member(plain).items())
    weighted = rows["s"][3]
    assert weighted["diff_vs_best"] != "" and weighted["verdict"] != "best layer"  # compared with the best layer
    assert (stacked / "probe.png").exists() and (stacked / "layer_weights.png").exists()


def test_the_figures_hold_every_layer_the_mix_and_the_weights(corpus: tuple[Path, Path, Path], tmp_path: Path) -> None:
    manifest, audio, _ = corpus
    out = tmp_path / "p"
    folder = _summary(
        _invoke(
            [
                "probe",
                "-f",
                "mlp",
                "-m",
                str(manifest),
                "--audio",
                str(audio),
                *COMMON,
                *MLP,
                "--layers",
                "0,2",
                "-q",
                "-o",
                str(out),
            ]
        )
    )
    rows_csv = list(csv.DictReader((folder / "probe.csv").open()))
    assert [row["layer"] for row in rows_csv] == ["0", "2", "weighted"]
    rows = probe_rows([r["layer"] for r in rows_csv], [out / r["run_dir"] for r in rows_csv], "audio")
    fig = probe_figure("title", rows, chance=1 / 8)
    curve, mix, chance = fig.axes[0].get_lines()
    assert list(curve.get_xdata()) == [0, 2]
    assert list(curve.get_ydata()) == pytest.approx([100 * float(r["ua_mean"]) for r in rows_csv[:2]])
    assert list(mix.get_ydata()) == pytest.approx([100 * float(rows_csv[2]["ua_mean"])] * 2)
    assert list(chance.get_ydata()) == pytest.approx([12.5, 12.5])
    assert len(fig.axes[0].collections) == 1 and len(fig.axes[0].patches) == 1  # the layer band, the mix band
    assert texts_outside(fig) == []
    weights = rows[2].layer_weights
    assert len(weights) == 4 and all(len(w) == 3 and sum(w) == pytest.approx(1.0, abs=1e-5) for w in weights)
    bars = layer_weights_figure("title", weights)
    heights = [patch.get_height() for patch in bars.axes[0].patches]
    assert heights == pytest.approx(
        [sum(w[i] for w in weights) / 4 for i in range(3)]
    )  # every layer, not only probed ones
    assert texts_outside(bars) == []


def test_a_one_layer_store_and_a_sequence_head_are_refused(corpus: tuple[Path, Path, Path], tmp_path: Path) -> None:
    manifest, audio, text = corpus
    one = CliRunner().invoke(
        app, ["probe", "-f", "mlp", "-m", str(manifest), "--text", str(text), *COMMON, "-o", str(tmp_path)]
    )
    assert one.exit_code == 2 and "text.h5 holds 1 layer of 'mean'" in one.output
    seq = CliRunner().invoke(app, ["probe", "-f", "cnn_bilstm", "-m", str(manifest), "--audio", str(audio), *COMMON])
    assert seq.exit_code == 2 and "head cnn_bilstm takes seq audio features" in seq.output
    wrong = CliRunner().invoke(
        app, ["probe", "-f", "mlp", "-m", str(manifest), "--audio", str(audio), "--layers", "5", *COMMON]
    )
    assert wrong.exit_code == 2 and "has layers 0..2" in wrong.output
    assert not list(tmp_path.iterdir())  # nothing written
