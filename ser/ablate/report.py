"""``ser report``: every finished run under a folder, grouped into grid cells, as tables and plots.

A **cell** is a fit config without its seeds and folds: the runs of one cell (every fold x seed,
whether they came from one ``ser fit --seeds 0,1,2`` or from three ``ser ablate`` jobs) are pooled,
and each metric is reported as mean ± std over those fold x seed runs (the same statistic
``metrics.json`` holds for a single run directory). A (cell, fold, seed) found twice counts once.

Cells are grouped into **sections** by protocol card (corpus, protocol, label set): numbers of
different protocols are never ranked against each other. Within a section the columns are the
config keys that differ between its cells, and the best mean per metric is marked.

Outputs (``<runs>/report/`` unless told otherwise):

``report.md``           one table per section, best per metric in bold, plus the protocol cards; then per
                        section the pooled metrics (all folds' test predictions as one set) and each
                        cell's paired UA difference from the best cell with its 95 % interval
                        (``ser.ablate.compare``), marking cells not distinguishable from the best
``report.csv``          one row per cell: the varying keys, n runs, mean and std of every metric, best flags
``runs.csv``            one row per (cell, fold, seed): the long format for your own statistics
``bars_<section>.png``  UA and WA per cell with std error bars
``confusion/<cell>.png`` confusion matrix summed over the cell's runs
``layer_weights_<section>.png``  learned softmax layer weights (mean ± std over runs) per cell
``robustness.csv`` / ``robustness_<section>.png``  test UA against SNR for fits that were also tested
                        on corrupted copies (``ser fit --robustness STORE...``)
``emobox.json``         per cell and run, metrics under EmoBox's field names (ua, wa, micro_f1, macro_f1,
                        confusion, num) with their mean and std
``emobox_predictions/<cell>.jsonl``  {"key", "pred", "label", "fold", "seed"} per test utterance
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

from ser.ablate.compare import Comparison, paired_comparison
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


@dataclass
class Cell:
    """The pooled runs of one fit config (without seeds and folds)."""

    key: str
    config: dict[str, Any]
    section: str
    classes: list[str]
    card: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    """metrics.json ``runs`` entries (fold, seed, test, validation, layer_weights, ...)."""
    run_dirs: list[Path] = field(default_factory=list)
    robustness: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Condition label (``white 10 dB``) -> test metrics of every fold x seed run on that corrupted copy."""
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Condition label -> its corruption description (type, snr_db or rt60)."""

    @property
    def cell_id(self) -> str:
        return f"{self.config.get('fusion', 'cell')}-{self.key[:8]}"

    def summary(self) -> dict[str, dict[str, Any]]:
        return aggregate([run["test"] for run in self.runs], METRICS)

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
        """(fold, seed) -> the run's test ``metric`` (what paired comparisons pair on)."""
        return {(str(run["fold"]), int(run["seed"])): float(run["test"][metric]) for run in self.runs}

    def seeds(self) -> list[int]:
        return sorted({int(run["seed"]) for run in self.runs})

    def folds(self) -> list[str]:
        return sorted({str(run["fold"]) for run in self.runs})


@dataclass
class Section:
    """Cells evaluated under one protocol card."""

    name: str
    card: dict[str, Any]
    cells: list[Cell]
    columns: list[str]
    """Flattened config keys whose values differ between the cells (``fusion`` and ``recipe`` always
    first; ``-`` for runs written before recipes were recorded)."""

    def best(self) -> dict[str, str]:
        """Metric -> cell key with the highest mean."""
        out = {}
        for metric in METRICS:
            means = {c.key: c.summary()[metric]["mean"] for c in self.cells}
            out[metric] = max(means, key=lambda k: means[k])
        return out

    def comparisons(self) -> dict[str, Comparison | None]:
        """Cell key -> its paired UA comparison with the best-UA cell (None for the best itself and for
        cells that share fewer than two (fold, seed) runs with it)."""
        best = next(c for c in self.cells if c.key == self.best()["ua"])
        reference = best.run_scores()
        return {c.key: None if c is best else paired_comparison(c.run_scores(), reference) for c in self.cells}


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


