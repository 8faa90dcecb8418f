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
    heads = runner.invoke(app, ["fusion", "list", "--presets"]).stdout
    fleser = heads.split("fleser", 1)[1].splitlines()[1]
    assert "optimizer=adamw" in fleser and "lr=0.0001" in fleser and "epochs=100" in fleser  # its record
    assert all(name in heads for name in HEADS)
    protocols = runner.invoke(app, ["protocol", "list"]).stdout.splitlines()
    assert [line.split()[0] for line in protocols] == list(PROTOCOLS)
    assert any(line.startswith("speaker-kfold") and line.endswith("[-O k=5]") for line in protocols)
