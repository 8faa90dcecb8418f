"""The ``ser`` command line. Command groups live in ``ser.commands``; heavy imports stay inside
command bodies so that ``ser --help`` imports neither torch nor transformers."""

from __future__ import annotations

import logging

import typer

from ser import __version__
from ser.commands import ablate, cache, demo, extract, finetune, fit, manifest, predict, protocol

app = typer.Typer(
    name="ser",
    no_args_is_help=True,
    add_completion=False,
    help="Speech emotion recognition from cached features: manifests, protocols, extraction, fusion heads.",
)
app.add_typer(manifest.app, name="manifest")
app.add_typer(protocol.app, name="protocol")
app.add_typer(cache.app, name="cache")
app.command("extract")(extract.extract)
app.command("extractors")(extract.list_extractors)
app.command("fit")(fit.fit)
app.add_typer(fit.fusion_app, name="fusion")
app.command("predict")(predict.predict)
app.command("demo")(demo.demo)
app.command("finetune")(finetune.finetune)
app.command("ablate")(ablate.ablate)
app.command("report")(ablate.report)


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