def _read_run(metrics_path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    import yaml

    run_dir = metrics_path.parent
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        resolved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as err:
        logger.warning("%s: skipped, cannot read its metrics.json / config.yaml (%s)", run_dir, err)
        return None
    if not isinstance(metrics, dict) or "runs" not in metrics or not isinstance(resolved, dict):
        logger.warning("%s: skipped, not a ser fit run directory", run_dir)
        return None
    return metrics, resolved


def collect(runs_dir: Path) -> list[Cell]:
    """Every finished run directory under ``runs_dir``, pooled into cells (in discovery order)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"{runs_dir} is not a folder of run directories")
    cells: dict[str, Cell] = {}
    seen: set[tuple[str, str, int]] = set()
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
        if key not in cells:
            section = (
                f"{card.get('corpus', '?')} / {card.get('protocol', config.get('protocol'))} / "
                f"{metrics.get('label_set', config.get('label_set'))}"
            )
            cells[key] = Cell(
                key=key, config=config, section=section, classes=list(metrics.get("classes", [])), card=card
            )
        cell = cells[key]
        cell.run_dirs.append(metrics_path.parent)
        fresh: set[tuple[str, int]] = set()
        for run in metrics["runs"]:
            ident = (key, str(run["fold"]), int(run["seed"]))
            if ident in seen:
                duplicates += 1
                continue
            seen.add(ident)
            fresh.add(ident[1:])
            cell.runs.append(run)
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
        row = [cell.cell_id, _pct(cell.summary()["ua"])]
        for label in order:
            runs = cell.robustness.get(label)
            row.append(_pct(aggregate(runs, ("ua",))["ua"]) if runs else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def sections(cells: Iterable[Cell]) -> list[Section]:
    grouped: dict[str, list[Cell]] = {}
    for cell in cells:
        grouped.setdefault(cell.section, []).append(cell)
    out = []
    for name, members in grouped.items():
        flat = [flatten(c.config) for c in members]
        keys = list(dict.fromkeys(k for f in flat for k in f))
        varying = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat}) > 1]
        columns = ["fusion", "recipe", *[k for k in varying if k not in ("fusion", "recipe")]]
        out.append(Section(name=name, card=members[0].card, cells=members, columns=columns))
    return out


def _pct(entry: dict[str, Any]) -> str:
    return f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f}"


def _value(cell: Cell, column: str) -> str:
    value = flatten(cell.config).get(column)
    return "-" if value is None else str(value)


def markdown(all_sections: list[Section], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "Mean ± std over folds x seeds of the test metrics (%); UA = macro recall, WA = accuracy. "
        "Best per column in bold.",
        "",
    ]
    for section in all_sections:
        best = section.best()
        lines += [f"## {section.name}", ""]
        card = section.card
        lines.append(
            f"Protocol: {card.get('protocol')} ({len(card.get('folds') or [])} folds), validation: "
            f"{card.get('validation', '?')}, speaker-independent: {card.get('speaker_independent', '?')}, "
            f"{card.get('n_utterances', '?')} utterances."
        )
        lines.append("")
        header = ["cell", *section.columns, "folds", "seeds", "runs", *(METRIC_NAMES[m] for m in METRICS)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for cell in section.cells:
            summary = cell.summary()
            scores = [f"**{_pct(summary[m])}**" if best[m] == cell.key else _pct(summary[m]) for m in METRICS]
            row = [
                cell.cell_id,
                *(_value(cell, c).replace("|", "\\|") for c in section.columns),
                str(len(cell.folds())),
                ",".join(map(str, cell.seeds())),
                str(len(cell.runs)),
                *scores,
            ]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lines += comparison_table(section)
        robustness = robustness_table(section)
        if robustness:
            lines += [robustness, ""]
    return "\n".join(lines)


def _difference(comparison: Comparison | None, is_best: bool) -> tuple[str, str, str]:
    """(ΔUA with its interval, p-value, verdict) cells of the comparison table."""
    if is_best:
        return "best", "-", "-"
    if comparison is None:
        return "no shared runs", "-", "-"
    interval = f"{100 * comparison.mean_difference:+.2f} [{100 * comparison.low:+.2f}, {100 * comparison.high:+.2f}]"
    verdict = (
        "worse"
        if comparison.distinguishable and comparison.mean_difference < 0
        else ("better?" if comparison.distinguishable else "≈ best")
    )
    return interval, f"{comparison.p_value:.3f}", verdict


def comparison_table(section: Section) -> list[str]:
    """Markdown lines: pooled metrics per cell and each cell's paired UA difference from the best cell."""
    best = section.best()["ua"]
    comparisons = section.comparisons()
    lines = [
        "Pooled: all folds' test predictions as one set (per seed, mean ± std over seeds). ΔUA: cell − best "
        "cell over their shared (fold, seed) runs, with a 95 % paired-bootstrap interval and the Wilcoxon "
        "signed-rank p; **≈ best** = the interval contains 0, not distinguishable from the best.",
        "",
        "| cell | UA pooled | WA pooled | macro-F1 pooled | weighted-F1 pooled | ΔUA vs best [95 % CI] | p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in section.cells:
        pooled = cell.pooled()
        difference, p_value, verdict = _difference(comparisons[cell.key], cell.key == best)
        verdict = f"**{verdict}**" if verdict == "≈ best" else verdict
        lines.append(
            f"| {cell.cell_id} | "
            + " | ".join(_pct(pooled[m]) for m in METRICS)
            + f" | {difference} | {p_value} | {verdict} |"
        )
    return [*lines, ""]


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def cell_rows(all_sections: list[Section]) -> tuple[list[str], list[dict[str, Any]]]:
    """report.csv: one row per cell (fractions in [0, 1], not percent)."""
    config_columns = list(dict.fromkeys(c for s in all_sections for c in s.columns))
    columns = [
        "section",
        "cell",
        *config_columns,
        "n_folds",
        "seeds",
        "n_runs",
        *(f"{m}_{stat}" for m in METRICS for stat in ("mean", "std")),
        "best",
        *(f"{m}_pooled_{stat}" for m in METRICS for stat in ("mean", "std")),
        "ua_diff_vs_best",
        "ua_diff_low",
        "ua_diff_high",
        "wilcoxon_p",
        "n_pairs",
        "distinguishable_from_best",
    ]
    rows = []
    for section in all_sections:
        best = section.best()
        comparisons = section.comparisons()
        for cell in section.cells:
            summary = cell.summary()
            pooled = cell.pooled()
            comparison = comparisons[cell.key]
            row: dict[str, Any] = {
                "section": section.name,
                "cell": cell.cell_id,
                "n_folds": len(cell.folds()),
                "seeds": " ".join(map(str, cell.seeds())),
                "n_runs": len(cell.runs),
                "best": " ".join(m for m in METRICS if best[m] == cell.key),
            }
            row.update({c: _value(cell, c) for c in section.columns})
            for metric in METRICS:
                row[f"{metric}_mean"] = f"{summary[metric]['mean']:.6f}"
                row[f"{metric}_std"] = f"{summary[metric]['std']:.6f}"
                row[f"{metric}_pooled_mean"] = f"{pooled[metric]['mean']:.6f}"
                row[f"{metric}_pooled_std"] = f"{pooled[metric]['std']:.6f}"
            if comparison is not None:
                row.update(
                    {
                        "ua_diff_vs_best": f"{comparison.mean_difference:.6f}",
                        "ua_diff_low": f"{comparison.low:.6f}",
                        "ua_diff_high": f"{comparison.high:.6f}",
                        "wilcoxon_p": f"{comparison.p_value:.6f}",
                        "n_pairs": comparison.n_pairs,
                        "distinguishable_from_best": comparison.distinguishable,
                    }
                )
            rows.append(row)
    return columns, rows


def run_rows(cells: list[Cell]) -> tuple[list[str], list[dict[str, Any]]]:
    """runs.csv: one row per (cell, fold, seed)."""
    columns = ["cell", "fold", "seed", "best_epoch", *METRICS, "n_test"]
    rows = [
        {
            "cell": cell.cell_id,
            "fold": run["fold"],
            "seed": run["seed"],
            "best_epoch": run.get("best_epoch"),
            **{m: f"{run['test'][m]:.6f}" for m in METRICS},
            "n_test": run["test"].get("n"),
        }
        for cell in cells
        for run in cell.runs
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


def write_report(runs_dir: Path, out_dir: Path | None = None, *, title: str | None = None, plots: bool = True) -> Path:
    """Collect, aggregate and write every output listed in the module docstring; returns the folder."""
    from ser.ablate.figures import plot_bars, plot_layer_weights, plot_robustness
    from ser.fusion.plots import plot_confusion

    runs_dir = Path(runs_dir)
    out_dir = Path(out_dir) if out_dir is not None else runs_dir / "report"
    cells = collect(runs_dir)
    all_sections = sections(cells)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "report.md", markdown(all_sections, title or f"Results in {runs_dir.name}"))
    _write_csv(out_dir / "report.csv", *cell_rows(all_sections))
    _write_csv(out_dir / "runs.csv", *run_rows(cells))
    emobox = {cell.cell_id: emobox_record(cell) for cell in cells}
    write_json(out_dir / "emobox.json", emobox, indent=1, default=str)
    (out_dir / "emobox_predictions").mkdir(exist_ok=True)
    for cell in cells:
        _emobox_predictions(cell, out_dir / "emobox_predictions" / f"{cell.cell_id}.jsonl")
    robust = [c for c in cells if c.robustness]
    if robust:
        _write_csv(out_dir / "robustness.csv", *robustness_rows(robust))
    if plots:
        for section in all_sections:
            curves = robustness_curves([c for c in section.cells if c.robustness], section)
            if curves:
                plot_robustness(out_dir / f"robustness_{safe_name(section.name)}.png", section.name, curves)
        (out_dir / "confusion").mkdir(exist_ok=True)
        for cell in cells:
            plot_confusion(out_dir / "confusion" / f"{cell.cell_id}.png", cell.confusion().tolist(), cell.classes)
        for section in all_sections:
            labels = [cell_label(cell, section) for cell in section.cells]
            plot_bars(
                out_dir / f"bars_{safe_name(section.name)}.png",
                section.name,
                labels,
                [cell.summary() for cell in section.cells],
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
                "cell": cell.cell_id,
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
                    "cell": cell.cell_id,
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
    """Short label for plots: the cell's values of the section's varying columns."""
    parts = [_value(cell, c) if c == "fusion" else f"{c.split('.')[-1]}={_value(cell, c)}" for c in section.columns]
    text = " ".join(parts)
    return text if len(text) <= 60 else text[:57] + "..."


def layer_weight_runs(cell: Cell) -> dict[str, list[list[float]]]:
    """Modality -> the learned layer weights of every run that learned them."""
    out: dict[str, list[list[float]]] = {}
    for run in cell.runs:
        for modality, weights in (run.get("layer_weights") or {}).items():
            if weights and all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights):
                out.setdefault(modality, []).append([float(w) for w in weights])
    return out
