"""``ser predict``: classify new audio (and text) with a run's trained model files."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import typer

from ser.commands.common import user_errors
from ser.predict import defaults

EXIT_SOME_FAILED = 3
"""Exit status when every input was handled but some could not be used (their rows say why)."""

AUDIO_SUFFIXES = {
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".mp3",
    ".aiff",
    ".aif",
    ".au",
    ".w64",
    ".caf",
    ".mp4",
    ".m4a",
    ".webm",
    ".mkv",
    ".opus",
    ".aac",
}


def predict(
    run_dir: Path = typer.Argument(..., help="Run directory written by `ser fit` (holds models/)."),
    inputs: list[Path] = typer.Argument(None, help="Audio files or folders of audio (searched recursively)."),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        "-m",
        help="Predict every row of a manifest (audio, segment start/end and text come from its rows).",
    ),
    text: str | None = typer.Option(
        None,
        "--text",
        help="Transcript for models that read text; with audio "
        "inputs it goes with each of them, without audio it is the one input.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Output table: .csv, or .jsonl for JSON lines "
        "(default: CSV on standard output). With --window the timeline, plus a .png "
        "plot next to it.",
    ),
    members: str | None = typer.Option(
        None,
        "--members",
        help="Which trained models answer: final (`ser fit "
        "--final`; the default when the run has it), all (the mean of every fold "
        "and seed; the default otherwise) or a fold name (the mean of its seeds).",
    ),
    window: float | None = typer.Option(
        None,
        "--window",
        help="Seconds per window: predict along long recordings instead of once per file (audio-only models).",
    ),
    hop: float | None = typer.Option(None, "--hop", help="Seconds between window starts (default: --window)."),
    checkpoint: list[str] = typer.Option(
        [],
        "--checkpoint",
        help="MODALITY=PATH: a local copy of the upstream "
        "model the run's store was extracted with (e.g. audio=/models/hubert); "
        "everything but its location must match the record.",
    ),
    device: str = typer.Option(defaults.DEVICE, help="auto (cuda if available), cpu, cuda, cuda:N, mps."),
    batch_size: int = typer.Option(defaults.BATCH_SIZE, help="Inputs per extraction batch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on long lists."),
) -> None:
    """Classify new audio (and text) with a fitted run.

    Classifies audio files, folders or a manifest's rows: rebuilds each input's extractor from the
    run's records (refused, naming the difference, when the upstream differs), pools with the recorded
    view, standardises with the training statistics and averages the chosen members' class
    probabilities. One row per input: id, pred, p_<class>..., error.

    Exit status: 0 every input predicted; 3 some inputs could not be used (the error column says why);
    2 bad arguments or run directory.
    """
    with user_errors():
        from ser.errors import UserError
        from ser.predict.model import load_model

        if batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, not {batch_size}")
        overrides = _pairs(checkpoint)
        if window is None and hop is not None:
            raise UserError("--hop needs --window")
        out = _output(out, window is not None)
        _refuse_several_runs(run_dir, inputs or [])
        model = load_model(run_dir, members=members, device=device, checkpoints=overrides, batch_size=batch_size)
        files = _audio_files(inputs or [])
        if window is not None:
            _predict_windows(model, files, window, window if hop is None else hop, out, progress)
            return
        requests = _requests(model, files, manifest, text)
        predictions = model.predict_many(requests, progress=progress, on_error="record")
        _write(out, [p.row(model.classes) for p in predictions])
    failed = sum(p.error is not None for p in predictions)
    if failed:
        typer.secho(
            f"{failed} of {len(predictions)} inputs could not be used (see the error column)",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(EXIT_SOME_FAILED)


def _pairs(values: list[str]) -> dict[str, str]:
    """``--checkpoint MODALITY=PATH`` pairs (read by the one ``KEY=VALUE`` reader)."""
    from ser.errors import UserError
    from ser.options import split_pair

    form = "MODALITY=PATH (e.g. audio=/models/hubert)"
    pairs = {}
    for value in values:
        key, path = split_pair(value, "--checkpoint", form)
        if not path:
            raise UserError(f"--checkpoint takes {form}, not {value!r}")
        pairs[key] = path
    return pairs


def _is_run_directory(path: Path) -> bool:
    """A folder written by ``ser fit`` (it holds ``metrics.json`` or ``models/index.json``)."""
    return path.is_dir() and ((path / "metrics.json").is_file() or (path / "models" / "index.json").is_file())


def _refuse_several_runs(run_dir: Path, inputs: list[Path]) -> None:
    """Refuse run directories among the inputs (a glob such as ``runs/mlp-*`` that matched several runs),
    naming them all, before any of them is read as a folder of audio."""
    from ser.errors import UserError

    runs = [path for path in [run_dir, *inputs] if _is_run_directory(path)]
    if len(runs) > 1:
        raise UserError(
            f"{len(runs)} run directories given: {', '.join(map(str, runs))}; pass one (the glob matched several)"
        )
    if runs and runs[0] != run_dir:
        raise UserError(
            f"{runs[0]} is a run directory, given as an input; pass the run directory first: "
            f"ser predict {runs[0]} FILE..."
        )


def _audio_files(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their audio files (sorted); a missing path is an error."""
    from ser.errors import UserError

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise UserError(
                    f"{path}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_SUFFIXES))})"
                )
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    return files


