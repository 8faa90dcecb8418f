"""``ser demo``: the whole pipeline on the RAVDESS subset shipped inside the package, offline, on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ser.commands.common import user_errors

if TYPE_CHECKING:
    from ser.extract.runner import RunReport
    from ser.manifests.build import BuildReport
    from ser.recipes.demo import ClipPrediction


def demo(
    workdir: Path = typer.Option(
        Path("ser-demo"),
        "--workdir",
        "-w",
        help="Where the manifest, caches and runs go (re-running reuses finished caches).",
    ),
    epochs: int = typer.Option(60, help="Most epochs per fold."),
    seed: int = typer.Option(0, help="Training seed."),
    num_workers: int = typer.Option(2, help="Decoding/feature worker processes for extraction."),
    print_clips: bool = typer.Option(
        False, "--print-clips", help="Print the folder of the packaged clips (for your own commands) and exit."
    ),
) -> None:
    """Run the whole pipeline on packaged RAVDESS clips, offline.

    Manifest -> eGeMAPS + MiniLM caches -> an audio-only MLP and the FleSER fusion head (audio + text)
    under leave-one-speaker-out, on the packaged RAVDESS actors 01-04 (240 clips, CC BY-NC-SA 4.0; see
    ser/demo_data/README.md), then one clip classified with the trained model files. No network, no GPU.
    """
    if print_clips:
        from ser.recipes.demo import demo_corpus

        typer.echo(demo_corpus())
        return
    with user_errors():
        from ser.recipes.demo import run_demo

        result = run_demo(workdir, epochs=epochs, seed=seed, num_workers=num_workers, hooks=_Printer())
    from ser.commands.fit import report

    for title, run_dir in result.runs.items():
        typer.secho(f"\n{title}", bold=True)
        report(run_dir)
        typer.echo(f"confusion matrix picture: {run_dir / 'confusion.png'}")
    typer.echo(
        "\nNote: every RAVDESS clip says one of two fixed sentences whatever the emotion, so the text "
        "branch carries no emotion information here; only the audio branch can. The FleSER run fuses the "
        "same audio with the text: whatever it gains or loses against the MLP comes from the head, not "
        "from the text (a clear text gain on RAVDESS would mean a leak). Chance UA for 8 classes is 12.5 %."
    )
    _print_prediction(result.prediction)
    typer.echo(
        "Next: the same commands with your corpus, e.g. `ser manifest iemocap ... && ser extract --model "
        "hubert ... && ser fit --fusion fleser ...` (see docs/getting-started.md)."
    )


class _Printer:
    """Prints the demo's steps as the recipe runs them (``DemoHooks``)."""

    def step(self, number: int, total: int, title: str) -> None:
        typer.secho(f"{number}/{total} {title}", bold=True)

    def manifest_built(self, report: BuildReport) -> None:
        for line in report.lines():
            typer.echo(f"  {line}")

    def features_extracted(self, family: str, report: RunReport) -> None:
        state = (
            "already complete"
            if report.already_complete
            else f"{report.extracted} extracted, {len(report.rejected)} rejected in {report.seconds:.1f} s"
        )
        typer.echo(f"  {state}")


def _print_prediction(result: ClipPrediction) -> None:
    typer.secho(
        f"\npredict one clip with the audio-only MLP of fold {result.members} (trained without actor 01)", bold=True
    )
    typer.echo(f"  {result.clip.name} (true label: {result.true_label}) -> {result.prediction.label}")
    top = sorted(result.prediction.probabilities.items(), key=lambda item: -item[1])[:3]
    typer.echo("  most probable: " + ", ".join(f"{name} {100 * p:.1f} %" for name, p in top))
    typer.echo(f"  the same from the shell: ser predict {result.run_dir} {result.clip} --members {result.members}")
