"""``ser ablate`` (run a grid of fits, idempotently) and ``ser report`` (tables and plots of runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from ser.ablate.cluster import EXECUTORS
from ser.ablate.runner import RunnerOptions
from ser.commands.common import UNTYPED, choices_help, default_of, parse_options, user_errors

EXECUTOR_NAMES = ("local", *EXECUTORS)
DEVICES = ("auto", "cpu")
"""``--device``: jobs are pinned to GPUs by the runner, so only auto or cpu."""


def ablate(
    grid: Path = typer.Argument(
        ..., help="Grid YAML: base (a fit config), axes, zip, include, exclude, seeds (see docs/guides/ablate.md)."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        "-n",
        help="Print the expanded jobs and what is already done, running or crashed; run nothing.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Parent folder of the run directories (default: the grid's `out`, else runs/<grid file name>).",
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Change the grid's base before expanding, KEY=VALUE (dotted keys: train.epochs=5)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        "-j",
        min=1,
        help="Most jobs at once (default: one per CPU core without GPUs; GPUs x --jobs-per-gpu with them).",
    ),
    jobs_per_gpu: int = typer.Option(
        default_of(RunnerOptions, "jobs_per_gpu"),
        "--jobs-per-gpu",
        "-k",
        min=1,
        help="Jobs packed onto each visible GPU.",
    ),
    gpu_min_free: int = typer.Option(
        default_of(RunnerOptions, "gpu_min_free_mib"),
        "--gpu-min-free",
        min=0,
        help="Start a job on a GPU only while it has this many MiB free (shared boxes; 0 = no guard).",
    ),
    device: str = typer.Option(
        default_of(RunnerOptions, "device"),
        "--device",
        help=f"{choices_help(DEVICES)}. auto: the GPUs in CUDA_VISIBLE_DEVICES / nvidia-smi, else CPU; cpu: CPU only.",
    ),
    no_wait: bool = typer.Option(
        not default_of(RunnerOptions, "wait_for_others"),
        "--no-wait",
        help="Do not wait for runs another process holds (local), or for submitted tasks (cluster).",
    ),
    executor: str = typer.Option(
        EXECUTOR_NAMES[0],
        "--executor",
        "-e",
        help=f"{choices_help(EXECUTOR_NAMES)}: local (this machine), slurm (job array through submitit), "
        "submitit-local (the cluster path on this machine).",
    ),
    cluster_opt: list[str] = typer.Option(
        [],
        "--cluster-opt",
        help="submitit parameter KEY=VALUE, repeatable: "
        "slurm_partition=gpu, gpus_per_node=1, timeout_min=60, "
        "slurm_array_parallelism=32, ...",
    ),
    jobs_per_task: int = typer.Option(
        1,
        "--jobs-per-task",
        min=1,
        help="Cluster: grid jobs run one after the other inside each array task (amortises start-up for small fits).",
    ),
    stack: bool = typer.Option(
        default_of(RunnerOptions, "stack"),
        "--stack/--no-stack",
        help="Local: send the queued cells of one stack group "
        "(equal but for seeds and per-member train settings such as lr, epochs, "
        "schedule) to a worker together, to train as one stacked model (train.engine=stacked).",
    ),
    make_report: bool = typer.Option(
        True, "--report/--no-report", help="Write `ser report` of the grid's runs at the end."
    ),
) -> None:
    """Run a grid of fits, skipping the ones already done.

    One `ser fit` per grid cell and seed: finished runs are skipped (by config hash), crashed ones
    redone, and runs that another process holds are left to it. Ctrl-C stops; re-run to resume.
    """
    with user_errors():
        from ser.ablate.grid import expand, load_grid

        spec = load_grid(grid, overrides=set_, out=str(out) if out else None)
        jobs = expand(spec)
        if dry_run:
            _print_plan(jobs)
            return
        if executor == "local":
            from ser.ablate.runner import run_grid

            if device not in DEVICES:
                raise typer.BadParameter(
                    f"--device must be {choices_help(DEVICES)} (jobs are pinned to GPUs by the runner)"
                )
            options = RunnerOptions(
                workers=workers,
                jobs_per_gpu=jobs_per_gpu,
                gpu_min_free_mib=gpu_min_free,
                device=device,
                wait_for_others=not no_wait,
                stack=stack,
            )
            outcome = run_grid(jobs, options, echo=typer.echo)
            typer.echo(outcome.summary())
            for job, reason in outcome.failed:
                typer.secho(
                    f"failed: {job.label()} seed {job.seed}\n  {reason.replace(chr(10), chr(10) + '  ')}",
                    fg=typer.colors.RED,
                    err=True,
                )
            status = 130 if outcome.interrupted else (0 if outcome.complete else 1)
        else:
            from ser.ablate.cluster import submit_grid

            result = submit_grid(
                jobs,
                executor=executor,
                folder=Path(spec.out) / ".submitit",
                parameters=parse_options(cluster_opt, UNTYPED, flag="--cluster-opt"),
                jobs_per_task=jobs_per_task,
                wait=not no_wait,
                echo=typer.echo,
            )
            typer.echo(
                f"{len(jobs)} jobs: {result.ran} ran, {result.already_done} already done, "
                f"{result.done_elsewhere} done by another process, {result.left_to_others} left to another "
                f"process, {len(result.failed)} tasks failed" + ("" if result.waited else " (not waited for)")
            )
            for failure in result.failed:
                typer.secho(
                    f"failed task {failure.task_id}: {failure.error}\n  log: {failure.log}",
                    fg=typer.colors.RED,
                    err=True,
                )
            status = 1 if result.failed or result.left_to_others else 0
        if make_report and Path(spec.out).is_dir() and any(Path(spec.out).rglob("metrics.json")):
            from ser.ablate.report import write_report

            folder = write_report(Path(spec.out), title=spec.name)
            typer.echo(f"report: {folder / 'report.md'}")
    if status:
        raise typer.Exit(status)


def _print_plan(jobs: list) -> None:
    from collections import Counter

    from ser.ablate.state import run_state

    states = [run_state(job.run_dir).value for job in jobs]
    typer.echo(f"{'#':>4s}  {'state':8s} {'seed':>4s}  {'cell':60s} run directory")
    for i, (job, state) in enumerate(zip(jobs, states, strict=True), start=1):
        typer.echo(f"{i:4d}  {state:8s} {job.seed:4d}  {job.label()[:60]:60s} {job.run_dir}")
    counts = Counter(states)
    typer.echo(
        f"{len(jobs)} jobs: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "running", "crashed", "todo"))
    )


def report(
    runs_dir: Path = typer.Argument(..., help="Folder holding run directories (any depth), e.g. runs/my-grid."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where the report goes (default RUNS_DIR/report)."),
    title: str | None = typer.Option(None, help="Title of report.md and report.tex."),
    plots: bool = typer.Option(
        True, "--plots/--no-plots", help="Write the bar, confusion and layer-weight pictures (needs matplotlib)."
    ),
) -> None:
    """Tabulate and plot finished runs, mean ± std per cell.

    Tables (report.md, report.csv and a LaTeX report.tex) of each grid cell's mean ± std over its
    folds x seeds, the best in bold and ≈ where a paired test finds no clear difference from it;
    plots, and an export under EmoBox's metric names. A cross-corpus run (protocol card with cells) also
    gets its matrix of UA per training corpora and test corpus, with test rows: matrix-RUN.csv, a table in
    report.md and report.tex, and a heatmap matrix-RUN.png.
    """
    with user_errors():
        from ser.ablate.report import write_report

        folder = write_report(runs_dir, out, title=title, plots=plots)
    typer.echo((folder / "report.md").read_text(encoding="utf-8"))
    typer.echo(f"written to {folder}")
