"""Generate the command-line reference page ``cli-reference.md`` (run by the mkdocs-gen-files plugin).

The page is built from the command tree that typer makes of ``ser.cli.app`` (the objects ``ser --help``
prints from): for every command and sub-command, in the order ``ser --help`` lists them, its usage line,
its help text, the table of its sub-commands (for a group) and a list of every argument and option with
its type, default and help. Nothing about a command is written here by hand, so the page follows the
code. Importing ``ser.cli`` loads neither torch nor transformers (``ser --help`` does the same import).
"""

from __future__ import annotations

import enum
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = "cli-reference.md"
"""Path of the generated page inside the docs (linked from ``cli.md`` and ``SUMMARY.md``)."""
USAGE_WIDTH = 100
"""Terminal width the usage lines are formatted for (a fixed width: the page does not depend on the
terminal of whoever builds the site)."""


# ---------------------------------------------------------------------------------------------
# text -> Markdown


def markdown_text(text: str, *, in_table: bool = False) -> str:
    """Help text as Markdown: code spans (``x`` or `x`) kept as code, everything else escaped.

    Help texts are written for a terminal: ``<class>``, ``*``, ``_`` and ``[...]`` are literal
    characters there and must not become HTML or emphasis. In a table cell ``|`` is escaped and line
    breaks become spaces.
    """
    text = text.replace("``", "`")
    pieces = re.split(r"(`[^`\n]+`)", text)
    out = []
    for index, piece in enumerate(pieces):
        if index % 2:  # a code span
            out.append(piece.replace("|", "&#124;") if in_table else piece)
            continue
        piece = piece.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        piece = re.sub(r"([\\*_\[\]#])", r"\\\1", piece)
        if in_table:
            piece = piece.replace("|", "&#124;")
        out.append(piece)
    joined = "".join(out)
    return " ".join(joined.split()) if in_table else joined


def paragraphs(help_text: str | None) -> list[str]:
    """The paragraphs of a command's help (as ``--help`` shows them: up to a form feed), lines joined."""
    text = inspect.cleandoc(help_text or "").partition("\f")[0]
    return [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]


def summary(command: Any) -> str:
    """The one-line summary ``ser --help`` lists a command with: its short help, else its first paragraph."""
    if command.short_help:
        return " ".join(inspect.cleandoc(command.short_help).split())
    found = paragraphs(command.help)
    return found[0] if found else ""


# ---------------------------------------------------------------------------------------------
# the command tree


def command_tree(app: Any) -> Iterator[tuple[Any, Any]]:
    """``(context, command)`` for the root command and every sub-command, depth first, in the order
    each group lists its commands (hidden commands left out)."""
    import typer.main

    root = typer.main.get_command(app)
    yield from _walk(root, root.context_class(root, info_name="ser", terminal_width=USAGE_WIDTH))


