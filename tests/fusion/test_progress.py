"""A fit reports its progress (units done against a total known up front, one line per member) and
classic heads fit each fold once for every seed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ser.fusion import classic, progress
from ser.fusion.config import TrainConfig
from ser.fusion.engine import MemberSpec, select_members
from ser.fusion.run import FitConfig, run_fit
from tests.fakes.caches import make_corpus
from tests.fusion.engine_fixtures import head_data, no_dropout, unequal_folds


class Recorder(progress.Progress):
    """Keeps every call (the tests read them back)."""

    def __init__(self) -> None:
        self.totals: list[tuple[int, str]] = []
        self.units = 0
        self.lines: list[str] = []
        self.closed = 0

    def start(self, total: int, what: str) -> None:
        self.totals.append((total, what))

    def advance(self, units: int = 1) -> None:
        self.units += units

    def member_done(self, line: str) -> None:
        self.lines.append(line)

    def close(self) -> None:
        self.closed += 1


def _mlp_specs(engine: str, epochs: tuple[int, ...], patience: int) -> list[MemberSpec]:
    data = head_data("mlp")
    return [
        MemberSpec(
            fold=f"fold{k}",
            seed=0,
            data=data,
            rows=unequal_folds(len(data))[k],
            fusion="mlp",
            head_options=no_dropout("mlp"),
            cfg=TrainConfig(epochs=n, batch_size=16, device="cpu", patience=patience, engine=engine, lr=0.5),
        )
        for k, n in enumerate(epochs)
    ]


@pytest.mark.parametrize("engine", ["sequential", "stacked"])
def test_neural_members_count_every_epoch_once_even_when_they_stop_early(engine: str) -> None:
    specs = _mlp_specs(engine, (2, 6, 9), patience=1)
    with progress.reporting(Recorder()) as recorder:
        selections = select_members(specs)
    assert recorder.totals == [(2 + 6 + 9, "training 3 members")]
    assert recorder.units == 17  # stopped members count their remaining epochs as done
    assert sum(s.epochs_run for s in selections) < 17  # patience 1 at lr 0.5 stopped someone early
    assert sorted(recorder.lines) == sorted(
        f"fold {s.fold} seed 0: validation UA {100 * s.score:.2f} (epoch {s.best_epoch}/{s.epochs_run})"
        for s in selections
    )
    assert recorder.closed >= 1


def test_without_a_reporter_nothing_is_reported_and_nothing_breaks() -> None:
    assert type(progress.current()) is progress.Progress
    select_members(_mlp_specs("sequential", (1,), patience=0))


def _logreg_fit(tmp_path: Path, seeds: list[int], out: str = "runs") -> Path:
    if not (tmp_path / "audio.h5").exists():
        make_corpus(tmp_path, per_speaker=16)
    manifest, audio = tmp_path / "m.jsonl", tmp_path / "audio.h5"
    return run_fit(
        FitConfig(
            fusion="logreg",
            manifest=str(manifest),
            protocol="speaker-loso",
            audio=f"{audio}:layer=1",
            label_set="ravdess8",
            val_by="utterance",
            seeds=seeds,
            train=TrainConfig.for_head("logreg"),
            out=str(tmp_path / out),
        )
    )


def test_classic_heads_fit_each_fold_once_and_record_it_for_every_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    refits: list[int] = []
    select, refit = classic.select_classic, classic.refit_classic

    def counting_select(*args, **kwargs):
        calls.append(kwargs["seed"])
        return select(*args, **kwargs)

    def counting_refit(*args, **kwargs):
        refits.append(kwargs["seed"])
        return refit(*args, **kwargs)

    monkeypatch.setattr("ser.fusion.classic_pool.pool_size", lambda n: 1)  # counted in this process
    monkeypatch.setattr("ser.fusion.train.select_classic", counting_select)
    monkeypatch.setattr("ser.fusion.train.refit_classic", counting_refit)
    with progress.reporting(Recorder()) as recorder:
        run_dir = _logreg_fit(tmp_path, seeds=[0, 1, 2])
    assert calls == [0] * 6 and refits == [0] * 6  # 6 folds, fitted (and refitted) once each
    grid_points = len(classic.grid(_logreg_config()))
    assert recorder.totals == [(6 * grid_points, "training 6 members (classic heads: one fit serves every seed)")]
    assert recorder.units == 6 * grid_points and len(recorder.lines) == 6
    metrics = json.loads((run_dir / "metrics.json").read_text())
    runs = metrics["runs"]
    assert [(r["seed"], r["fold"]) for r in runs] == [(s, f"spk{k}") for s in (0, 1, 2) for k in range(6)]
    for run in runs[6:]:
        twin = runs[runs.index(run) % 6]
        assert run["test"] == twin["test"] and run["history"] == twin["history"]
    assert metrics["test"]["ua"]["values"] == [r["test"]["ua"] for r in runs[:6]]  # spread over folds only
    assert metrics["aggregated_over"].startswith("folds (") and len(metrics["test_pooled"]["per_seed"]) == 1
    # the copies are the numbers one seed alone gives
    single = json.loads((_logreg_fit(tmp_path, seeds=[0], out="single") / "metrics.json").read_text())
    assert [r["test"] for r in single["runs"]] == [r["test"] for r in runs[:6]]
    index = json.loads((run_dir / "models" / "index.json").read_text())
    assert len(index["members"]) == 18  # every fold and seed still has its model file for `ser predict`


def _logreg_config():
    from ser.fusion.heads import head_module

    return head_module("logreg").build({"audio": 8}, 4)


def test_classic_numbers_do_not_depend_on_the_blas_thread_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = json.loads((_logreg_fit(tmp_path, [0], out="one") / "metrics.json").read_text())
    monkeypatch.setattr("ser.fusion.classic.blas_threads_for", lambda work: 2)
    two = json.loads((_logreg_fit(tmp_path, [0], out="two") / "metrics.json").read_text())
    assert [r["test"] for r in one["runs"]] == [r["test"] for r in two["runs"]]
    assert [r["history"] for r in one["runs"]] == [r["history"] for r in two["runs"]]


def test_the_seed_copies_share_one_refit(tmp_path: Path) -> None:
    data = head_data("mlp")
    rows = unequal_folds(len(data))[0]
    cfg = replace(TrainConfig.for_head("logreg"), refit=True)
    specs = [
        MemberSpec(fold="f", seed=seed, data=data, rows=rows, fusion="logreg", head_options={}, cfg=cfg)
        for seed in (3, 4)
    ]
    first, second = select_members(specs)
    assert (first.seed, second.seed) == (3, 4) and second.predictor is first.predictor
    assert first.refit is not None and first.refit() is second.refit()


@pytest.mark.parametrize("fusion", ["logreg", "svm"])
def test_classic_members_fitted_in_worker_processes_give_the_sequential_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fusion: str
) -> None:
    make_corpus(tmp_path, per_speaker=16)
    records = {}
    for workers in (1, 3):
        monkeypatch.setattr("ser.fusion.classic_pool.idle_cores", lambda count=workers: count)
        with progress.reporting(Recorder()) as recorder:
            run_dir = run_fit(
                FitConfig(
                    fusion=fusion,
                    manifest=str(tmp_path / "m.jsonl"),
                    protocol="speaker-loso",
                    audio=f"{tmp_path / 'audio.h5'}:layer=1",
                    label_set="ravdess8",
                    val_by="utterance",
                    train=TrainConfig.for_head(fusion),
                    out=str(tmp_path / f"runs{workers}"),
                )
            )
        records[workers] = (json.loads((run_dir / "metrics.json").read_text()), recorder, run_dir)
    (one, one_progress, one_dir), (three, three_progress, three_dir) = records[1], records[3]
    assert [r["test"] for r in three["runs"]] == [r["test"] for r in one["runs"]]
    assert [r["history"] for r in three["runs"]] == [r["history"] for r in one["runs"]]
    assert (three_dir / "predictions.csv").read_text() == (one_dir / "predictions.csv").read_text()
    assert three_progress.units == one_progress.units == three_progress.totals[0][0]  # every grid point counted
    assert sorted(three_progress.lines) == sorted(one_progress.lines) and len(one_progress.lines) == 6
    assert "classic members: 6 fitted in 3 worker processes" in (three_dir / "train.log").read_text()
    assert "worker processes" not in (one_dir / "train.log").read_text()
