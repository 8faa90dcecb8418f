"""Write a finished sweep's summary folder ``<out>/probe-.../``: ``probe.csv``, ``probe.md``, ``probe.png``
and ``layer_weights.png`` (the last only when the learned mix ran); the probes' run directories stay
where ``ser fit`` puts them, beside it under ``<out>``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ser.atomic_files import write_text
from ser.probe.figures import plot_layer_weights, plot_probe
from ser.probe.sweep import WEIGHTED, Sweep
from ser.probe.table import ProbeRow, csv_text, markdown_table, probe_rows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeSummary:
    """What [`write_summary`][ser.probe.summary.write_summary] wrote."""

    folder: Path
    """The summary folder."""
    rows: list[ProbeRow]
    """One per probe, in sweep order."""
    markdown: str
    """The table as written to ``probe.md``."""
    files: list[Path]
    """Every file written."""


def sweep_title(sweep: Sweep, run_dir: Path) -> str:
    """``mlp on meld (official, label set meld7): meld.minilm.h5, stat=mean, 7 layers``."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    card = metrics["protocol_card"]
    return (
        f"{metrics['fusion']} on {card['corpus']} ({card['protocol']}, label set {metrics['label_set']}): "
        f"{sweep.store.name}, stat={sweep.stat}, {sweep.n_layers} layers"
    )


def write_summary(sweep: Sweep, run_dirs: list[Path], out: Path) -> ProbeSummary:
    """The table and figures of ``sweep`` (whose probes wrote ``run_dirs``) in ``out / sweep.name``."""
    folder = out / sweep.name
    folder.mkdir(parents=True, exist_ok=True)
    rows = probe_rows([probe.layer for probe in sweep.probes], run_dirs, sweep.modality)
    title = sweep_title(sweep, run_dirs[0])
    classes = json.loads((run_dirs[0] / "metrics.json").read_text(encoding="utf-8"))["classes"]
    markdown = f"{title}\n\n{markdown_table(rows)}"
    files = [folder / "probe.csv", folder / "probe.md"]
    write_text(files[0], csv_text(rows))
    write_text(files[1], markdown)
    if plot_probe(folder / "probe.png", title, rows, chance=1 / len(classes)):
        files.append(folder / "probe.png")
    weights = [w for row in rows if row.layer == WEIGHTED for w in row.layer_weights]
    if plot_layer_weights(folder / "layer_weights.png", f"learned layer weights: {title}", weights):
        files.append(folder / "layer_weights.png")
    logger.info("probe summary written to %s", folder)
    return ProbeSummary(folder=folder, rows=rows, markdown=markdown, files=files)
