"""Issue-7 protocol hygiene in ``ser fit``: augmented copies reach training only as copies of the
fold's own training rows; caches adapted with a fold's test data are refused for that fold (and
``{fold}`` stores make per-fold adaptation one fit); corrupted copies are tested once each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ser.cache.adaptation import PROVENANCE_NAME
from ser.errors import UserError
from ser.fusion.config import FitConfig, TrainConfig
from ser.fusion.data import load_fusion_data, parse_view
from ser.fusion.run import run_fit
from ser.manifests.labels import load_label_set
from ser.manifests.protocols import ValidationRule, make_folds
from ser.manifests.schema import read_manifest
from tests.fakes.caches import LABELS, adaptation_record, four_speaker_corpus, make_corpus, write_pooled_store
from tests.fusion.row_spy import spy_rows

RNG = np.random.default_rng(0)


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, object]:
    """4 speakers x 12 rows; an audio store with one augmented copy of every row; a text store without."""
    from ser.manifests.schema import Utterance

    manifest, rows = four_speaker_corpus(tmp_path)

    def vector(row: Utterance, shift: float = 0.0) -> np.ndarray:
        v = RNG.normal(size=8).astype(np.float32) + shift
        v[LABELS.index(row.label)] += 3.0
        return v

    audio = write_pooled_store(
        tmp_path / "audio.h5",
        [(r.id, r.fingerprint(), vector(r)) for r in rows]
        + [(f"{r.id}@aug0", r.fingerprint(), vector(r, 0.5)) for r in rows],
        attrs={"augmentation": {"copies": 1, "seed": 0}},  # as `ser extract --augment`
        links={f"{r.id}@aug0": r.id for r in rows},
    )
    text = write_pooled_store(tmp_path / "text.h5", [(r.id, r.fingerprint(), RNG.normal(size=4)) for r in rows])
    return {"manifest": manifest, "audio": audio, "text": text, "rows": rows, "root": tmp_path}


def folds_of(manifest: Path):
    return make_folds(
        read_manifest(manifest),
        "speaker-loso",
        label_set=load_label_set("ravdess8"),
        rule=ValidationRule(by="utterance", fraction=0.25),
    )


def test_copies_join_only_their_own_folds_training_rows(corpus: dict) -> None:
    fold_set = folds_of(corpus["manifest"])
    data = load_fusion_data(
        list(fold_set.utterances.values()),
        load_label_set("ravdess8"),
        {"audio": parse_view(str(corpus["audio"])), "text": parse_view(str(corpus["text"]))},
    )
    assert len(data) == 96 and sum(data.is_copy(i) for i in range(len(data))) == 48
    copy = data.ids.index("s0_03@aug0")
    assert data.sources[copy] == "s0_03" and data.labels[copy] == data.labels[data.ids.index("s0_03")]
    assert data.keys["text"][copy] == "s0_03" and data.keys["audio"][copy] == "s0_03@aug0"
    for fold in fold_set.folds:
        rows = data.fold_indices(fold)
        for split in ("validation", "test"):
            assert not any(data.is_copy(int(r)) for r in rows[split])  # never augmented
            assert [data.ids[r] for r in rows[split]] == list(getattr(fold, split))
        copies = [int(r) for r in rows["train"] if data.is_copy(int(r))]
        assert {data.sources[r] for r in copies} == set(fold.train)  # every training row's copy, no other
    plain = load_fusion_data(
        list(fold_set.utterances.values()),
        load_label_set("ravdess8"),
        {"audio": parse_view(str(corpus["audio"]))},
        augmented=False,
    )
    assert len(plain) == 48 and not plain.sources


def test_the_trainer_sees_copies_in_training_and_never_in_evaluation(
    corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = spy_rows(monkeypatch)
    fold_set = folds_of(corpus["manifest"])
    fold = fold_set.fold("spk2")
    cfg = FitConfig(
        fusion="mlp",
        manifest=str(corpus["manifest"]),
        protocol="speaker-loso",
        audio=str(corpus["audio"]),
        val_by="utterance",
        val_fraction=0.25,
        folds=["spk2"],
        train=TrainConfig(epochs=3, patience=0, batch_size=16),
        out=str(tmp_path / "runs"),
    )
    run_dir = run_fit(cfg)
    calls = [(training, [data.ids[int(r)] for r in rows]) for training, data, rows in read]
    training = {uid for shuffle, ids in calls if shuffle for uid in ids}
    evaluated = {uid for shuffle, ids in calls if not shuffle for uid in ids}
    assert training == set(fold.train) | {f"{uid}@aug0" for uid in fold.train}
    assert evaluated == set(fold.validation) | set(fold.test)
    card = json.loads((run_dir / "metrics.json").read_text())["protocol_card"]
    assert card["augmented_training_copies"] == {"spk2": len(fold.train)}  # the fold's copies, not the store's 48


def _adapted_store(corpus: dict, fold_name: str, folder: Path) -> Path:
    """An audio store whose 'upstream' was adapted on ``fold_name``'s train + validation rows."""
    record = adaptation_record(folds_of(corpus["manifest"]).fold(fold_name), folder)
    rows = [(r.id, r.fingerprint(), RNG.normal(size=8)) for r in corpus["rows"]]
    return write_pooled_store(folder / fold_name / "features.h5", rows, {"upstream": {"adaptation": record}})


