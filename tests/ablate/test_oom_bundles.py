"""Out of GPU memory in a stacked ``ser ablate`` bundle: the stack is split (halves, then single runs) and
the cells still finish; a run that does not fit alone has its batch halved (down to 1) in its grid cell's run
directory, with the change recorded as a departure; one that does not fit even then fails with one line."""

from __future__ import annotations

import json
import logging
import weakref
from pathlib import Path

import pytest
import torch
import yaml

import ser.fusion.run
from ser.ablate.grid import expand, load_grid
from ser.ablate.job import run_bundle
from ser.ablate.state import is_done
from ser.fusion.config import FitConfig, config_from_dict
from ser.fusion.departures import config_departures
from ser.fusion.run import run_directory
from tests.fakes.caches import write_grid

REAL_RUN_FITS = ser.fusion.run.run_fits


class _FitsUpTo:
    """A fake ``run_fits`` that runs out of GPU memory when more than ``most`` runs are stacked or a run's
    ``train.batch_size`` exceeds ``batch`` (the runs with ``train.lr`` in ``big``; all when ``big`` is None),
    and writes each run's metrics.json (with its departures) in its run directory otherwise."""

    def __init__(self, most: int, batch: int | None = None, big: set[float] | None = None) -> None:
        self.most = most
        self.batch = batch
        self.big = big
        self.stacks: list[int] = []
        self.batches: list[list[int]] = []
        self.failed: list[weakref.ref[torch.Tensor]] = []
        self.alive_at_retry: list[bool] = []

    def __call__(self, configs: list[FitConfig]) -> list[Path]:
        self.stacks.append(len(configs))
        self.batches.append([cfg.train.batch_size for cfg in configs])
        self.alive_at_retry += [ref() is not None for ref in self.failed]
        too_big = self.batch is not None and any(
            cfg.train.batch_size > self.batch and (self.big is None or cfg.train.lr in self.big) for cfg in configs
        )
        if len(configs) > self.most or too_big:
            activations = torch.ones(len(configs), 1000)  # the failed stack's tensor: only this frame holds it
            self.failed.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        dirs = [run_directory(cfg) for cfg in configs]
        for cfg, run_dir in zip(configs, dirs, strict=True):
            record = {"lr": 0, "departures": config_departures(cfg)}
            (run_dir / "metrics.json").write_text(json.dumps(record), encoding="utf-8")
        return dirs


def _records(corpus: dict[str, Path], n: int) -> list[dict]:
    lrs = [0.01, 0.003, 0.001, 0.0003, 0.0001][:n]
    return [job.record for job in expand(load_grid(write_grid(corpus, axes={"train.lr": lrs})))]


def test_a_bundle_out_of_memory_is_split_until_its_stacks_fit(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fits = _FitsUpTo(most=2)
    monkeypatch.setattr(ser.fusion.run, "run_fits", fits)
    records = _records(corpus, 5)
    with caplog.at_level(logging.WARNING, logger="ser.ablate.job"):
        results = run_bundle(records)
    assert results == [("ran", "")] * 5
    assert fits.stacks == [5, 3, 2, 1, 2]  # 5 -> 3 + 2; 3 -> 2 + 1
    assert len(fits.failed) == 2 and not any(fits.alive_at_retry)  # each failed stack freed before the retries
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "out of GPU memory stacking 5 runs (OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB); "
        "splitting them into stacks of 3 and 2",
        "out of GPU memory stacking 3 runs (OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB); "
        "splitting them into stacks of 2 and 1",
    ]


