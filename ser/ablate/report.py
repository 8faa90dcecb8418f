"""``ser report``: every finished run under a folder, grouped into grid cells, as tables and plots.

A **cell** is a fit config without its seeds and folds: the runs of one cell (every fold x seed,
whether they came from one ``ser fit --seeds 0,1,2`` or from three ``ser ablate`` jobs) are pooled,
and each metric is reported as mean ± std over those fold x seed runs (the same statistic
``metrics.json`` holds for a single run directory; no ± for a single run). A (cell, fold, seed)
found twice counts once (a warning names both run directories when the two copies' numbers differ).
A run whose ``metrics.json`` lacks, mistypes or holds a non-finite value in a field the report reads
is skipped with a warning naming it (``validate_record``). A cell is **named** after its run
directory (its path under the runs folder); a cell whose runs lie in several directories (``ser
ablate`` writes one per seed) is named after the first, and ``report.csv`` (``run_dirs``),
``runs.csv`` (``run_dir``) and the end of
``report.md`` list them all.

Classic heads (``logreg``, ``svm``) train no epochs and read only
[`CLASSIC_TRAIN_KEYS`][ser.ablate.report.CLASSIC_TRAIN_KEYS] of the ``train.*`` options: their other ``train.*`` values
show as ``—`` (a column that applies to no cell is dropped), their ``best_epoch`` as empty, and as their seeds repeat
one deterministic fit, their ± is over folds and their pooled metrics have no ± over seeds.

Cells are grouped into **sections** by protocol card (corpus, protocol, label set): numbers of
different protocols are never ranked against each other. Within a section the columns are the
config keys whose values differ between the cells it applies to; the best mean per metric is in
bold and the means with no clear paired difference from it are marked ≈ (``ser.ablate.tables``).

Outputs (``<runs>/report/`` unless told otherwise):

``report.md``           one table per section (marks as above), plus the protocol cards; then per
                        section the pooled metrics (all folds' test predictions as one set) and each
                        cell's paired UA difference from the best cell with its 95 % interval, the
                        number n of paired units and the Wilcoxon p (``ser.ablate.compare``): better /
                        worse only when the interval excludes 0 and p < 0.05
``report.tex``          the same section tables as a LaTeX document (booktabs; ``ser.ablate.latex``)
``report.csv``          one row per cell: its run directories, the varying keys, counts, mean and std of
                        every metric, marks, pooled metrics and the comparison with the best cell
``runs.csv``            one row per (cell, fold, seed) with its run directory: the long format for your
                        own statistics
``bars_<section>.png``  UA and WA per cell with std error bars
``confusion/<cell>.png`` confusion matrix summed over the cell's runs
``layer_weights_<section>.png``  learned softmax layer weights (mean ± std over runs) per cell
``robustness.csv`` / ``robustness_<section>.png``  test UA against SNR for fits that were also tested
                        on corrupted copies (``ser fit --robustness STORE...``)
``emobox.json``         per cell and run, metrics under EmoBox's field names (ua, wa, micro_f1, macro_f1,
                        confusion, num) with their mean and std
``emobox_predictions/<cell>.jsonl``  {"key", "pred", "label", "fold", "seed"} per test utterance

(``<cell>`` in a file name is the cell's name with ``/`` and other unsafe characters as ``_``.)
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser.ablate.compare import Comparison, paired_comparison, paired_differences
from ser.ablate.latex import latex_document, matrix_tex
from ser.ablate.tables import NOT_APPLICABLE, Matrix, MatrixCell, Row, Score, Table, mark, plain_text, score_of
from ser.atomic_files import atomic_open, write_json, write_text
from ser.cache.format import config_hash
from ser.errors import UserError
from ser.fusion.metrics import aggregate, metrics_from_confusion

logger = logging.getLogger(__name__)

METRICS = ("ua", "wa", "macro_f1", "weighted_f1")
METRIC_NAMES = {"ua": "UA", "wa": "WA", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1"}
RUN_KEYS = ("seeds", "folds", "out", "ensemble")
"""Config keys that do not define a cell (a cell pools its seeds and folds; an ensemble adds a row to a
run's own metrics but does not change its members)."""
CLASSIC_TRAIN_KEYS = ("train.normalize", "train.select", "train.refit")
"""The ``train.*`` options a classic head reads (``ser.fusion.classic``); the others do not apply to it."""


@dataclass
class Cell:
    """The pooled runs of one fit config (without seeds and folds)."""

    key: str
    """Hash of the cell's config (what groups runs into the cell)."""
    config: dict[str, Any]
    """The fit config shared by the cell's runs, without seeds, folds and output folder."""
    section: str
    """``corpus / protocol / label set``: the table the cell belongs to."""
    classes: list[str]
    """The class names of its runs."""
    card: dict[str, Any]
    """The protocol card of its runs."""
    root: Path = Path(".")
    """The runs folder the report reads (run directories are named relative to it)."""
    runs: list[dict[str, Any]] = field(default_factory=list)
    """metrics.json ``runs`` entries (fold, seed, test, validation, layer_weights, ...)."""
    run_dirs: list[Path] = field(default_factory=list)
    """The run directories pooled into the cell."""
    run_sources: list[Path] = field(default_factory=list)
    """The run directory of each entry of ``runs``."""
    robustness: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Condition label (``white 10 dB``) -> test metrics of every fold x seed run on that corrupted copy."""
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Condition label -> its corruption description (type, snr_db or rt60)."""

    @property
    def name(self) -> str:
        """The cell's run directory (the first in path order when its runs lie in several), relative to
        the runs folder."""
        return self.relative(self.run_dirs[0]) if self.run_dirs else self.key[:10]

    def relative(self, run_dir: Path) -> str:
        """``run_dir``'s path under the runs folder (its name when it is the runs folder itself)."""
        try:
            name = run_dir.relative_to(self.root).as_posix()
        except ValueError:
            return run_dir.as_posix()
        return run_dir.name if name == "." else name

    @property
    def classic(self) -> bool:
        """A scikit-learn head (no epochs, deterministic); for a head this version does not know, runs
        that all trained 0 epochs."""
        from ser.fusion.heads import HEADS

        info = HEADS.get(str(self.config.get("fusion")))
        if info is not None:
            return info.engine != "torch"
        return bool(self.runs) and all(run.get("epochs_run") == 0 for run in self.runs)

    def applies(self, column: str) -> bool:
        """False for a ``train.*`` option a classic head does not read."""
        return not (self.classic and column.startswith("train.") and column not in CLASSIC_TRAIN_KEYS)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Metric -> mean and sample std of the test metric over the runs (fold x seed); for a classic
        head over folds (each fold's mean over its seeds, which repeat one fit)."""
        if not self.classic:
            return aggregate([run["test"] for run in self.runs], METRICS)
        per_fold = [
            {m: float(np.mean([r["test"][m] for r in self.runs if str(r["fold"]) == fold])) for m in METRICS}
            for fold in self.folds()
        ]
        return aggregate(per_fold, METRICS)

    def confusion(self) -> np.ndarray:
        return np.sum([np.asarray(run["test"]["confusion"], dtype=np.int64) for run in self.runs], axis=0)

    def pooled(self) -> dict[str, dict[str, Any]]:
        """Metrics of all folds' test predictions pooled into one set per seed (summed confusions),
        mean ± std over seeds."""
        per_seed = []
        for seed in self.seeds():
            confusion = np.sum([run["test"]["confusion"] for run in self.runs if int(run["seed"]) == seed], axis=0)
            per_seed.append(metrics_from_confusion(confusion, self.classes))
        return aggregate(per_seed, METRICS)

    def run_scores(self, metric: str = "ua") -> dict[tuple[str, int], float]:
        """(fold, seed) -> the run's test ``metric`` (what paired comparisons are computed from)."""
        return {(str(run["fold"]), int(run["seed"])): float(run["test"][metric]) for run in self.runs}

    def seeds(self) -> list[int]:
        return sorted({int(run["seed"]) for run in self.runs})

    def folds(self) -> list[str]:
        return sorted({str(run["fold"]) for run in self.runs})


@dataclass
class Section:
    """Cells evaluated under one protocol card."""

    name: str
    """``corpus / protocol / label set``."""
    card: dict[str, Any]
    """The protocol card its cells share."""
    cells: list[Cell]
    """Its cells, in report order."""
    columns: list[str]
    """Flattened config keys whose values differ between the cells they apply to (``fusion`` and
    ``recipe`` always first; ``-`` for runs written before recipes were recorded)."""
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Summaries, comparisons and the table, computed once (a report reads them several times)."""

    def summaries(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Cell key -> its ``summary()``."""
        if "summaries" not in self._memo:
            self._memo["summaries"] = {c.key: c.summary() for c in self.cells}
        return dict(self._memo["summaries"])

    def best(self) -> dict[str, str]:
        """Metric -> cell key with the highest mean."""
        summaries = self.summaries()
        out = {}
        for metric in METRICS:
            means = {key: summary[metric]["mean"] for key, summary in summaries.items()}
            out[metric] = max(means, key=lambda k: means[k])
        return out

    def comparisons(self, metric: str = "ua") -> dict[str, Comparison | None]:
        """Cell key -> its paired ``metric`` comparison with the best cell in that metric (None for the
        best itself and for cells that share fewer than two paired units with it)."""
        if f"comparisons {metric}" not in self._memo:
            best_key = self.best()[metric]
            best = next(c for c in self.cells if c.key == best_key)
            reference = best.run_scores(metric)
            self._memo[f"comparisons {metric}"] = {
                c.key: None if c is best else paired_comparison(c.run_scores(metric), reference) for c in self.cells
            }
        return dict(self._memo[f"comparisons {metric}"])

    def protocol_text(self) -> str:
        """One sentence describing the section's protocol card."""
        card = self.card
        return (
            f"Protocol: {card.get('protocol')} ({len(card.get('folds') or [])} folds), validation: "
            f"{card.get('validation', '?')}, speaker-independent: {card.get('speaker_independent', '?')}, "
            f"{card.get('n_utterances', '?')} utterances."
        )

    def table(self) -> Table:
        """The section's results table (``ser.ablate.tables``): one row per cell, scores marked."""
        if "table" not in self._memo:
            self._memo["table"] = self._table()
        return self._memo["table"]

    def _table(self) -> Table:
        best = self.best()
        summaries = self.summaries()
        marked: dict[str, dict[str, Score]] = {}
        units: set[str] = set()
        for metric in METRICS:
            comparisons = self.comparisons(metric)
            units |= {c.unit for c in comparisons.values() if c is not None}
            scores = {c.key: score_of(summaries[c.key][metric]) for c in self.cells}
            marked[metric] = mark(scores, best[metric], comparisons)
        rows = [
            Row(
                name=cell.name,
                values=[display(cell, column) for column in self.columns],
                n_folds=len(cell.folds()),
                n_seeds=len(cell.seeds()),
                n_runs=len(cell.runs),
                classic=cell.classic,
                scores={metric: marked[metric][cell.key] for metric in METRICS},
            )
            for cell in self.cells
        ]
        return Table(
            section=self.name,
            protocol=self.protocol_text(),
            columns=list(self.columns),
            metrics={m: METRIC_NAMES[m] for m in METRICS},
            rows=rows,
            pair_units=sorted(units),
        )


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> dotted keys (``train.lr``); lists become their JSON text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, dict)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


class RunRecordError(ValueError):
    """A run directory's metrics.json lacks (or mistypes) a field the report reads."""


def _require(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """``value`` when it is a ``kind`` (never a bool where a number is wanted), else `RunRecordError`."""
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise RunRecordError(f"{where} is {value!r}, not {_kind_name(kind)}")
    if not isinstance(value, kind):
        raise RunRecordError(f"{where} is {_short(value)}, not {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _short(value: Any) -> str:
    text = "missing" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fraction_field(record: dict[str, Any], key: str, where: str) -> None:
    """``record[key]`` must be a finite number in [0, 1] (a metric as metrics.json stores it)."""
    value = _require(record.get(key), (int, float), f"{where}.{key}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise RunRecordError(f"{where}.{key} is {value!r}, not a finite fraction in [0, 1]")


def _check_ident(run: Any, where: str) -> dict[str, Any]:
    """A run entry with its ``fold`` (string or integer) and integer ``seed``."""
    _require(run, dict, where)
    _require(run.get("fold"), (str, int), f"{where}.fold")
    _require(run.get("seed"), int, f"{where}.seed")
    return dict(run)


def validate_record(metrics: Any, resolved: Any) -> None:
    """Check a run's metrics.json (and its config.yaml) against every field the report reads, once,
    when the run is loaded: a field missing, of the wrong type or non-finite raises `RunRecordError`
    naming it, so the run is skipped with one warning instead of breaking the report halfway."""
    if not isinstance(resolved, dict):
        raise RunRecordError("config.yaml is not a mapping")
    _require(resolved.get("config") or {}, dict, "config.yaml config")
    _require(metrics, dict, "the file")
    classes = _require(metrics.get("classes"), list, "classes")
    if not classes or not all(isinstance(c, str) for c in classes):
        raise RunRecordError(f"classes is {_short(classes)}, not a non-empty list of class names")
    card = _require(metrics.get("protocol_card", {}), dict, "protocol_card")
    for fold, roles in _require(card.get("cells") or {}, dict, "protocol_card.cells").items():
        where = f"protocol_card.cells[{fold!r}]"
        _require(roles, dict, where)
        train = _require(roles.get("train"), list, f"{where}.train")
        if not train or not all(isinstance(c, str) for c in train):
            raise RunRecordError(f"{where}.train is {_short(train)}, not a non-empty list of corpus names")
        _require(roles.get("test"), str, f"{where}.test")
    runs = _require(metrics.get("runs"), list, "runs")
    if not runs:
        raise RunRecordError("runs is empty (no fold x seed run finished)")
    size = len(classes)
    for i, entry in enumerate(runs):
        where = f"runs[{i}]"
        run = _check_ident(entry, where)
        test = _require(run.get("test"), dict, f"{where}.test")
        for metric in METRICS:
            _fraction_field(test, metric, f"{where}.test")
        confusion = _require(test.get("confusion"), list, f"{where}.test.confusion")
        if len(confusion) != size or not all(
            isinstance(row, list)
            and len(row) == size
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row)
            for row in confusion
        ):
            raise RunRecordError(f"{where}.test.confusion is not a {size} x {size} matrix of counts (one per class)")
        if test.get("n") is not None:
            _require(test["n"], int, f"{where}.test.n")
        if run.get("layer_weights") is not None:
            _require(run["layer_weights"], dict, f"{where}.layer_weights")
    for i, condition in enumerate(_require(metrics.get("robustness") or [], list, "robustness")):
        where = f"robustness[{i}]"
        _require(condition, dict, where)
        corruption = _require(condition.get("corruption"), dict, f"{where}.corruption")
        _require(corruption.get("type"), str, f"{where}.corruption.type")
        for key in ("snr_db", "rt60"):
            if key in corruption:
                value = _require(corruption[key], (int, float), f"{where}.corruption.{key}")
                if not math.isfinite(value):
                    raise RunRecordError(f"{where}.corruption.{key} is {value!r}, not a finite number")
        for j, entry in enumerate(_require(condition.get("runs"), list, f"{where}.runs")):
            run = _check_ident(entry, f"{where}.runs[{j}]")
            test = _require(run.get("test"), dict, f"{where}.runs[{j}].test")
            for metric in ("ua", "wa"):
                _fraction_field(test, metric, f"{where}.runs[{j}].test")


def _read_run(metrics_path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The run's metrics.json and config.yaml, or None (with a warning naming the file and what is wrong)
    when either cannot be read or lacks what the report reads (`validate_record`)."""
    import yaml

    run_dir = metrics_path.parent
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        resolved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, yaml.YAMLError) as err:
        # RecursionError: JSON nested deeper than the parser's recursion limit
        logger.warning("%s: skipped, cannot read its metrics.json / config.yaml (%s)", run_dir, err)
        return None
    try:
        validate_record(metrics, resolved)
    except RunRecordError as err:
        logger.warning("%s: skipped, not a finished ser fit run: %s (%s)", run_dir, err, metrics_path)
        return None
    return metrics, resolved


def collect(runs_dir: Path) -> list[Cell]:
    """Every finished run directory under ``runs_dir``, pooled into cells (in discovery order)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"{runs_dir} is not a folder of run directories")
    cells: dict[str, Cell] = {}
    seen: dict[tuple[str, str, int], tuple[Path, dict[str, Any]]] = {}
    duplicates = 0
    for metrics_path in sorted(runs_dir.rglob("metrics.json")):
        read = _read_run(metrics_path)
        if read is None:
            continue
        metrics, resolved = read
        config = {k: v for k, v in (resolved.get("config") or {}).items() if k not in RUN_KEYS}
        if not config.get("search"):
            config.pop("search", None)  # runs without a search pool with runs written before it existed
        config["label_set"] = resolved.get("label_set", config.get("label_set"))
        key = config_hash(config)
        card = metrics.get("protocol_card", {})
        run_dir = metrics_path.parent
        if key not in cells:
            section = (
                f"{card.get('corpus', '?')} / {card.get('protocol', config.get('protocol'))} / "
                f"{metrics.get('label_set', config.get('label_set'))}"
            )
            cells[key] = Cell(
                key=key,
                config=config,
                section=section,
                classes=list(metrics.get("classes", [])),
                card=card,
                root=runs_dir,
            )
        cell = cells[key]
        cell.run_dirs.append(run_dir)
        fresh: set[tuple[str, int]] = set()
        for run in metrics["runs"]:
            ident = (key, str(run["fold"]), int(run["seed"]))
            if ident in seen:
                duplicates += 1
                first_dir, first = seen[ident]
                if not same_numbers(first["test"], run["test"]):
                    logger.warning(
                        "%s and %s hold different test numbers for the same cell, fold %s, seed %d "
                        "(UA %.4f vs %.4f); the report keeps the first: delete or move the wrong copy",
                        first_dir,
                        run_dir,
                        ident[1],
                        ident[2],
                        first["test"]["ua"],
                        run["test"]["ua"],
                    )
                continue
            seen[ident] = (run_dir, run)
            fresh.add(ident[1:])
            cell.runs.append(run)
            cell.run_sources.append(run_dir)
        for condition in metrics.get("robustness") or []:
            label = condition_label(condition["corruption"])
            cell.conditions[label] = condition["corruption"]
            cell.robustness.setdefault(label, []).extend(
                r["test"] for r in condition["runs"] if (str(r["fold"]), int(r["seed"])) in fresh
            )
    if duplicates:
        logger.info("%d (cell, fold, seed) runs were found twice and counted once", duplicates)
    if not cells:
        raise UserError(f"no finished runs (metrics.json) under {runs_dir}; run `ser fit` or `ser ablate` first")
    return list(cells.values())


def same_numbers(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two copies of a run's test metrics agree (metrics to rounding, confusions exactly)."""
    return first["confusion"] == second["confusion"] and all(
        math.isclose(first[m], second[m], rel_tol=1e-9, abs_tol=1e-12) for m in METRICS
    )


def condition_label(corruption: dict[str, Any]) -> str:
    """``white 10 dB`` / ``reverb 0.5 s``."""
    if "snr_db" in corruption:
        return f"{corruption['type']} {corruption['snr_db']:g} dB"
    if "rt60" in corruption:
        return f"{corruption['type']} {corruption['rt60']:g} s"
    return str(corruption.get("type", "?"))


def _condition_order(corruption: dict[str, Any]) -> tuple[str, float]:
    """By type, then from mild to severe (high SNR / short RT60 first)."""
    if "snr_db" in corruption:
        return str(corruption["type"]), -float(corruption["snr_db"])
    return str(corruption["type"]), float(corruption.get("rt60", 0.0))


def robustness_table(section: Section) -> str:
    """Markdown: test UA (mean ± std over folds x seeds) on the clean test rows and on every corrupted
    copy, per cell that was evaluated on corrupted copies; empty when none was."""
    cells = [c for c in section.cells if c.robustness]
    if not cells:
        return ""
    conditions: dict[str, dict[str, Any]] = {}
    for cell in cells:
        conditions.update(cell.conditions)
    order = sorted(conditions, key=lambda label: _condition_order(conditions[label]))
    lines = [
        "Noise robustness: test UA (%) on corrupted copies of the test rows (the clean fit, tested once per copy).",
        "",
        "| cell | clean | " + " | ".join(order) + " |",
        "|" + "---|" * (len(order) + 2),
    ]
    for cell in cells:
        row = [cell.name, plain_text(score_of(cell.summary()["ua"]))]
        for label in order:
            runs = cell.robustness.get(label)
            row.append(plain_text(score_of(aggregate(runs, ("ua",))["ua"])) if runs else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def sections(cells: Iterable[Cell]) -> list[Section]:
    """Cells grouped by protocol card, each section with the config columns worth showing: ``fusion``,
    ``recipe``, and every key with more than one value among the cells it applies to."""
    grouped: dict[str, list[Cell]] = {}
    for cell in cells:
        grouped.setdefault(cell.section, []).append(cell)
    out = []
    for name, members in grouped.items():
        flat = [flatten(c.config) for c in members]
        keys = list(dict.fromkeys(k for f in flat for k in f))
        varying = [
            k
            for k in keys
            if len({json.dumps(f.get(k), default=str) for c, f in zip(members, flat, strict=True) if c.applies(k)}) > 1
        ]
        columns = ["fusion", "recipe", *[k for k in varying if k not in ("fusion", "recipe")]]
        out.append(Section(name=name, card=members[0].card, cells=members, columns=columns))
    return out


def _value(cell: Cell, column: str) -> str:
    value = flatten(cell.config).get(column)
    return "-" if value is None else str(value)


def display(cell: Cell, column: str) -> str:
    """A config column's text for ``cell``: its value, ``-`` when unset, ``—`` when it does not apply."""
    return _value(cell, column) if cell.applies(column) else NOT_APPLICABLE


def score_markdown(score: Score) -> str:
    """``**85.42 ± 4.17**`` (bold), ``≈ 80.00 ± 3.10`` (tie) or ``72.50`` (one value)."""
    text = plain_text(score)
    if score.bold:
        return f"**{text}**"
    return f"≈ {text}" if score.tie else text


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(all_sections: list[Section], title: str) -> str:
    """The whole ``report.md``."""
    lines = [
        f"# {title}",
        "",
        "Test metrics (%): mean ± std over each cell's runs (n_runs = folds x seeds; a classic head's seeds "
        "repeat one deterministic fit, so its ± is over folds), the statistic `metrics.json` holds; no ± where "
        "a cell has a single run. UA = macro recall, WA = accuracy. **Bold**: the best mean per column (and any "
        "equal to it at this precision); ≈: no clear difference from the bold cell in a paired comparison "
        "(95 % bootstrap interval contains 0 or Wilcoxon p ≥ 0.05, see below); —: the setting does not apply "
        f"to the cell's head (classic heads read only {', '.join(CLASSIC_TRAIN_KEYS)}).",
        "",
    ]
    for section in all_sections:
        table = section.table()
        lines += [f"## {section.name}", "", section.protocol_text(), ""]
        header = ["cell", *table.columns, "n_folds", "n_seeds", "n_runs", *table.metrics.values()]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for row in table.rows:
            cells = [
                row.name,
                *(_md(value) for value in row.values),
                str(row.n_folds),
                str(row.n_seeds),
                str(row.n_runs),
                *(score_markdown(row.scores[m]) for m in table.metrics),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += comparison_table(section)
        robustness = robustness_table(section)
        if robustness:
            lines += [robustness, ""]
    lines += run_directories([cell for section in all_sections for cell in section.cells])
    return "\n".join(lines)


def run_directories(cells: list[Cell]) -> list[str]:
    """Markdown lines listing the run directories of every cell that has more than one (none if none)."""
    several = [cell for cell in cells if len(cell.run_dirs) > 1]
    if not several:
        return []
    lines = [
        "## Run directories",
        "",
        "Cells whose runs lie in several run directories (`ser ablate` writes one per seed) are named after the first:",
        "",
    ]
    for cell in several:
        names = ", ".join(f"`{cell.relative(d)}`" for d in cell.run_dirs)
        lines.append(f"- `{cell.name}`: {names}")
    return [*lines, ""]


def verdict_cells(comparison: Comparison | None, is_best: bool, units: tuple[str, int]) -> tuple[str, str, str, str]:
    """(ΔUA with its interval, n, p-value, verdict) cells of the comparison table; ``units`` is
    (unit, count) of the paired units the cell shares with the best (for cells with too few)."""
    if is_best:
        return "best", "-", "-", "-"
    if comparison is None:
        unit, count = units
        return "-", f"{count} {unit}{'' if count == 1 else 's'}", "-", "too few shared runs"
    interval = f"{100 * comparison.mean_difference:+.2f} [{100 * comparison.low:+.2f}, {100 * comparison.high:+.2f}]"
    return interval, comparison.units_text(), f"{comparison.p_value:.3f}", comparison.verdict


def comparison_table(section: Section) -> list[str]:
    """Markdown lines: pooled metrics per cell and each cell's paired UA difference from the best cell."""
    best_key = section.best()["ua"]
    best = next(c for c in section.cells if c.key == best_key)
    comparisons = section.comparisons()
    lines = [
        "Pooled: all folds' test predictions as one set per seed; ± is the std over seeds (none with one seed, "
        "nor for classic heads, whose seeds repeat one fit). ΔUA: cell − best cell, paired over the n folds "
        "both ran (each fold's difference averaged over their shared seeds; over seeds where they share a "
        "single fold), with a 95 % paired-bootstrap interval and the Wilcoxon signed-rank p. Verdict: better "
        "or worse only when the interval excludes 0 AND p < 0.05, else no clear difference (with n ≤ 5 the "
        "test cannot reach p < 0.05).",
        "",
        "| cell | UA pooled | WA pooled | macro-F1 pooled | weighted-F1 pooled | ΔUA vs best [95 % CI] | n | "
        "Wilcoxon p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in section.cells:
        pooled = cell.pooled()
        unit, differences = paired_differences(cell.run_scores(), best.run_scores())
        difference, n, p_value, verdict = verdict_cells(
            comparisons[cell.key], cell.key == best_key, (unit, len(differences))
        )
        lines.append(
            f"| {cell.name} | "
            + " | ".join(plain_text(score_of(pooled[m], spread=not cell.classic)) for m in METRICS)
            + f" | {difference} | {n} | {p_value} | {verdict} |"
        )
    return [*lines, ""]


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def cell_rows(all_sections: list[Section]) -> tuple[list[str], list[dict[str, Any]]]:
    """report.csv: one row per cell (fractions in [0, 1], not percent; an empty std: a single value;
    an empty config value: the setting does not apply to the cell's head)."""
    config_columns = list(dict.fromkeys(c for s in all_sections for c in s.columns))
    columns = [
        "section",
        "cell",
        "run_dirs",
        *config_columns,
        "n_folds",
        "n_seeds",
        "n_runs",
        "seed_list",
        *(f"{m}_{stat}" for m in METRICS for stat in ("mean", "std")),
        "best",
        "tied_with_best",
        *(f"{m}_pooled_{stat}" for m in METRICS for stat in ("mean", "std")),
        "ua_diff_vs_best",
        "ua_diff_low",
        "ua_diff_high",
        "wilcoxon_p",
        "n_pairs",
        "pair_unit",
        "verdict",
    ]
    rows = []
    for section in all_sections:
        table = section.table()
        best_key = section.best()["ua"]
        comparisons = section.comparisons()
        for cell, shown in zip(section.cells, table.rows, strict=True):
            pooled = cell.pooled()
            comparison = comparisons[cell.key]
            row: dict[str, Any] = {
                "section": section.name,
                "cell": cell.name,
                "run_dirs": " ".join(cell.relative(d) for d in cell.run_dirs),
                "n_folds": shown.n_folds,
                "n_seeds": shown.n_seeds,
                "n_runs": shown.n_runs,
                "seed_list": " ".join(map(str, cell.seeds())),
                "best": " ".join(m for m in METRICS if shown.scores[m].bold),
                "tied_with_best": " ".join(m for m in METRICS if shown.scores[m].tie),
                "verdict": "best" if cell.key == best_key else (comparison.verdict if comparison else ""),
            }
            row.update(
                {c: "" if v == NOT_APPLICABLE else v for c, v in zip(section.columns, shown.values, strict=True)}
            )
            for metric in METRICS:
                score = shown.scores[metric]
                pooled_score = score_of(pooled[metric], spread=not cell.classic)
                row[f"{metric}_mean"] = _fraction(score.mean)
                row[f"{metric}_std"] = _fraction(score.std)
                row[f"{metric}_pooled_mean"] = _fraction(pooled_score.mean)
                row[f"{metric}_pooled_std"] = _fraction(pooled_score.std)
            if comparison is not None:
                row.update(
                    {
                        "ua_diff_vs_best": f"{comparison.mean_difference:.6f}",
                        "ua_diff_low": f"{comparison.low:.6f}",
                        "ua_diff_high": f"{comparison.high:.6f}",
                        "wilcoxon_p": f"{comparison.p_value:.6f}",
                        "n_pairs": comparison.n_pairs,
                        "pair_unit": comparison.unit,
                    }
                )
            rows.append(row)
    return columns, rows


def run_rows(cells: list[Cell]) -> tuple[list[str], list[dict[str, Any]]]:
    """runs.csv: one row per (cell, fold, seed) with the run directory holding it (``best_epoch`` and
    ``epochs_run`` empty for classic heads, which train no epochs)."""
    columns = ["cell", "run_dir", "fold", "seed", "best_epoch", "epochs_run", *METRICS, "n_test"]
    rows = [
        {
            "cell": cell.name,
            "run_dir": cell.relative(source),
            "fold": run["fold"],
            "seed": run["seed"],
            "best_epoch": "" if cell.classic else run.get("best_epoch"),
            "epochs_run": "" if cell.classic else run.get("epochs_run"),
            **{m: f"{run['test'][m]:.6f}" for m in METRICS},
            "n_test": run["test"].get("n"),
        }
        for cell in cells
        for run, source in zip(cell.runs, cell.run_sources, strict=True)
    ]
    return columns, rows


def emobox_record(cell: Cell) -> dict[str, Any]:
    """A cell's runs under EmoBox's metric names (``EmoEval``: wa, ua, micro_f1, macro_f1, confusion,
    num); micro-F1 of single-label classification is the accuracy, computed here from the confusion."""
    folds = []
    for run in cell.runs:
        confusion = np.asarray(run["test"]["confusion"], dtype=np.int64)
        num = int(confusion.sum())
        folds.append(
            {
                "fold": run["fold"],
                "seed": run["seed"],
                "num": num,
                "wa": run["test"]["wa"],
                "ua": run["test"]["ua"],
                "micro_f1": float(np.trace(confusion) / max(num, 1)),
                "macro_f1": run["test"]["macro_f1"],
                "confusion": confusion.tolist(),
            }
        )
    stats = aggregate(folds, ("ua", "wa", "micro_f1", "macro_f1"))
    return {
        "config": cell.config,
        "classes": cell.classes,
        "protocol_card": cell.card,
        "runs": folds,
        "mean": {k: v["mean"] for k, v in stats.items()},
        "std": {k: v["std"] for k, v in stats.items()},
    }


def _emobox_predictions(cell: Cell, path: Path) -> int:
    """{"key", "pred", "label", "fold", "seed"} lines from the cell's predictions.csv files."""
    wanted = {(str(r["fold"]), int(r["seed"])) for r in cell.runs}
    written: set[tuple[str, int]] = set()
    count = 0
    with atomic_open(path) as out:
        for run_dir in cell.run_dirs:
            found: set[tuple[str, int]] = set()
            try:
                with open(run_dir / "predictions.csv", encoding="utf-8", newline="") as source:
                    for row in csv.DictReader(source):
                        ident = (row["fold"], int(row["seed"]))
                        if ident not in wanted or ident in written:
                            continue
                        found.add(ident)
                        out.write(
                            json.dumps(
                                {
                                    "key": row["id"],
                                    "pred": row["pred"],
                                    "label": row["true"],
                                    "fold": row["fold"],
                                    "seed": int(row["seed"]),
                                }
                            )
                            + "\n"
                        )
                        count += 1
            except OSError:
                logger.warning("%s has no predictions.csv; its EmoBox predictions are missing", run_dir)
            written |= found
    return count


def safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_") or "section"


def test_rows(run: dict[str, Any]) -> int:
    """Test rows of one run: its recorded ``n``, else the sum of its test confusion."""
    n = run["test"].get("n")
    return int(n) if n is not None else int(np.sum(run["test"]["confusion"]))


def cross_corpus_matrix(cell: Cell) -> Matrix | None:
    """The cell's cross-corpus matrix from its protocol card's ``cells`` (fold -> training corpora and test
    corpus), or None when the card has none. An entry's UA is the mean over its folds of each fold's mean over
    seeds (the diagonal averages its k within-corpus folds); its rows are the test rows summed over its folds
    (one seed's count: seeds repeat the same test set). Runs of folds the card does not list are left out,
    with a warning."""
    roles = cell.card.get("cells") or {}
    if not roles:
        return None
    folds: dict[tuple[str, str], list[str]] = {}
    for fold, role in roles.items():
        folds.setdefault(("+".join(role["train"]), str(role["test"])), []).append(str(fold))
    by_fold: dict[str, list[dict[str, Any]]] = {}
    for run in cell.runs:
        by_fold.setdefault(str(run["fold"]), []).append(run)
    unlisted = sorted(set(by_fold) - {str(f) for f in roles})
    if unlisted:
        logger.warning(
            "%s: folds %s are not in its protocol card's cells; the matrix leaves them out",
            cell.name,
            ", ".join(unlisted),
        )
    entries: dict[tuple[str, str], MatrixCell] = {}
    for pair, names in folds.items():
        ran = [name for name in names if name in by_fold]
        if not ran:
            continue
        entries[pair] = MatrixCell(
            ua=float(np.mean([np.mean([r["test"]["ua"] for r in by_fold[name]]) for name in ran])),
            n_rows=sum(test_rows(by_fold[name][0]) for name in ran),
            n_folds=len(ran),
        )
    if not entries:
        return None
    train = list(dict.fromkeys(pair[0] for pair in folds))
    test = list(dict.fromkeys(pair[1] for pair in folds))
    return Matrix(train=train, test=test, cells=entries)


def matrix_markdown(matrices: dict[str, Matrix]) -> str:
    """The report.md part holding each run's cross-corpus matrix ("" when none)."""
    parts = []
    for name, matrix in matrices.items():
        parts += [
            f"## Cross-corpus matrix: {_md(name)}",
            "",
            "UA % (mean over folds and seeds) per training corpora (rows) and test corpus (columns), with the "
            "test rows and folds of each entry; the diagonal is within-corpus.",
            "",
            *matrix.markdown(),
            "",
        ]
    return "\n".join(parts)


def write_report(runs_dir: Path, out_dir: Path | None = None, *, title: str | None = None, plots: bool = True) -> Path:
    """Collect, aggregate and write every output listed in the module docstring; returns the folder."""
    from ser.ablate.figures import (
        fit_keywords,
        plot_bars,
        plot_layer_weights,
        plot_matrix,
        plot_robustness,
        ua_chance,
    )
    from ser.fusion.plots import plot_confusion

    runs_dir = Path(runs_dir)
    out_dir = Path(out_dir) if out_dir is not None else runs_dir / "report"
    cells = collect(runs_dir)
    all_sections = sections(cells)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title or f"Results in {runs_dir.name}"
    matrices = {cell.name: m for cell in cells if (m := cross_corpus_matrix(cell)) is not None}
    text = markdown(all_sections, title)
    if matrices:
        text = text.rstrip("\n") + "\n\n" + matrix_markdown(matrices)
    write_text(out_dir / "report.md", text)
    write_text(
        out_dir / "report.tex",
        latex_document(
            [section.table() for section in all_sections],
            title,
            extra=[matrix_tex(name, matrix) for name, matrix in matrices.items()],
        ),
    )
    for name, matrix in matrices.items():
        _write_csv(out_dir / f"matrix-{safe_name(name)}.csv", *matrix.csv_rows())
    _write_csv(out_dir / "report.csv", *cell_rows(all_sections))
    _write_csv(out_dir / "runs.csv", *run_rows(cells))
    emobox = {cell.name: emobox_record(cell) for cell in cells}
    write_json(out_dir / "emobox.json", emobox, indent=1, default=str)
    (out_dir / "emobox_predictions").mkdir(exist_ok=True)
    for cell in cells:
        _emobox_predictions(cell, out_dir / "emobox_predictions" / f"{safe_name(cell.name)}.jsonl")
    robust = [c for c in cells if c.robustness]
    if robust:
        _write_csv(out_dir / "robustness.csv", *robustness_rows(robust))
    if plots:
        for name, matrix in matrices.items():
            plot_matrix(out_dir / f"matrix-{safe_name(name)}.png", name, matrix)
        for section in all_sections:
            curves = robustness_curves([c for c in section.cells if c.robustness], section)
            if curves:
                plot_robustness(
                    out_dir / f"robustness_{safe_name(section.name)}.png",
                    section.name,
                    curves,
                    ua_chance(c.classes for c in section.cells),
                )
        (out_dir / "confusion").mkdir(exist_ok=True)
        for cell in cells:
            plot_confusion(
                out_dir / "confusion" / f"{safe_name(cell.name)}.png",
                cell.confusion().tolist(),
                cell.classes,
                **fit_keywords(cell.config, cell.card),
                ua=cell.pooled()["ua"]["mean"],
            )
        for section in all_sections:
            labels = [cell_label(cell, section) for cell in section.cells]
            plot_bars(
                out_dir / f"bars_{safe_name(section.name)}.png",
                section.name,
                labels,
                [cell.summary() for cell in section.cells],
                chance=ua_chance(c.classes for c in section.cells),
            )
            weight_curves = {
                f"{label} [{modality}]": weights
                for cell, label in zip(section.cells, labels, strict=True)
                for modality, weights in layer_weight_runs(cell).items()
            }
            if weight_curves:
                plot_layer_weights(
                    out_dir / f"layer_weights_{safe_name(section.name)}.png", section.name, weight_curves
                )
    return out_dir


def robustness_rows(cells: list[Cell]) -> tuple[list[str], list[dict[str, Any]]]:
    """robustness.csv: one row per (cell, condition), the clean test included."""
    columns = ["cell", "condition", "type", "snr_db", "rt60", "n_runs", "ua_mean", "ua_std", "wa_mean", "wa_std"]
    rows = []
    for cell in cells:
        clean = cell.summary()
        rows.append(
            {
                "cell": cell.name,
                "condition": "clean",
                "type": "clean",
                "n_runs": len(cell.runs),
                "ua_mean": f"{clean['ua']['mean']:.6f}",
                "ua_std": f"{clean['ua']['std']:.6f}",
                "wa_mean": f"{clean['wa']['mean']:.6f}",
                "wa_std": f"{clean['wa']['std']:.6f}",
            }
        )
        for label, runs in cell.robustness.items():
            stats = aggregate(runs, ("ua", "wa"))
            rows.append(
                {
                    "cell": cell.name,
                    "condition": label,
                    **cell.conditions[label],
                    "n_runs": len(runs),
                    "ua_mean": f"{stats['ua']['mean']:.6f}",
                    "ua_std": f"{stats['ua']['std']:.6f}",
                    "wa_mean": f"{stats['wa']['mean']:.6f}",
                    "wa_std": f"{stats['wa']['std']:.6f}",
                }
            )
    return columns, rows


def robustness_curves(cells: list[Cell], section: Section) -> dict[str, dict[str, Any]]:
    """For plotting: ``"<cell label> [<noise>]"`` -> {"snr": [...], "mean": [...], "std": [...], "clean": UA}
    (noise conditions only, sorted by SNR)."""
    curves: dict[str, dict[str, Any]] = {}
    for cell in cells:
        clean = cell.summary()["ua"]["mean"]
        by_type: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        for label, runs in cell.robustness.items():
            corruption = cell.conditions[label]
            if "snr_db" in corruption:
                by_type.setdefault(str(corruption["type"]), []).append(
                    (float(corruption["snr_db"]), aggregate(runs, ("ua",))["ua"])
                )
        for noise, points in by_type.items():
            points.sort(key=lambda point: point[0])
            curves[f"{cell_label(cell, section)} [{noise}]"] = {
                "snr": [p[0] for p in points],
                "mean": [p[1]["mean"] for p in points],
                "std": [p[1]["std"] for p in points],
                "clean": clean,
            }
    return curves


def cell_label(cell: Cell, section: Section) -> str:
    """Label for plots: the cell's values of the section's varying columns (those that apply to it), input
    stores by file name."""
    from ser.fusion.config import MODALITIES
    from ser.fusion.plots import short_view

    parts = [
        _value(cell, c)
        if c == "fusion"
        else f"{c}={short_view(_value(cell, c))}"
        if c in MODALITIES
        else f"{c.split('.')[-1]}={_value(cell, c)}"
        for c in section.columns
        if cell.applies(c)
    ]
    return " ".join(parts)  # the pictures wrap it


def layer_weight_runs(cell: Cell) -> dict[str, list[list[float]]]:
    """Modality -> the learned layer weights of every run that learned them."""
    out: dict[str, list[list[float]]] = {}
    for run in cell.runs:
        for modality, weights in (run.get("layer_weights") or {}).items():
            if weights and all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights):
                out.setdefault(modality, []).append([float(w) for w in weights])
    return out
