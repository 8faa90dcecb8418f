"""The top-level CLI: lazy imports, global options, the help (order, summaries, option help) and its reference page."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
import typer.main
from typer.testing import CliRunner

from ser import __version__
from ser.cli import MANIFEST_ORDER, PIPELINE, app, ordered
from tests.conftest import REPO_ROOT

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


# --------------------------------------------------------------------------------------- help: order, summaries, help


def _tree() -> list[tuple[typer.Context, Any]]:
    """``(context, command)`` of every command, root first, children in the order their group lists them."""
    root = typer.main.get_command(app)
    found = []

    def walk(command: Any, ctx: typer.Context) -> None:
        found.append((ctx, command))
        for name in command.list_commands(ctx) if hasattr(command, "list_commands") else ():
            child = command.get_command(ctx, name)
            walk(child, child.context_class(child, info_name=name, parent=ctx))

    walk(root, root.context_class(root, info_name="ser"))
    return found


def _listed(*args: str) -> list[str]:
    """The command names the help of ``ser ARGS`` lists, in order."""
    output = CliRunner().invoke(app, [*args, "--help"], terminal_width=80).output
    section = output.split("\nCommands:\n", 1)[1]
    return [line.split()[0] for line in section.splitlines() if line.startswith("  ") and line.strip()]


def test_help_lists_the_commands_in_pipeline_order() -> None:
    pipeline = [
        "manifest",
        "protocol",
        "extractors",
        "extract",
        "cache",
        "finetune",
        "fusion",
        "fit",
        "probe",
        "ablate",
        "report",
        "predict",
        "demo",
    ]
    assert list(PIPELINE) == pipeline and _listed() == pipeline
    manifest_commands = _listed("manifest")
    assert manifest_commands == list(MANIFEST_ORDER)
    assert manifest_commands[:8] == sorted(manifest_commands[:8]) and "iemocap" in manifest_commands[:8]
    assert manifest_commands[8:] == ["csv", "join", "validate", "label-sets"]
    assert _listed("protocol") == ["list", "show"]
    assert _listed("cache") == ["info", "verify", "merge"]
    assert _listed("fusion") == ["list", "show"]


def test_an_ordered_group_lists_unnamed_commands_after_the_named_ones_in_insertion_order() -> None:
    group = ordered("c", "a")(name="g", commands={"b": typer.main.TyperCommand("b"), "a": None, "d": None, "c": None})
    assert group.list_commands(typer.Context(group)) == ["c", "a", "b", "d"]


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{ctx.command_path} {param.opts[0] if param.opts else param.name}"
        for ctx, command in _tree()
        for param in command.get_params(ctx)
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert missing == []
    assert len(_tree()) == 33  # the walk reaches every command (13 top-level, 20 in the groups), root included


def test_every_command_has_a_one_sentence_summary_that_fits_an_80_column_help() -> None:
    problems = []
    for ctx, command in _tree():
        children = [command.get_command(ctx, name) for name in getattr(command, "commands", {})]
        if not children:
            continue
        width = 80 - 2 - 6 - max(len(child.name) for child in children)  # what click's help leaves the text
        for child in children:
            text = inspect.cleandoc(child.short_help or child.help or "")
            summary = text.split("\n\n")[0]
            where = f"{ctx.command_path} {child.name}"
            if "\n" in summary:
                problems.append(f"{where}: summary spans lines: {summary!r}")
            if child.get_short_help_str(limit=10_000) != summary:  # click cuts at the first sentence's end
                problems.append(f"{where}: summary is more than one sentence: {summary!r}")
            if not summary or len(summary) > width:
                problems.append(f"{where}: summary is {len(summary)} characters, {width} fit: {summary!r}")
    assert problems == []


def test_help_fits_80_columns_and_cuts_no_summary() -> None:
    runner = CliRunner()
    for ctx, _command in _tree():
        args = ctx.command_path.split()[1:]
        output = runner.invoke(app, [*args, "--help"], terminal_width=80).output
        assert max(len(line) for line in output.splitlines()) <= 80, ctx.command_path
        if "\nCommands:\n" in output:
            assert not any(line.rstrip().endswith("...") for line in output.split("\nCommands:\n")[1].splitlines())
    top = runner.invoke(app, ["--help"], terminal_width=80).output
    assert "  fit         Train a fusion head on cached features under a protocol.\n" in top


def test_help_rewraps_paragraphs_and_needs_no_rich() -> None:
    """Plain click help re-wraps every paragraph to the terminal (rich keeps the docstring's line breaks)."""
    output = CliRunner().invoke(app, ["extract", "--help"], terminal_width=80).output
    paragraph = output.split("\n\n")[2]  # usage, summary, then the first paragraph of details
    assert paragraph.startswith("  Resumable: run the same command again")
    lines = paragraph.splitlines()
    assert len(lines) >= 3 and all(len(line) > 60 for line in lines[:-1])  # filled to the width, not ragged
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom ser.cli import app\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\nprint('rich' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


# --------------------------------------------------------------------------------------- the generated CLI reference


def _gen_cli() -> Any:
    spec = importlib.util.spec_from_file_location("gen_cli", REPO_ROOT / "docs" / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(page: str) -> dict[str, str]:
    """``anchor -> section text`` of the generated page, in page order."""
    parts = re.split(r"^#{2,3} `[^`]+` \{ #([a-z0-9-]+) \}$", page, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _terms(section: str) -> dict[str, tuple[list[str], str]]:
    """``names -> ([type, default], help)`` of a section's definition list (``NAMES · TYPE · DEFAULT``)."""
    lines = section.splitlines()
    found = {}
    for term, definition in itertools.pairwise(lines):
        if definition.startswith(":   "):
            names, *rest = term.split(" · ")
            found[names] = (rest, definition.removeprefix(":   "))
    return found


def test_the_reference_has_a_section_per_command_with_every_option() -> None:
    gen = _gen_cli()
    sections = _sections(gen.render_page(app))
    tree = _tree()
    assert list(sections) == [ctx.command_path.replace(" ", "-") for ctx, _ in tree]
    for ctx, command in tree:
        section = sections[ctx.command_path.replace(" ", "-")]
        assert f"```text\nUsage: {ctx.command_path} " in section
        terms = _terms(section)
        assert len(terms) == len(command.params), ctx.command_path  # every argument and option, --help aside
        for param in command.params:
            name = max(param.opts, key=len) if param.param_type_name == "option" else param.name.upper()
            found = [key for key in terms if f"`{name}`" in key]
            assert len(found) == 1, (ctx.command_path, name)
            assert terms[found[0]][1] == gen.markdown_text(param.help), (ctx.command_path, name)
    root = sections["ser"]
    listed = [re.match(r"\| \[`([a-z-]+)`\]", line) for line in root.splitlines()]
    assert [match.group(1) for match in listed if match] == list(PIPELINE)


def test_the_reference_shows_types_and_defaults_from_the_code() -> None:
    from ser.ablate.runner import RunnerOptions
    from ser.predict import defaults

    sections = _sections(_gen_cli().render_page(app))

    def term(anchor: str, names: str) -> list[str]:
        return _terms(sections[anchor])[names][0]

    assert term("ser-predict", "`--batch-size`") == ["int", f"default: `{defaults.BATCH_SIZE}`"]
    assert term("ser-predict", "`RUN_DIR`") == ["path", "required"]
    assert term("ser-predict", "`INPUTS`") == ["path, any number", "optional"]
    assert term("ser-cache-merge", "`SHARDS`") == ["path, one or more", "required"]
    assert term("ser-ablate", "`-k`, `--jobs-per-gpu`") == ["int ≥ 1", f"default: `{RunnerOptions().jobs_per_gpu}`"]
    assert term("ser-ablate", "`-j`, `--workers`") == ["int ≥ 1", "optional"]
    assert term("ser-manifest-ravdess", "`--durations` / `--no-durations`") == ["flag", "default: `--durations`"]
    assert term("ser-manifest-esd", "`--language`") == ["str, repeatable", "default: `zh`, `en`"]
    assert term("ser-protocol-show", "`--val-by`") == ["speaker|utterance", "default: `speaker`"]
    assert term("ser-extract", "`-o`, `--output`") == ["path", "required"]
    assert term("ser", "`-v`, `--verbose`") == ["count (repeat the flag)", "default: `0`"]
    assert term("ser", "`--version`") == ["flag", "default: `off`"]


def test_help_text_becomes_literal_markdown() -> None:
    gen = _gen_cli()
    expected = r"p\_&lt;class&gt;... a\*b \[x\] `code_1` `a|b`"
    assert gen.markdown_text("p_<class>... a*b [x] ``code_1`` `a|b`") == expected
    assert gen.markdown_text("a|b\nc `x|y`", in_table=True) == "a&#124;b c `x&#124;y`"


def test_generating_the_reference_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import runpy, sys\n"
        f"gen = runpy.run_path({str(REPO_ROOT / 'docs' / 'gen_cli.py')!r}, run_name='gen_cli')\n"
        "page = gen['page_text']()\n"
        "assert page.startswith('# Command-line reference')\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert run.stdout == "[]\n"
    assert list(tmp_path.iterdir()) == []  # rendering writes nothing (only the mkdocs plugin writes the page)


def test_the_overview_page_links_every_command_in_pipeline_order() -> None:
    overview = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    anchors = re.findall(r"\]\(cli-reference\.md#([a-z0-9-]+)\)", overview)
    sections = _sections(_gen_cli().render_page(app))
    assert anchors and set(anchors) <= set(sections)  # no link to a section that does not exist
    top = [anchor.split("-")[1] for anchor in anchors if anchor.count("-") >= 1]
    first_seen = list(dict.fromkeys(top))
    assert first_seen == list(PIPELINE)  # every top-level command, in the order `ser --help` lists them
    assert "```\nser manifest CORPUS" not in overview  # the old pre block (cut at the page's edge) is gone