def fit(corpus: dict, tmp_path: Path, audio: str, **changes) -> Path:
    base = dict(
        fusion="mlp",
        manifest=str(corpus["manifest"]),
        protocol="speaker-loso",
        audio=audio,
        val_by="utterance",
        val_fraction=0.25,
        train=TrainConfig(epochs=2, patience=0, batch_size=16),
        out=str(tmp_path / "runs"),
    )
    base.update(changes)
    return run_fit(FitConfig(**base))


def test_a_cache_adapted_on_a_fold_is_refused_for_every_other_fold(corpus: dict, tmp_path: Path) -> None:
    store = _adapted_store(corpus, "spk0", tmp_path / "ft")
    fit(corpus, tmp_path, str(store), folds=["spk0"])  # its own fold: fine
    with pytest.raises(UserError, match=r"fold spk1: .*-adapted for fold spk0 .* test speakers spk1 .* would leak"):
        fit(corpus, tmp_path, str(store), folds=["spk1"])
    assert not list((tmp_path / "runs").glob("*spk1*"))


def test_one_store_per_fold_runs_the_whole_protocol(corpus: dict, tmp_path: Path) -> None:
    for name in ("spk0", "spk1", "spk2", "spk3"):
        _adapted_store(corpus, name, tmp_path / "ft")
    run_dir = fit(corpus, tmp_path, str(tmp_path / "ft" / "{fold}" / "features.h5"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["fold"] for r in metrics["runs"]] == ["spk0", "spk1", "spk2", "spk3"]
    import yaml

    inputs = yaml.safe_load((run_dir / "config.yaml").read_text())["inputs_per_fold"]
    assert inputs["spk2"]["audio"]["store"].endswith("ft/spk2/features.h5")


def test_unverifiable_adaptations_are_refused(corpus: dict, tmp_path: Path) -> None:
    store = _adapted_store(corpus, "spk0", tmp_path / "ft")
    provenance_file = tmp_path / "ft" / "spk0" / "checkpoint" / PROVENANCE_NAME
    record = json.loads(provenance_file.read_text())
    record["trained_on"]["train_ids"] = record["trained_on"]["train_ids"][:-1]  # edited after extraction
    provenance_file.write_text(json.dumps(record))
    with pytest.raises(UserError, match="hash mismatch"):
        fit(corpus, tmp_path, str(store), folds=["spk0"])
    provenance_file.unlink()
    with pytest.raises(UserError, match="keep the `ser finetune` checkpoint folder"):
        fit(corpus, tmp_path, str(store), folds=["spk0"])


def test_corrupted_copies_are_tested_once_each(corpus: dict, tmp_path: Path) -> None:
    rows = corpus["rows"]
    noisy = {}
    for snr, scale in ((20, 0.5), (0, 6.0)):
        values = [
            (r.id, r.fingerprint(), RNG.normal(size=8, scale=scale) + 3.0 * np.eye(8)[LABELS.index(r.label)])
            for r in rows
        ]
        noisy[snr] = write_pooled_store(
            tmp_path / f"white{snr}.h5", values, {"corruption": {"type": "white", "snr_db": float(snr)}}
        )
    run_dir = fit(
        corpus,
        tmp_path,
        str(corpus["audio"]),
        robustness=[str(noisy[20]), str(noisy[0])],
        folds=["spk0", "spk1"],
        train=TrainConfig(epochs=30, patience=0, batch_size=16),
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    robustness = {entry["key"]: entry for entry in metrics["robustness"]}
    assert set(robustness) == {"white20.h5", "white0.h5"}
    assert robustness["white0.h5"]["corruption"] == {"type": "white", "snr_db": 0.0}
    for entry in robustness.values():
        assert [r["fold"] for r in entry["runs"]] == ["spk0", "spk1"]
        assert all(r["test"]["n"] == 12 for r in entry["runs"])
    assert robustness["white0.h5"]["test"]["ua"]["mean"] < robustness["white20.h5"]["test"]["ua"]["mean"]
    from ser.ablate.report import write_report

    report = (write_report(tmp_path / "runs", plots=False) / "report.md").read_text()
    assert "| cell | clean | white 20 dB | white 0 dB |" in report


def test_trainer_specaugment_masks_sequences_in_training_only() -> None:
    import torch

    from ser.fusion.augment import SpecAugment
    from ser.fusion.train import FusionModel

    class Echo(torch.nn.Module):
        def forward(self, inputs):
            return inputs["audio"]

    model = FusionModel(
        Echo(), {"audio": 1}, SpecAugment(time_width=(2, 2), freq_width=(1, 1), p_time=1.0, p_freq=1.0, fill="mean")
    )
    frames = torch.randn(3, 6, 4)
    lengths = torch.tensor([6, 4, 2])
    torch.manual_seed(0)
    model.train()
    masked = model({"audio": frames, "audio_lengths": lengths})
    assert not torch.equal(masked, frames)
    for i, n in enumerate(lengths.tolist()):
        assert torch.equal(masked[i, n:], frames[i, n:])  # padding untouched
    model.eval()
    assert torch.equal(model({"audio": frames, "audio_lengths": lengths}), frames)


def test_trainer_specaugment_in_a_fit_and_not_twice(tmp_path: Path) -> None:
    from tests.fakes.caches import make_corpus

    manifest, audio, _ = make_corpus(tmp_path, n_speakers=4, per_speaker=8, seq=True)
    base = dict(
        fusion="audio_transformer",
        manifest=str(manifest),
        protocol="speaker-loso",
        label_set="ravdess8",
        audio=f"{audio}:seq=layer_01",
        val_by="utterance",
        val_fraction=0.25,
        folds=["spk0"],
        out=str(tmp_path / "runs"),
    )
    with pytest.raises(UserError, match="applies its own SpecAugment"):
        run_fit(FitConfig(**base, train=TrainConfig(epochs=1, specaugment=True)))
    with pytest.raises(UserError, match="specaugment_options"):
        run_fit(
            FitConfig(
                **base,
                head={"specaugment": False},
                train=TrainConfig(epochs=1, specaugment=True, specaugment_options={"width": 3}),
            )
        )
    run_dir = run_fit(
        FitConfig(
            **base,
            head={"specaugment": False},
            train=TrainConfig(
                epochs=2, specaugment=True, specaugment_options={"time_width": [1, 2], "freq_width": [1, 2]}
            ),
        )
    )
    assert json.loads((run_dir / "metrics.json").read_text())["runs"][0]["fold"] == "spk0"


def test_ids_ending_in_aug_in_a_store_without_augmentation_are_ordinary_rows(tmp_path: Path) -> None:
    """Only the links a store records make copies: an unlinked `x@aug0` is never joined to `x`'s training rows."""
    manifest, _, _ = make_corpus(tmp_path, n_speakers=2, per_speaker=4)
    rows = read_manifest(manifest, strict=False).utterances
    plain = write_pooled_store(
        tmp_path / "plain.h5",
        [(r.id, r.fingerprint(), RNG.normal(size=4)) for r in rows]
        + [(f"{rows[0].id}@aug0", rows[0].fingerprint(), RNG.normal(size=4))],
    )
    data = load_fusion_data(rows, load_label_set("ravdess8"), {"audio": parse_view(str(plain))})
    assert not data.sources and f"{rows[0].id}@aug0" not in data.ids