def _walk(command: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    yield ctx, command
    for child in subcommands(command, ctx):
        yield from _walk(child, child_context(child, ctx))


def child_context(child: Any, ctx: Any) -> Any:
    """The context ``child`` runs in under the group of ``ctx`` (it knows the command's full path)."""
    return child.context_class(child, info_name=child.name, parent=ctx)


def anchor(ctx: Any) -> str:
    """Anchor of a command's section: ``ser-manifest-ravdess`` for ``ser manifest ravdess``."""
    return re.sub(r"[^a-z0-9]+", "-", ctx.command_path.lower()).strip("-")


def subcommands(command: Any, ctx: Any) -> list[Any]:
    """The visible commands of a group, in the order its help lists them."""
    if not hasattr(command, "list_commands"):
        return []
    found = (command.get_command(ctx, name) for name in command.list_commands(ctx))
    return [child for child in found if child is not None and not child.hidden]


# ---------------------------------------------------------------------------------------------
# parameters


def param_names(param: Any) -> str:
    """``-m``, ``--manifest`` for an option (``--x`` / ``--no-x`` for a pair); ``ROOT`` for an argument."""
    if param.param_type_name == "argument":
        return f"`{(param.metavar or param.name).upper()}`"
    names = ", ".join(f"`{name}`" for name in sorted(param.opts, key=len))
    if param.secondary_opts:
        names += " / " + ", ".join(f"`{name}`" for name in sorted(param.secondary_opts, key=len))
    return names


def _display_type(param: Any, ctx: Any) -> str:
    for method in ("display_type_rich", "display_type"):  # typer's own parameters
        if hasattr(param, method):
            return str(getattr(param, method)(ctx) or "")
    return str(getattr(getattr(param, "type", None), "name", ""))  # plain click parameters


def param_type(param: Any, ctx: Any) -> str:
    """The value an option or argument takes: ``path``, ``int ≥ 1``, ``speaker|utterance``, ``str, repeatable``."""
    if getattr(param, "count", False):
        return "count (repeat the flag)"
    if getattr(param, "is_flag", False):
        return "flag"
    label = _display_type(param, ctx).strip("<>").removesuffix("...").removesuffix(" range")
    element = re.fullmatch(r"list\[(.*)\]", label)
    label = (element.group(1) if element else label).replace("Path", "path")
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None and high is not None:
        label = f"{low} ≤ {label} ≤ {high}"
    elif low is not None:
        label = f"{label} ≥ {low}"
    elif high is not None:
        label = f"{label} ≤ {high}"
    if param.param_type_name == "option" and param.multiple:
        return f"{label}, repeatable"
    if param.nargs != 1:
        return f"{label}, one or more" if param.required else f"{label}, any number"
    return label


def _value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def param_default(param: Any) -> str:
    """The default as Markdown: ``required``, ``default: `VALUE` `` (the flag that is on, for an on/off
    pair), or ``optional`` when leaving it out gives no value."""
    if param.required:
        return "required"
    default = param.default
    if callable(default):
        return "optional"
    if getattr(param, "is_flag", False) and param.secondary_opts:
        names = param.opts if default else param.secondary_opts
        return f"default: `{max(names, key=len)}`"
    if default is None or (isinstance(default, list | tuple) and not default):
        return "optional"
    if isinstance(default, list | tuple):
        return "default: " + ", ".join(f"`{_value(item)}`" for item in default)
    return f"default: `{_value(default)}`"


def param_list(command: Any, ctx: Any) -> list[str]:
    """A command's arguments, then its options, as a definition list: the names, type and default on one
    line (a table squeezes the names into a narrow column), the help below (``--help`` left out: every
    command has it)."""
    params = [param for param in command.params if not getattr(param, "hidden", False)]
    lines = []
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        chosen = [param for param in params if param.param_type_name == kind]
        if chosen:
            lines += [f"**{title}**", ""]
        for param in chosen:
            term = f"{param_names(param)} · {markdown_text(param_type(param, ctx))} · {param_default(param)}"
            lines += [term, f":   {markdown_text(getattr(param, 'help', None) or '')}", ""]
    return lines


# ---------------------------------------------------------------------------------------------
# the page


def command_section(command: Any, ctx: Any) -> list[str]:
    """A command's section: heading, usage, help paragraphs, sub-commands, arguments and options."""
    depth = len(ctx.command_path.split())
    heading = "#" * (3 if depth > 2 else 2)  # `ser` and its commands: level 2; sub-commands: level 3
    lines = [f"{heading} `{ctx.command_path}` {{ #{anchor(ctx)} }}", ""]
    lines += ["```text", command.get_usage(ctx).strip(), "```", ""]
    for paragraph in paragraphs(command.help):
        example = paragraph.removeprefix("Example: ")
        if example != paragraph:  # "Example: ser ..." in a group's help: a command line to copy
            lines += ["Example:", "", "```bash", example, "```", ""]
        else:
            lines += [markdown_text(paragraph), ""]
    children = subcommands(command, ctx)
    if children:
        lines += ["| command | what it does |", "|---|---|"]
        for child in children:
            text = markdown_text(summary(child), in_table=True)
            lines.append(f"| [`{child.name}`](#{anchor(child_context(child, ctx))}) | {text} |")
        lines.append("")
    return lines + param_list(command, ctx)


def render_page(app: Any) -> str:
    """The whole reference page of ``app`` as Markdown."""
    lines = [
        "# Command-line reference",
        "",
        "Every command and sub-command of `ser`, in the order `ser --help` lists them, with every argument and "
        "option. This page is generated from the command-line code when the site is built, so it always "
        "matches `ser COMMAND --help`; the [overview](cli.md) shows the commands at a glance. Every command "
        "also takes `--help`.",
        "",
    ]
    for ctx, command in command_tree(app):
        lines += command_section(command, ctx)
    return "\n".join(lines).rstrip() + "\n"


def page_text() -> str:
    """The reference page of ``ser``'s command line."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from ser.cli import app

    return render_page(app)


def main() -> None:
    """Write the page into the site being built."""
    import mkdocs_gen_files

    with mkdocs_gen_files.open(PAGE, "w") as page:
        page.write(page_text())


if __name__ == "<run_path>":  # mkdocs-gen-files runs the script with runpy.run_path
    main()
elif __name__ == "__main__":  # `python docs/gen_cli.py` prints the page
    sys.stdout.write(page_text())
