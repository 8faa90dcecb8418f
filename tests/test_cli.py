"""The top-level CLI: lazy imports and global options."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from ser import __version__
from ser.cli import app

HEAVY = ("torch", "transformers", "numpy", "h5py", "zarr", "sklearn", "soundfile", "opensmile")


def test_importing_the_cli_and_printing_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom ser.cli import app\n"
        "for args in (['--help'], ['manifest', '--help'], ['protocol', '--help'], ['manifest', 'ravdess', "
        "'--help']):\n    assert CliRunner().invoke(app, args).exit_code == 0\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).stdout.strip() == f"ser {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "manifest" in result.stdout and "protocol" in result.stdout


def test_listings_come_from_the_registry_records() -> None:
    from ser.fusion.heads import HEADS
    from ser.manifests.protocols import PROTOCOLS

    runner = CliRunner()
    heads = runner.invoke(app, ["fusion", "list", "--recipes"]).stdout
    fleser = heads.split("fleser", 1)[1].splitlines()
    assert fleser[1].strip().startswith("paper:") and fleser[2].strip().startswith("ser:")
    assert "optimizer=adamw" in fleser[2] and "lr=0.0001" in fleser[2] and "epochs=100" in fleser[2]  # its record
    assert "normalize=false" in fleser[1] and "normalize" not in fleser[2]
    assert all(name in heads for name in HEADS)
    protocols = runner.invoke(app, ["protocol", "list"]).stdout.splitlines()
    assert [line.split()[0] for line in protocols] == list(PROTOCOLS)
    assert any(line.startswith("speaker-kfold") and line.endswith("[-O k=5]") for line in protocols)


def test_command_defaults_are_the_library_defaults() -> None:
    """A default shown by ``--help`` is the one the library applies, read from the same place."""
    import dataclasses
    import inspect

    import typer.main

    from ser.extract.runner import RunOptions
    from ser.fusion.config import TrainConfig
    from ser.predict.model import load_model

    def option_defaults(*path: str) -> dict[str, object]:
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        return {param.name: param.default for param in command.params}

    predict = option_defaults("predict")
    loader = inspect.signature(load_model).parameters
    assert predict["device"] == loader["device"].default == "auto"
    assert predict["batch_size"] == loader["batch_size"].default == 16
    extract = option_defaults("extract")
    run_options = {f.name: f.default for f in dataclasses.fields(RunOptions)}
    for name in ("batch_seconds", "num_workers", "flush_seconds"):
        assert extract[name] == run_options[name], name
    # ser fit's training flags override the config (None: keep it), so their help names the default
    engine_default = {f.name: f.default for f in dataclasses.fields(TrainConfig)}["engine"]
    command = typer.main.get_command(app).commands["fit"]  # type: ignore[attr-defined]
    engine = next(param for param in command.params if param.name == "engine")
    assert engine.default is None and f"(default {engine_default}:" in engine.help
