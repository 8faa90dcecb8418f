"""Trainer features on small synthetic caches: schedules, optimisers, class weights, a feature loss,
refit, multi-seed aggregation, layer averaging, and the determinism settings."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import ser.fusion.run as run_module
import ser.fusion.train as train_module
import ser.seeding as seeding
from ser.cache.format import StoreLayout
from ser.cache.writer import CacheWriter
from ser.fusion.config import TrainConfig
from ser.fusion.data import load_fusion_data, parse_view
from ser.fusion.run import FitConfig, run_fit
from ser.manifests.labels import load_label_set
from ser.manifests.schema import read_manifest
from tests.fakes.caches import LABELS, make_corpus


def fit(tmp_path: Path, store: Path, manifest: Path, name: str = "runs", **changes: object) -> dict:
    """One mlp fit on audio layer 1 (fold spk0, seed 0) changed by ``changes``; its metrics.json."""
    base: dict[str, object] = dict(
        fusion="mlp",
        manifest=str(manifest),
        protocol="speaker-loso",
        audio=f"{store}:layer=1",
        label_set="ravdess8",
        folds=["spk0"],
        seeds=[0],
        train=TrainConfig(epochs=6, patience=0, batch_size=16),
        out=str(tmp_path / name),
    )
    base.update(changes)
    run_dir = run_fit(FitConfig(**base))  # type: ignore[arg-type]
    return json.loads((run_dir / "metrics.json").read_text())


def lrs(metrics: dict) -> list[float]:
    (run,) = metrics["runs"]
    return [h["lr"] for h in run["history"]]


# ------------------------------------------------------------------------------------------- schedules


def test_step_schedule_multiplies_the_lr_by_gamma_every_step_size_epochs(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    train = TrainConfig(epochs=7, patience=0, batch_size=16, lr=0.01, schedule="step", step_size=3, gamma=0.5)
    assert lrs(fit(tmp_path, audio, manifest, train=train)) == pytest.approx(
        [0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.0025]
    )


def test_cosine_schedule_anneals_to_zero_over_the_epochs(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    train = TrainConfig(epochs=5, patience=0, batch_size=16, lr=0.01, schedule="cosine")
    expected = [0.01 * (1 + math.cos(math.pi * k / 5)) / 2 for k in range(5)]
    assert lrs(fit(tmp_path, audio, manifest, train=train)) == pytest.approx(expected)


def test_plateau_schedule_cuts_the_lr_when_validation_loss_stops_improving(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    train = TrainConfig(
        epochs=12, patience=0, batch_size=16, lr=0.05, schedule="plateau", gamma=0.5, plateau_patience=0
    )
    metrics = fit(tmp_path, audio, manifest, train=train)
    history = metrics["runs"][0]["history"]
    # ReduceLROnPlateau(mode=min, threshold 1e-4 relative, patience 0) replayed on the logged val losses
    expected, lr, best = [], 0.05, math.inf
    for epoch in history:
        expected.append(lr)
        if epoch["val_loss"] < best * (1 - 1e-4):
            best = epoch["val_loss"]
        else:
            lr *= 0.5
    assert [h["lr"] for h in history] == pytest.approx(expected)
    assert min(expected) < 0.05  # the validation loss did stall at least once: the cut is exercised


# ----------------------------------------------------------------------------------------- optimisers


@pytest.mark.parametrize(
    ("name", "cls"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_optimizer_choice_and_its_settings(name: str, cls: type) -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = train_module._optimizer(params, TrainConfig(optimizer=name, lr=0.2, weight_decay=0.01, momentum=0.7))
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.2 and group["weight_decay"] == 0.01
    if name == "sgd":
        assert group["momentum"] == 0.7


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_sgd_and_adam_fits_learn_the_signal(tmp_path: Path, name: str) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    lr = {"sgd": 0.05, "adam": 3e-3}[name]
    metrics = fit(
        tmp_path,
        audio,
        manifest,
        head={"dropout": 0.1},
        train=TrainConfig(epochs=10, patience=0, batch_size=16, optimizer=name, lr=lr),
    )
    history = metrics["runs"][0]["history"]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert metrics["test"]["ua"]["mean"] > 0.9


# --------------------------------------------------------------------------------------- class weights


def test_class_weights_are_inverse_frequency_with_mean_one_over_present_classes() -> None:
    weights = train_module.class_weights(np.array([0, 0, 0, 1, 1, 3]), 4)
    # counts 3, 2, 0, 1 over 6 rows and 3 present classes: 6 / count / 3
    assert weights.tolist() == pytest.approx([2 / 3, 1.0, 0.0, 2.0])


def test_class_weighted_loss_uses_training_rows_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    seen: list[np.ndarray] = []
    given: list[torch.Tensor | None] = []
    original_weights, original_loss = train_module.class_weights, train_module.build_loss

    def spy_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
        seen.append(labels.copy())
        return original_weights(labels, n_classes)

    def spy_loss(name: str, n_classes: int, feat_dim: int, weights: torch.Tensor | None, **options: object):
        given.append(weights)
        return original_loss(name, n_classes, feat_dim, weights, **options)

    monkeypatch.setattr(train_module, "class_weights", spy_weights)
    monkeypatch.setattr(train_module, "build_loss", spy_loss)
    captured: dict[str, np.ndarray] = {}
    original_select = run_module.select_members

    def spy_select(specs):
        (spec,) = specs
        captured.update(spec.rows)
        captured["labels"] = spec.data.labels
        return original_select(specs)

    monkeypatch.setattr(run_module, "select_members", spy_select)
    fit(tmp_path, audio, manifest, train=TrainConfig(epochs=2, patience=0, batch_size=16, class_weighted=True))
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], captured["labels"][captured["train"]])
    assert len(seen[0]) == len(captured["train"]) < len(captured["labels"]) - len(captured["test"])
    (weights,) = given
    assert weights is not None
    torch.testing.assert_close(weights.cpu(), original_weights(captured["labels"][captured["train"]], 8))
    absent = sorted(set(range(8)) - set(captured["labels"].tolist()))
    assert len(absent) == 4 and weights[absent].eq(0).all()  # ravdess8 classes the corpus lacks weigh nothing


# ------------------------------------------------------------------------------ feature loss (mser4)


def add_text_tokens(tmp_path: Path, manifest: Path) -> Path:
    """A text store with (5..8, 8) token sequences of noise (the signal is in the audio frames)."""
    rows = read_manifest(manifest).utterances
    rng = np.random.default_rng(1)
    path = tmp_path / "tokens.h5"
    with CacheWriter.open(
        path,
        layout=StoreLayout(pooled={"mean": (1, 8)}, seq={"tokens": 8}),
        attrs={"extractor": {"name": "fake-text", "config_hash": "tok"}},
    ) as writer:
        for row in rows:
            tokens = rng.normal(size=(int(rng.integers(5, 9)), 8)).astype(np.float32)
            writer.add(row.id, row.fingerprint(), {"mean": tokens.mean(axis=0, keepdims=True)}, {"tokens": tokens})
        writer.finalize()
    return path


def test_feature_loss_trains_its_centers_with_the_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, audio, _ = make_corpus(tmp_path, seq=True)
    text = add_text_tokens(tmp_path, manifest)
    built: list[torch.nn.Module] = []
    initial: dict[str, torch.Tensor] = {}
    original_loss = train_module.build_loss

    def spy_loss(*args, **kwargs):
        built.append(original_loss(*args, **kwargs))
        initial.update({n: p.detach().clone() for n, p in built[-1].named_parameters()})
        return built[-1]

    monkeypatch.setattr(train_module, "build_loss", spy_loss)
    metrics = fit(
        tmp_path,
        audio,
        manifest,
        fusion="mser4",
        audio=f"{audio}:seq=layer_01",
        text=f"{text}:seq",
        head={"heads": 2, "dropout": 0.1},
        train=TrainConfig(
            epochs=12, patience=0, batch_size=16, lr=3e-3, loss="ce+center", loss_options={"lambda_c": "1e-2"}
        ),
    )
    (loss,) = built
    centers = dict(loss.named_parameters())
    (name,) = [n for n in centers if "center" in n]
    assert centers[name].shape == (8, 8)  # ravdess8 classes x mser4 feature_dim (audio width)
    # the checkpointed centers of the classes present moved away from their initial values
    label_set = load_label_set("ravdess8")
    present = sorted({label_set.index_of(u) for u in read_manifest(manifest).utterances})
    assert len(present) == len(LABELS)
    moved = (centers[name].detach().cpu() - initial[name].cpu()).abs().sum(dim=1)
    assert (moved[present] > 1e-3).all()
    assert metrics["test"]["ua"]["mean"] > 0.6
    (config,) = (tmp_path / "runs").glob("*/config.yaml")
    assert yaml.safe_load(config.read_text())["config"]["train"]["loss_options"] == {"lambda_c": 0.01}  # coerced


# --------------------------------------------------------------------------------------------- refit


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
@pytest.mark.parametrize("engine", ["sequential", "stacked"])
def test_refit_replays_the_selection_runs_learning_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule: str, engine: str
) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    calls: list[tuple[int, float]] = []
    original = train_module._train_epoch

    def spy(setup, data, rows, cfg, device, generator):
        calls.append((len(rows), setup.optimizer.param_groups[0]["lr"]))
        return original(setup, data, rows, cfg, device, generator)

    monkeypatch.setattr(train_module, "_train_epoch", spy)
    train = TrainConfig(
        epochs=8,
        patience=0,
        batch_size=16,
        lr=0.05,
        schedule=schedule,
        gamma=0.5,
        plateau_patience=0,
        refit=True,
        engine=engine,
    )
    metrics = fit(tmp_path, audio, manifest, train=train)
    (run,) = metrics["runs"]
    # the sequential loop trains the selection run with the same epoch function; the stacked engine
    # has its own step, and the refit (one member) is always the sequential loop
    selection, refit = (calls[:8], calls[8:]) if engine == "sequential" else ([], calls)
    if engine == "stacked":
        assert len(run["history"]) == 8
    else:
        assert [lr for _, lr in selection] == pytest.approx([h["lr"] for h in run["history"]])
    assert len(refit) == run["best_epoch"]
    assert [lr for _, lr in refit] == pytest.approx([h["lr"] for h in run["history"][: run["best_epoch"]]])
    n_val = run["validation"]["n"]
    n_train = 6 * 24 - run["test"]["n"] - n_val  # make_corpus: 6 speakers x 24 rows
    assert all(n == n_train + n_val for n, _ in refit)  # train + validation rows
    if schedule == "cosine":
        assert len({h["lr"] for h in run["history"]}) == 8


# ------------------------------------------------------------------------------- seeds and layers


def test_metrics_aggregate_over_folds_and_seeds(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    metrics = fit(
        tmp_path,
        audio,
        manifest,
        folds=["spk0", "spk1"],
        seeds=[0, 1],
        train=TrainConfig(epochs=3, patience=0, batch_size=16, lr=3e-3),
    )
    assert [(r["seed"], r["fold"]) for r in metrics["runs"]] == [(0, "spk0"), (0, "spk1"), (1, "spk0"), (1, "spk1")]
    values = [r["test"]["wa"] for r in metrics["runs"]]
    assert metrics["test"]["wa"]["values"] == values
    assert metrics["test"]["wa"]["mean"] == pytest.approx(np.mean(values))
    assert metrics["test"]["wa"]["std"] == pytest.approx(np.std(values, ddof=1))
    assert metrics["runs"][0]["history"] != metrics["runs"][2]["history"]  # the seeds differ
    assert len(metrics["validation"]["ua"]["values"]) == 4


def test_layer_avg_feeds_the_mean_over_cached_layers(tmp_path: Path) -> None:
    manifest, audio, _ = make_corpus(tmp_path)
    utterances = read_manifest(manifest).utterances
    label_set = load_label_set("ravdess8")
    averaged = load_fusion_data(utterances, label_set, {"audio": parse_view(f"{audio}:layer=avg")})
    layers = [load_fusion_data(utterances, label_set, {"audio": parse_view(f"{audio}:layer={k}")}) for k in range(3)]
    expected = np.mean([d.modalities["audio"].pooled for d in layers], axis=0)
    np.testing.assert_allclose(averaged.modalities["audio"].pooled, expected, rtol=1e-6)
    assert averaged.modalities["audio"].n_layers == 1
    train = TrainConfig(epochs=10, patience=0, batch_size=16, lr=3e-3)
    folds = ["spk0", "spk1", "spk2"]
    metrics = fit(tmp_path, audio, manifest, audio=f"{audio}:layer=avg", folds=folds, train=train)
    noise = fit(tmp_path, audio, manifest, name="noise", audio=f"{audio}:layer=0", folds=folds, train=train)
    # layer 1's +3 class offset survives averaging as +1 (4 classes, chance UA 0.25); layer 0 is noise
    assert metrics["test"]["ua"]["mean"] > 0.5 > 0.35 > noise["test"]["ua"]["mean"]


# --------------------------------------------------------------------------------------- determinism


def test_deterministic_setup_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    seeding.deterministic_cuda_setup(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own choice is kept
    seeding.deterministic_cuda_setup(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


# --- host copies and reads of the training loop ---------------------------------------------------


def test_an_epoch_reads_its_loss_back_once_and_equals_the_per_step_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """The running loss stays on the device: one ``.item()`` per epoch (not one per step), and the mean is the
    float64 sum of each batch's loss x its rows, as the per-step reads added up."""
    from ser.fusion.data import iterate_batches
    from tests.fusion.engine_fixtures import head_data

    data = head_data("mlp", rows=70)
    rows = np.arange(70)
    cfg = TrainConfig(epochs=1, batch_size=16, device="cpu", lr=0.0, weight_decay=0.0)  # lr 0: the weights stay
    device = torch.device("cpu")
    member = train_module.setup(data, rows, "mlp", {"dropout": 0.0}, cfg, device)
    reads = []
    item = torch.Tensor.item

    def counted(self: torch.Tensor) -> object:
        reads.append(self.shape)
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", counted)
    mean = train_module._train_epoch(member, data, rows, cfg, device, torch.Generator().manual_seed(3))
    monkeypatch.undo()
    assert len(reads) == 1  # 5 batches, one read
    member.model.train()
    expected = 0.0
    for _, inputs, labels in iterate_batches(
        data, rows, 16, shuffle=True, generator=torch.Generator().manual_seed(3), standardizer=member.standardizer
    ):
        with torch.no_grad():
            expected += member.loss_fn(member.model(inputs), None, labels).item() * len(labels)
    assert mean == expected / 70  # bit for bit


