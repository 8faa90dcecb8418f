"""The ``ser`` command line. Command groups live in ``ser.commands``; heavy imports stay inside
command bodies so that ``ser --help`` imports neither torch nor transformers.

``ser --help`` lists the commands in the order of the pipeline ([`PIPELINE`][ser.cli.PIPELINE]), not alphabetically:
a manifest describes the corpus, a protocol splits it into folds, extractors turn it into cached
features, heads are fitted (singly or in grids) on those caches and reported, and fitted runs
classify new audio. ``demo`` comes last because it runs all of these steps at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from ser import __version__
from ser.commands import ablate, cache, demo, extract, finetune, fit, manifest, predict, probe, protocol
from ser.manifests.corpora import CORPORA

PIPELINE = (
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
)
"""The top-level commands in the order ``ser --help`` lists them: the steps of the pipeline."""

MANIFEST_ORDER = (*sorted(name for name in CORPORA if name != "csv"), "csv", "join", "validate", "label-sets")
"""``ser manifest``: the corpus builders (alphabetical, the generic CSV one last), then checking and listing."""


class OrderedGroup(TyperGroup):
    """A command group that lists its commands in a fixed order instead of click's alphabetical one.

    The names in `order` come first, in that order; commands it does not name follow in the order
    they were added (which typer keeps for commands, but puts every sub-group after every command).
    """

    order: Sequence[str] = ()

    def list_commands(self, ctx: Any) -> list[str]:
        """Names of the commands in the order the help lists them (``ctx``: the group's click context)."""
        first = [name for name in self.order if name in self.commands]
        return first + [name for name in self.commands if name not in self.order]


def ordered(*names: str) -> type[OrderedGroup]:
    """An [`OrderedGroup`][ser.cli.OrderedGroup] class listing ``names`` first (typer's ``cls=`` takes a class)."""
    return type("OrderedGroup", (OrderedGroup,), {"order": names})


app = typer.Typer(
    name="ser",
    cls=ordered(*PIPELINE),
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: paragraphs are re-wrapped to the terminal (rich keeps the docstrings' line
    # breaks) and `ser --help` does not import rich.
    rich_markup_mode=None,
    help=(
        "Speech emotion recognition from cached features, under evaluation protocols.\n\n"
        "The commands are listed in pipeline order: build a manifest, choose a protocol, extract features "
        "into a cache, fit a fusion head, report, predict. New here? `ser demo` runs every step on the "
        "packaged clips, offline.\n\n"
        "Every command explains its options: ser COMMAND --help."
    ),
)
app.add_typer(manifest.app, name="manifest", cls=ordered(*MANIFEST_ORDER))
app.add_typer(protocol.app, name="protocol", cls=OrderedGroup)
app.command("extractors")(extract.list_extractors)
app.command("extract")(extract.extract)
app.add_typer(cache.app, name="cache", cls=OrderedGroup)
app.command("finetune")(finetune.finetune)
app.add_typer(fit.fusion_app, name="fusion", cls=OrderedGroup)
app.command("fit")(fit.fit)
app.command("probe")(probe.probe)
app.command("ablate")(ablate.ablate)
app.command("report")(ablate.report)
app.command("predict")(predict.predict)
app.command("demo")(demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ser {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Speech emotion recognition from cached features."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # run logs may lower ser's level; the console keeps its own
        handler.setLevel(level)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
