"""``ser finetune --fold all --extract --fit-config``: the per-fold adapt-extract-fit loop in one command
on tiny upstreams, provenance carried into each cache, and the refusal to test a fold on another fold's
adapted cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser.adapt.config import FinetuneConfig
from ser.cache.reader import CacheReader
from ser.cli import app
from tests.fakes.tones import write_tone_corpus

pytest.importorskip("transformers")

COMMON = [
    "--val-by",
    "utterance",
    "--val-fraction",
    "0.25",
    "--num-workers",
    "0",
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--crop-seconds",
    "0.5",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.extract.conftest import _save_ssl

    root = tmp_path_factory.mktemp("finetune-cli")
    return {
        "manifest": write_tone_corpus(root),
        "model": _save_ssl(root / "tiny", "hubert", "group", seed=5),
        "root": root,
    }


def test_the_whole_per_fold_loop_in_one_command(setup: dict[str, Path]) -> None:
    out = setup["root"] / "ft"
    fit_yaml = setup["root"] / "fit.yaml"
    fit_yaml.write_text(f"fusion: mlp\nout: {setup['root'] / 'runs'}\ntrain: {{epochs: 3, patience: 0}}\n")
    result = CliRunner().invoke(
        app,
        [
            "finetune",
            "--model",
            "hubert",
            "--checkpoint",
            str(setup["model"]),
            "-m",
            str(setup["manifest"]),
            "-p",
            "speaker-loso",
            "--fold",
            "all",
            "-o",
            str(out),
            "--unfreeze",
            "1",
            *COMMON,
            "--extract",
            "--fit-config",
            str(fit_yaml),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("supervised checkpoint") == 4
    for fold in ("spk0", "spk1", "spk2", "spk3"):
        with CacheReader(out / fold / "features.h5") as reader:
            adaptation = reader.attrs["upstream"]["adaptation"]
        assert adaptation["fold"] == fold and fold not in adaptation["speakers"]
    run_dir = next((setup["root"] / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["fold"] for r in metrics["runs"]] == ["spk0", "spk1", "spk2", "spk3"]
    assert "mean ± std over folds: UA" in result.output  # one seed
    # one fold's adapted cache for every fold: refused before anything is trained
    leaky = CliRunner().invoke(
        app,
        [
            "fit",
            "--fusion",
            "mlp",
            "-m",
            str(setup["manifest"]),
            "-p",
            "speaker-loso",
            "--audio",
            f"{out / 'spk0' / 'features.h5'}:layer=weighted",
            "--set",
            "val_by=utterance",
            "--out",
            str(setup["root"] / "leak"),
        ],
    )
    assert leaky.exit_code == 2 and "would leak" in leaky.output
    assert not (setup["root"] / "leak").exists()
    # a second run reuses every checkpoint and store
    again = CliRunner().invoke(
        app,
        [
            "finetune",
            "--model",
            "hubert",
            "--checkpoint",
            str(setup["model"]),
            "-m",
            str(setup["manifest"]),
            "-p",
            "speaker-loso",
            "--fold",
            "spk1",
            "-o",
            str(out),
            "--unfreeze",
            "1",
            *COMMON,
            "--extract",
        ],
    )
    assert again.exit_code == 0 and "reused" in again.output and "already complete" in again.output


def test_bad_requests_are_one_line_errors(setup: dict[str, Path]) -> None:
    runner = CliRunner()
    base = [
        "finetune",
        "--checkpoint",
        str(setup["model"]),
        "-m",
        str(setup["manifest"]),
        "-p",
        "speaker-loso",
        "-o",
        str(setup["root"] / "bad"),
        *COMMON,
    ]
    cases = [
        (["--model", "bert", "--fold", "spk0"], "--model must be one of"),
        (["--model", "hubert", "--fold", "spk9"], "spk9"),
        (
            ["--model", "hubert", "--fold", "spk0", "--unfreeze", "many"],
            "--unfreeze must be a whole number or one of all",
        ),
        (["--model", "hubert", "--fold", "spk0", "-O", "k=2"], "protocol 'speaker-loso' has no option k"),
        (["--model", "hubert", "--fold", "spk0", "--fit-config", "f.yaml"], "add --extract"),
        (["--model", "hubert", "--fold", "spk0", "--mode", "magic"], "--mode must be"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
    clash = setup["root"] / "clash.yaml"
    clash.write_text("fusion: mlp\nprotocol: speaker-kfold\n")
    result = runner.invoke(
        app, [*base, "--model", "hubert", "--fold", "spk0", "--unfreeze", "0", "--extract", "--fit-config", str(clash)]
    )
    assert result.exit_code == 2 and "sets protocol differently" in result.output


@pytest.mark.parametrize(
    ("unfreeze", "recorded"), [(["--unfreeze", "3"], 3), (["--unfreeze", "all"], "all"), ([], None)]
)
def test_the_recorded_settings_are_typed(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch, unfreeze: list[str], recorded: object
) -> None:
    import ser.recipes.finetune
    from ser.recipes.finetune import FinetuneResult

    seen: list[FinetuneConfig] = []

    def record(cfg: FinetuneConfig, out: Path, **kwargs: object) -> FinetuneResult:
        seen.append(cfg)
        return FinetuneResult()

    monkeypatch.setattr(ser.recipes.finetune, "run_finetune", record)
    args = ["finetune", "--model", "hubert", "-m", str(setup["manifest"]), "-p", "speaker-kfold", "-O", "k=2"]
    result = CliRunner().invoke(app, [*args, "--fold", "all", "-o", str(setup["root"] / "typed"), *unfreeze])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert cfg.protocol_options == {"k": 2} and type(cfg.protocol_options["k"]) is int
    assert cfg.unfreeze == recorded and type(cfg.unfreeze) is type(recorded)
    assert cfg.model == "facebook/hubert-base-ls960"  # the default preset's upstream
