"""``ser manifest``: build a manifest from a raw corpus folder, join manifests, validate one, list label sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ser.commands.common import choices_help, default_of, user_errors
from ser.manifests.corpora import CORPORA
from ser.manifests.corpora import emodb as emodb_corpus
from ser.manifests.corpora import esd as esd_corpus
from ser.manifests.corpora import generic_csv as generic_csv_corpus
from ser.manifests.corpora import meld as meld_corpus
from ser.manifests.corpora import ravdess as ravdess_corpus
from ser.manifests.protocols import PROTOCOLS

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Build a manifest from a corpus folder, or check one.\n\n"
        "A manifest is a JSONL file with one utterance per line (id, audio, label, speaker, split, text); "
        "every later step reads it. Each corpus has its own command; `csv` maps any other corpus.\n\n"
        "Example: ser manifest ravdess path/to/ravdess -o rav.jsonl"
    ),
)

OUTPUT = typer.Option(..., "--output", "-o", help="Manifest file to write (JSONL; written atomically).")
LABEL_SET = typer.Option(
    None,
    "--label-set",
    "-l",
    help=(
        "Keep only rows whose raw label is in this label set (built-in name or JSON file); dropped rows are "
        "counted per label. Default: keep every row (label sets can still be applied later)."
    ),
)
DURATIONS = typer.Option(
    True,
    "--durations/--no-durations",
    help="Read each audio header to record durations (fast; needed for hours per split).",
)


def _build(
    corpus: str, root: Path, output: Path, label_set: str | None, durations: bool, options: dict[str, Any]
) -> None:
    with user_errors():
        from ser.manifests.build import build_manifest
        from ser.manifests.labels import load_label_set

        chosen = load_label_set(label_set) if label_set else None
        report = build_manifest(corpus, root, output, label_set=chosen, durations=durations, options=options)
    for line in report.lines():
        typer.echo(line)


def _simple_corpus_command(corpus: str, layout: str) -> Any:
    def command(
        root: Path = typer.Argument(..., help="Corpus folder."),
        output: Path = OUTPUT,
        label_set: str | None = LABEL_SET,
        durations: bool = DURATIONS,
    ) -> None:
        _build(corpus, root, output, label_set, durations, {})

    summary, _, details = layout.partition("\n\n")
    command.__doc__ = f"{summary}\n\n{CORPORA[corpus].description}.\n\n{details}"
    return command


app.command("iemocap")(
    _simple_corpus_command(
        "iemocap",
        "Build a manifest from IEMOCAP (the full release).\n\n"
        "ROOT is IEMOCAP_full_release (holding Session1..Session5). Raw labels are the consensus codes "
        "(neu hap exc sad ang fru fea sur dis oth xxx); speaker = session + the turn's gender (Ses01M).\n\n"
        "Label sets: iemocap4 (exc merged into hap), iemocap4-noexc, iemocap4-exc, iemocap6.",
    )
)
app.command("msp-podcast")(
    _simple_corpus_command(
        "msp-podcast",
        "Build a manifest from MSP-Podcast.\n\n"
        "ROOT holds Audios/ and Labels/labels_consensus.csv (or the older labels_concensus.csv). "
        "Splits: Train -> train, Development -> validation, Test1 -> test, Test2 -> test2.\n\n"
        "Label sets: msp8, msp4.",
    )
)
app.command("cremad")(
    _simple_corpus_command(
        "cremad",
        "Build a manifest from CREMA-D.\n\n"
        "ROOT holds AudioWAV/ (and optionally VideoDemographics.csv, summaryTable.csv for gender and "
        "perceived voice labels).\n\nLabel set: cremad6.",
    )
)
app.command("tess")(
    _simple_corpus_command(
        "tess",
        "Build a manifest from TESS (Toronto Emotional Speech Set).\n\n"
        "ROOT holds the OAF_*/YAF_* folders (searched recursively). Both speakers are female.\n\nLabel set: tess7.",
    )
)


@app.command("ravdess")
def ravdess(
    root: Path = typer.Argument(..., help="Folder holding Actor_01 ... Actor_24."),
    output: Path = OUTPUT,
    label_set: str | None = LABEL_SET,
    durations: bool = DURATIONS,
    include_song: bool = typer.Option(
        default_of(ravdess_corpus.scan, "include_song"), help="Also keep song clips (vocal channel 02)."
    ),
) -> None:
    """Build a manifest from RAVDESS (speech, optionally song).

    RAVDESS: Actor_NN/MM-VV-EE-II-SS-RR-AA.{wav,flac}.

    Raw labels: neutral calm happy sad angry fearful disgust surprised. The text is one of two
    fixed statements for every emotion, so a text branch can learn nothing on RAVDESS.

    Label sets: ravdess8, ravdess7 (calm merged into neutral).
    """
    _build("ravdess", root, output, label_set, durations, {"include_song": include_song})


@app.command("meld")
def meld(
    root: Path = typer.Argument(..., help="Folder with the *_sent_emo.csv files and clip folders."),
    output: Path = OUTPUT,
    label_set: str | None = LABEL_SET,
    durations: bool = DURATIONS,
    require_audio: bool = typer.Option(
        default_of(meld_corpus.scan, "require_audio"),
        help="Drop rows whose clip is missing (they are counted "
        "either way; by default they are kept as text-only rows).",
    ),
) -> None:
    """Build a manifest from MELD (dialogue clips and transcripts).

    MELD: train/dev/test CSVs plus train_splits/, dev_splits_complete/, output_repeated_splits_test/.

    Ids are qualified by split (train_dia0_utt0) because MELD restarts dialogue and utterance ids
    in every split. Missing clips are tolerated and counted.

    Label sets: meld7, meld4, meld-sentiment3.
    """
    _build("meld", root, output, label_set, durations, {"require_audio": require_audio})


@app.command("esd")
def esd(
    root: Path = typer.Argument(..., help="'Emotion Speech Dataset' folder (or its parent)."),
    output: Path = OUTPUT,
    label_set: str | None = LABEL_SET,
    durations: bool = DURATIONS,
    language: list[str] = typer.Option(
        list(default_of(esd_corpus.scan, "languages")),
        "--language",
        help="Languages to keep: zh (speakers 0001-0010), en (0011-0020); repeat the option for both.",
    ),
) -> None:
    """Build a manifest from ESD (Emotional Speech Dataset).

    ESD: {speaker}/{Emotion}/{train,evaluation,test}/{speaker}_{NNNNNN}.wav plus per-speaker transcripts.

    Transcript encodings differ per speaker (UTF-8, UTF-16 with BOM, GB2312, Latin-1): the adapter
    detects them. Official splits: train / evaluation -> validation / test.

    Label sets: esd5, esd4 (no surprise).
    """
    _build("esd", root, output, label_set, durations, {"languages": tuple(language)})


@app.command("emodb")
def emodb(
    root: Path = typer.Argument(..., help="EmoDB folder holding wav/ (and erkennung.txt)."),
    output: Path = OUTPUT,
    label_set: str | None = LABEL_SET,
    durations: bool = DURATIONS,
    selected_only: bool = typer.Option(
        default_of(emodb_corpus.scan, "selected_only"),
        help="Keep only recordings with >= 80 % recognition and >= 60 % naturalness (needs erkennung.txt).",
    ),
) -> None:
    """Build a manifest from Berlin EmoDB.

    Berlin EmoDB: wav/SSTTTEV.wav (speaker, text code, emotion letter, version).

    Label set: emodb7.
    """
    _build("emodb", root, output, label_set, durations, {"selected_only": selected_only})


@app.command("csv")
def generic_csv(
    root: Path = typer.Argument(..., help="Folder that audio paths in the CSV are relative to."),
    csv_path: Path = typer.Option(..., "--csv", help="The CSV file (absolute, or relative to ROOT)."),
    output: Path = OUTPUT,
    label_set: str | None = LABEL_SET,
    durations: bool = DURATIONS,
    id_col: str | None = typer.Option(
        default_of(generic_csv_corpus.scan, "id_col"), help="Id column; default: the audio path without suffix."
    ),
    audio_col: str = typer.Option(default_of(generic_csv_corpus.scan, "audio_col"), help="Audio path column."),
    label_col: str | None = typer.Option(default_of(generic_csv_corpus.scan, "label_col"), help="Raw label column."),
    speaker_col: str | None = typer.Option(default_of(generic_csv_corpus.scan, "speaker_col"), help="Speaker column."),
    text_col: str | None = typer.Option(default_of(generic_csv_corpus.scan, "text_col"), help="Transcript column."),
    split_col: str | None = typer.Option(
        default_of(generic_csv_corpus.scan, "split_col"), help="Official split column (train/dev/test values)."
    ),
    session_col: str | None = typer.Option(default_of(generic_csv_corpus.scan, "session_col"), help="Session column."),
    dialog_col: str | None = typer.Option(default_of(generic_csv_corpus.scan, "dialog_col"), help="Dialogue column."),
    start_col: str | None = typer.Option(
        default_of(generic_csv_corpus.scan, "start_col"), help="Segment start column (seconds)."
    ),
    end_col: str | None = typer.Option(
        default_of(generic_csv_corpus.scan, "end_col"), help="Segment end column (seconds)."
    ),
    gender_col: str | None = typer.Option(default_of(generic_csv_corpus.scan, "gender_col"), help="Gender column."),
    delimiter: str = typer.Option(default_of(generic_csv_corpus.scan, "delimiter"), help="Field delimiter."),
    encoding: str = typer.Option(default_of(generic_csv_corpus.scan, "encoding"), help="File encoding."),
) -> None:
    """Build a manifest from any corpus described by a CSV file.

    Map its columns with the --*-col options. A named column must exist in the header; pass an empty
    name (e.g. --speaker-col '') to ignore one. Columns not mapped to a field are kept in each row's
    ``extra``.
    """
    columns = {
        "id_col": id_col,
        "label_col": label_col,
        "speaker_col": speaker_col,
        "text_col": text_col,
        "split_col": split_col,
        "session_col": session_col,
        "dialog_col": dialog_col,
        "start_col": start_col,
        "end_col": end_col,
        "gender_col": gender_col,
    }
    options = {
        "csv_path": csv_path,
        **{key: value or None for key, value in columns.items()},
        "audio_col": audio_col,
        "delimiter": delimiter,
        "encoding": encoding,
    }
    _build("csv", root, output, label_set, durations, options)


@app.command("validate")
def validate(
    manifest: Path = typer.Argument(..., help="Manifest file to check."),
    label_set: str | None = typer.Option(
        None,
        "--label-set",
        "-l",
        help=(
            "Check that every label is in this label set. Default: the label set the manifest was built with, "
            "else the corpus default (iemocap4, ravdess8, meld7, ...); under a corpus default, labels the corpus "
            "has but the set drops (IEMOCAP fru) are warnings and labels the corpus does not have are errors."
        ),
    ),
    all_labels: bool = typer.Option(False, "--all-labels", help="Do not check labels against any label set."),
    drop_unknown: bool = typer.Option(
        False, help="Report labels outside the label set as a warning (they will be dropped) instead of an error."
    ),
    check_audio: bool = typer.Option(
        True, "--check-audio/--no-check-audio", help="Check that every audio file exists."
    ),
    protocol: str | None = typer.Option(
        None,
        "--protocol",
        "-p",
        help=f"Also check that the manifest can be split by this protocol ({choices_help(PROTOCOLS)}; e.g. no "
        "speaker in two IEMOCAP sessions).",
    ),
) -> None:
    """Check a manifest: ids, audio, labels, transcripts.

    Finds duplicate ids, missing audio, unknown labels, unreadable transcripts and empty files. Every
    problem is listed with its file:line and id, and the fix. Exit status 1 when there are errors.
    """
    with user_errors():
        from ser.manifests.labels import choose_label_set
        from ser.manifests.schema import read_manifest
        from ser.manifests.validation import validate_manifest

        loaded = read_manifest(manifest, strict=False)  # every problem is listed below
        choice = choose_label_set(loaded, label_set, all_labels=all_labels)
        report = validate_manifest(
            loaded,
            label_set=choice.label_set,
            drop_unknown=drop_unknown,
            check_audio=check_audio,
            protocol=protocol,
            default_label_set=choice.source == "default",
        )
    labels = ", ".join(f"{k} {v}" for k, v in sorted(report.label_counts.items()))
    typer.echo(
        f"{manifest}: {report.n_rows} rows ({loaded.header.corpus}); labels checked against "
        f"{choice.describe()}: {labels or 'none'}"
    )
    for problem in report.warnings:
        typer.secho(f"warning: {problem.describe()}", fg=typer.colors.YELLOW)
    for problem in report.errors:
        typer.secho(f"error: {problem.describe()}", fg=typer.colors.RED, err=True)
    if not report.ok:
        raise typer.Exit(1)
    typer.secho("ok", fg=typer.colors.GREEN)


@app.command("join")
def join(
    manifests: list[Path] = typer.Argument(
        ..., help="Two or more manifests, one per corpus (ser manifest CORPUS ...)."
    ),
    output: Path = OUTPUT,
    prefix: bool = typer.Option(
        False,
        "--prefix",
        help="Write ids as <corpus>/<id>. Needed only when two corpora share an id (the join is refused "
        "otherwise, naming them); stores extracted from the separate manifests then no longer match by id, "
        "so extract one store over the joined manifest.",
    ),
) -> None:
    """Join per-corpus manifests into one, for cross-corpus folds.

    Each row keeps its id and audio path, gets extra.corpus (its manifest's corpus) and a speaker
    qualified as <corpus>/<speaker>. The header names the corpora joined by '+' (emodb+ravdess) and the
    audio folder of each, so stores extracted from the separate manifests still match the joined rows
    and `ser extract` can also read the joined manifest. Two manifests of one corpus, or an id in two
    manifests (without --prefix), are refused.

    Example: ser manifest join rav.jsonl emodb.jsonl -o rav+emodb.jsonl
    """
    with user_errors():
        from ser.manifests.join import join_manifests

        report = join_manifests(manifests, output, prefix=prefix)
    for line in report.lines():
        typer.echo(line)


@app.command("label-sets")
def label_sets() -> None:
    """List the built-in label sets and their classes.

    One line per label set: name, classes (in index order), description.
    """
    from ser.manifests.labels import SHARED, builtin_label_sets, shared_description

    for name, label_set in builtin_label_sets().items():
        classes = " ".join(label_set.classes)
        if label_set.per_corpus is not None:
            classes += f" (per corpus: {', '.join(label_set.per_corpus)})"
        typer.echo(f"{name:16s} {classes:32s} {label_set.description}")
    typer.echo(f"{SHARED:16s} {'(computed per joined manifest)':32s} {shared_description()}")