def _requests(model: Any, files: list[Path], manifest: Path | None, text: str | None) -> list[Any]:
    from ser.errors import UserError
    from ser.manifests.schema import read_manifest
    from ser.predict.model import Request

    requests = [Request(id=str(path), path=path, text=text) for path in files]
    if manifest is not None:
        rows = read_manifest(manifest)
        requests += [
            Request(
                id=u.id, path=rows.audio_path(u), start=u.start, end=u.end, text=text if text is not None else u.text
            )
            for u in rows.utterances
        ]
    if not requests and text is not None and not model.needs_audio:
        requests = [Request(id="text", text=text)]
    if not requests:
        raise UserError("nothing to predict: give audio files or folders, -m MANIFEST, or --text for a text model")
    model.check_requests(requests)
    return requests


def _predict_windows(
    model: Any, files: list[Path], window: float, hop: float, out: Path | None, progress: bool
) -> None:
    from ser.errors import UserError
    from ser.manifests.audio_info import AudioInfoError, probe_duration
    from ser.predict.timeline import plot_timeline
    from ser.predict.windows import window_requests

    if model.needs_text:
        raise UserError(f"--window predicts along the audio alone, but this model ({model.fusion}) also reads text")
    if not files:
        raise UserError("--window needs audio files or folders")
    rows: list[dict[str, Any]] = []
    pictures = []
    names = _picture_names(out, files) if out is not None else {}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    for path in files:
        try:
            duration = probe_duration(path)
        except AudioInfoError as err:
            raise UserError(f"{path}: {err}") from err
        predictions = model.predict_many(
            window_requests(path, duration, window, hop), progress=progress, on_error="record"
        )
        rows += [p.row(model.classes) for p in predictions]
        if out is not None:
            picture = names[path]
            if plot_timeline(
                picture,
                predictions,
                model.classes,
                f"{path.name}: {window:g} s windows every {hop:g} s ({model.fusion})",
            ):
                pictures.append(picture)
    _write(out, rows)
    for picture in pictures:
        typer.echo(f"timeline plot: {picture}", err=True)


def _write(out: Path | None, rows: list[dict[str, Any]]) -> None:
    """CSV (default, or ``-o x.csv``) or JSON lines (``-o x.jsonl``), written whole then moved into place."""
    if out is not None and out.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["id"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if out is None:
        sys.stdout.write(text)
        return
    from ser.atomic_files import write_text
    from ser.errors import UserError, write_failure

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, text)  # whole or not at all: a failed write leaves no partial or temporary file
    except OSError as err:
        raise UserError(write_failure(err, out, "nothing was written there")) from err


def _output(out: Path | None, windows: bool) -> Path | None:
    """``-o`` checked before anything runs (``ser.atomic_files.output_file``); it names the table, so not
    a picture (with ``--window`` the pictures are named after it)."""
    from ser.atomic_files import output_file
    from ser.errors import UserError

    if out is None:
        return None
    if out.suffix.lower() == ".png":
        what = "the pictures are named after it (-o t.csv gives t.png)" if windows else "predict writes no picture"
        raise UserError(f"-o {out}: -o names the table (.csv, or .jsonl for JSON lines); {what}")
    return output_file(out)


def _picture_names(out: Path, files: list[Path]) -> dict[Path, Path]:
    """Timeline picture per input file, one distinct name each: ``<out stem>.png`` for one file,
    ``<out stem>-<file stem>.png`` for several, with the file's position added where two stems are equal."""
    from collections import Counter

    from ser.atomic_files import output_file

    if len(files) == 1:
        return {files[0]: output_file(out.with_suffix(".png"))}
    stems = Counter(path.stem for path in files)
    names = {}
    for index, path in enumerate(files, 1):
        tag = path.stem if stems[path.stem] == 1 else f"{index:03d}-{path.stem}"
        names[path] = output_file(out.with_name(f"{out.stem}-{tag}.png"))
    return names