def test_every_tensor_sent_to_the_training_device_is_float32_and_cuda_copies_do_not_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MPS has no float64: a float64 (or float16) store's rows reach the device as float32; on CUDA the copy comes
    from pinned memory with ``non_blocking`` (mocked: no GPU here); loss sums are float32 on MPS only."""
    from ser.fusion.data import batch_to_device, make_batch, to_device
    from tests.fusion.engine_fixtures import head_data

    data = head_data("memocmt", rows=12)
    for modality in data.modalities.values():
        if modality.sequences is not None:
            modality.sequences = [s.astype(np.float64) for s in modality.sequences]
    batch = batch_to_device(
        {**make_batch(data, np.arange(4), None), "x": torch.zeros(2, dtype=torch.float64)}, torch.device("cpu")
    )
    assert {k: v.dtype for k, v in batch.items() if v.is_floating_point()} == dict.fromkeys(
        [k for k in batch if not k.endswith("_lengths")], torch.float32
    )
    assert batch["x"].dtype == torch.float32
    assert to_device(torch.arange(3), torch.device("cpu")).dtype == torch.int64
    copies = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: copies.append("pinned") or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *args, **kwargs: copies.append((args, kwargs)) or self)
    to_device(torch.zeros(3, dtype=torch.float64), torch.device("cuda"))
    assert copies == ["pinned", ((torch.device("cuda"),), {"non_blocking": True})]
    monkeypatch.undo()
    assert train_module.accumulator_dtype(torch.device("mps")) == torch.float32
    assert train_module.accumulator_dtype(torch.device("cuda")) == torch.float64
