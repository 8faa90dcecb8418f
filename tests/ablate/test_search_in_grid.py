"""A validation search inside a grid cell: ``search`` is a fit-config key like any other."""

from __future__ import annotations

import json
from pathlib import Path

from ser.ablate.grid import expand, load_grid
from ser.ablate.job import run_job
from tests.fakes.caches import write_grid


def test_a_grid_cell_runs_its_search_and_records_the_choice_per_fold(corpus: dict[str, Path]) -> None:
    grid = write_grid(corpus, base={"search": {"train.lr": [0.001, 0.01]}}, axes={"fusion": ["mlp", "logreg"]})
    jobs = expand(load_grid(grid))
    assert len(jobs) == 2
    for job in jobs:
        assert job.record["search"] == {"train.lr": [0.001, 0.01]}
        assert run_job(job.record) == "ran"
        metrics = json.loads((job.run_dir / "metrics.json").read_text())
        assert set(metrics["search"]["folds"]) == {"spk0", "spk1"}
        assert metrics["search"]["candidates"] == [{"train.lr": 0.001}, {"train.lr": 0.01}]
        assert len(metrics["runs"]) == 2  # one tested member per fold (one seed)
