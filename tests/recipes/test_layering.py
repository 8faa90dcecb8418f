"""Recipes sit between the stages and the CLI: the CLI imports them only inside command bodies, and they
never import the CLI."""

from __future__ import annotations

import subprocess
import sys

RECIPES = ("ser.recipes", "ser.recipes.finetune", "ser.recipes.demo", "ser.recipes.shards")


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_help_of_the_recipe_commands_loads_no_recipe_and_no_torch() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom ser.cli import app\n"
        "for command in ('finetune', 'demo', 'extract'):\n"
        "    assert CliRunner().invoke(app, [command, '--help']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('ser.recipes') or m in ('torch', 'numpy')))"
    )
    assert _run(code) == "[]"


def test_recipes_import_without_the_cli() -> None:
    code = f"import sys\nfor name in {RECIPES!r}:\n    __import__(name)\n" + (
        "print(sorted(m for m in sys.modules if m == 'ser.cli' or m.startswith('ser.commands')))"
    )
    assert _run(code) == "[]"