def test_a_run_that_does_not_fit_alone_fails_with_one_line_and_the_others_finish(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    records = _records(corpus, 3)
    fits = _FitsUpTo(most=1)

    def run_fits(configs: list[FitConfig]) -> list[Path]:
        if any(cfg.train.lr == 0.001 for cfg in configs):  # the third run is too big even alone
            fits.stacks.append(len(configs))
            raise torch.OutOfMemoryError("CUDA out of memory")
        return fits(configs)

    monkeypatch.setattr(ser.fusion.run, "run_fits", run_fits)
    with caplog.at_level(logging.WARNING, logger="ser.ablate.job"):
        results = run_bundle(records)
    assert [status for status, _ in results] == ["ran", "ran", "error"]
    assert fits.stacks == [3, 2, 1, 1] + [1] * 5  # the third alone at batch 16, 8, 4, 2 and 1
    error = results[2][1]
    big = config_from_dict(records[2])
    assert big.train.batch_size == 16  # the mlp head's preset
    assert error == (
        f"{big.slug()}: out of GPU memory even alone at train.batch_size=1 (halved from the cell's 16) "
        "(OutOfMemoryError: CUDA out of memory); run fewer jobs per GPU (--jobs-per-gpu) or free the GPU"
    )
    assert any(r.levelno == logging.ERROR and r.getMessage() == error for r in caplog.records)
    halvings = [r.getMessage() for r in caplog.records if "retrying it with" in r.getMessage()]
    assert [m.split("retrying it with ")[1] for m in halvings] == [
        f"train.batch_size={b} (recorded as a departure in its run)" for b in (8, 4, 2, 1)
    ]
    assert not is_done(Path(big.out) / big.slug())


def test_a_run_that_does_not_fit_alone_is_retried_with_half_its_batch_in_its_cells_directory(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = expand(load_grid(write_grid(corpus, axes={"train.lr": [0.01, 0.001]})))
    fits = _FitsUpTo(most=1, batch=4, big={0.001})  # the second cell fits alone at batch 4, not above
    monkeypatch.setattr(ser.fusion.run, "run_fits", fits)
    with caplog.at_level(logging.WARNING, logger="ser.ablate.job"):
        results = run_bundle([job.record for job in jobs])
    assert results == [("ran", "")] * 2
    assert fits.batches == [[16, 16], [16], [16], [8], [4]]
    assert not any(fits.alive_at_retry)  # each failed attempt freed before the next
    small, big = jobs
    assert [job.run_dir.name for job in jobs] == [job.config.slug() for job in jobs]
    assert sorted(p.name for p in Path(big.config.out).iterdir()) == sorted(job.run_dir.name for job in jobs)
    assert is_done(small.run_dir) and is_done(big.run_dir)  # the grid's own directories: the cells are done
    departures = [json.loads((job.run_dir / "metrics.json").read_text())["departures"] for job in jobs]
    assert departures == [[], ["train.batch_size 16 -> 4: out of GPU memory at 16, 8 (ser ablate halved it)"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    oom = "(OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB)"
    assert warnings[1:] == [
        f"{big.run_dir.name}: out of GPU memory alone at train.batch_size=16 {oom}; retrying it with "
        "train.batch_size=8 (recorded as a departure in its run)",
        f"{big.run_dir.name}: out of GPU memory alone at train.batch_size=8 {oom}; retrying it with "
        "train.batch_size=4 (recorded as a departure in its run)",
    ]

    again = run_bundle([job.record for job in jobs])  # a resubmitted grid runs nothing
    assert again == [("done", "")] * 2 and len(fits.stacks) == 5


def test_a_halved_batch_lands_in_the_real_runs_config_and_metrics(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    (job,) = expand(
        load_grid(
            write_grid(
                corpus, base={"seeds": [0], "folds": ["spk0"], "train": {"epochs": 1, "patience": 0, "batch_size": 16}}
            )
        )
    )
    tried: list[int] = []

    def run_fits(configs: list[FitConfig]) -> list[Path]:
        tried.extend(cfg.train.batch_size for cfg in configs)
        if any(cfg.train.batch_size > 8 for cfg in configs):
            raise torch.OutOfMemoryError("CUDA out of memory")
        return REAL_RUN_FITS(configs)

    monkeypatch.setattr(ser.fusion.run, "run_fits", run_fits)
    assert run_bundle([job.record]) == [("ran", "")]
    assert tried == [16, 8]
    assert is_done(job.run_dir) and [p.name for p in job.run_dir.parent.iterdir()] == [job.run_dir.name]
    departure = "train.batch_size 16 -> 8: out of GPU memory at 16 (ser ablate halved it)"
    saved = yaml.safe_load((job.run_dir / "config.yaml").read_text())
    assert saved["config"]["train"]["batch_size"] == 8
    assert saved["config"]["pinned"] == {"name": job.run_dir.name, "batch_size": 16}
    assert saved["recipe"]["departures"] == [departure]
    assert json.loads((job.run_dir / "metrics.json").read_text())["departures"] == [departure]
    assert run_bundle([job.record]) == [("done", "")] and tried == [16, 8]


def test_other_runtime_errors_are_not_taken_for_memory(
    corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(configs: list[FitConfig]) -> list[Path]:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(ser.fusion.run, "run_fits", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_bundle(_records(corpus, 2))
