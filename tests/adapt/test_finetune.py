"""Adaptation on tiny random upstreams: exactly the unfrozen parameters change, provenance lists the
fold's training rows and excludes its test speakers, NT-Xent numerics, crops, resume, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ser.adapt.config import FinetuneConfig
from ser.adapt.data import Clip, CropDataset, fixed_length
from ser.adapt.model import nt_xent, unfreeze_top
from ser.adapt.train import adapt_fold, fold_set_of
from ser.errors import UserError
from tests.fakes.finetune import small_finetune_config

pytest.importorskip("transformers")


def config(manifest: Path, model: Path, **changes: Any) -> FinetuneConfig:
    return small_finetune_config(manifest, model, **{"epochs": 2, "lr": 1e-3, **changes})


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModel

    return {k: v.detach().clone() for k, v in AutoModel.from_pretrained(folder).state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_supervised_changes_exactly_the_top_layer(tone_corpus: Path, tiny_group_norm: Path, tmp_path: Path) -> None:
    result = adapt_fold(config(tone_corpus, tiny_group_norm, unfreeze=1), "spk0", tmp_path)
    after = weights(result.checkpoint)
    before = weights(tiny_group_norm)
    top = {k for k in before if k.startswith("encoder.layers.1.")}
    assert changed(before, after) == top
    assert sorted(result.trainable) == sorted(top)
    assert result.checkpoint == tmp_path / "spk0" / "checkpoint"
    assert (result.checkpoint / "preprocessor_config.json").exists() and (result.checkpoint / "head.pt").exists()


def test_pre_layer_norm_models_train_their_final_norm(
    tone_corpus: Path, tiny_stable_layer_norm: Path, tmp_path: Path
) -> None:
    cfg = config(tone_corpus, tiny_stable_layer_norm, family="wav2vec2", unfreeze=1, mode="contrastive")
    result = adapt_fold(cfg, "spk1", tmp_path)
    before, after = weights(tiny_stable_layer_norm), weights(result.checkpoint)
    expected = {k for k in before if k.startswith(("encoder.layers.1.", "encoder.layer_norm."))}
    assert changed(before, after) == expected


def test_contrastive_default_trains_every_transformer_layer_never_the_cnn(
    tone_corpus: Path, tiny_group_norm: Path, tmp_path: Path
) -> None:
    result = adapt_fold(config(tone_corpus, tiny_group_norm, mode="contrastive"), "spk2", tmp_path)
    before, after = weights(tiny_group_norm), weights(result.checkpoint)
    moved = changed(before, after)
    assert moved == {k for k in before if k.startswith("encoder.layers.")}
    assert not any(k.startswith(("feature_extractor.", "feature_projection.", "encoder.pos_conv")) for k in moved)
    assert all(math.isfinite(h["validation"]) for h in result.history)


def test_provenance_lists_the_training_rows_and_excludes_the_test_speaker(
    tone_corpus: Path, tiny_group_norm: Path, tmp_path: Path
) -> None:
    cfg = config(tone_corpus, tiny_group_norm, unfreeze=0)
    result = adapt_fold(cfg, "spk3", tmp_path)
    provenance = json.loads((result.checkpoint / "ser_finetune.json").read_text())
    _, _, folds = fold_set_of(cfg)
    fold = folds.fold("spk3")
    assert provenance["fold"] == "spk3" and provenance["mode"] == "supervised"
    assert provenance["trained_on"]["train_ids"] == list(fold.train)
    assert provenance["trained_on"]["validation_ids"] == list(fold.validation)
    assert provenance["trained_on"]["speakers"] == ["spk0", "spk1", "spk2"]
    assert provenance["excluded"]["test_speakers"] == ["spk3"]
    assert not set(fold.test) & set(provenance["trained_on"]["train_ids"] + provenance["trained_on"]["validation_ids"])
    assert provenance["config"] == cfg.to_dict() and provenance["trainable"] == []
    # unfreeze=0 trains the head only: the upstream is bit-identical
    assert not changed(weights(tiny_group_norm), weights(result.checkpoint))


def test_finished_folds_are_reused_and_other_settings_refused(
    tone_corpus: Path, tiny_group_norm: Path, tmp_path: Path
) -> None:
    cfg = config(tone_corpus, tiny_group_norm, unfreeze=1, epochs=1)
    first = adapt_fold(cfg, "spk0", tmp_path)
    again = adapt_fold(cfg, "spk0", tmp_path)
    assert again.skipped and again.best_epoch == first.best_epoch
    with pytest.raises(UserError, match="other settings"):
        adapt_fold(config(tone_corpus, tiny_group_norm, unfreeze=2, epochs=1), "spk0", tmp_path)


def test_same_seed_same_weights(tone_corpus: Path, tiny_group_norm: Path, tmp_path: Path) -> None:
    cfg = config(tone_corpus, tiny_group_norm, unfreeze=1, epochs=1)
    a = adapt_fold(cfg, "spk1", tmp_path / "a")
    b = adapt_fold(cfg, "spk1", tmp_path / "b")
    assert not changed(weights(a.checkpoint), weights(b.checkpoint))


def test_bad_settings_are_refused(tone_corpus: Path, tiny_group_norm: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="supports hubert"):
        config(tone_corpus, tiny_group_norm, family="bert")
    with pytest.raises(UserError, match="at least 2"):
        config(tone_corpus, tiny_group_norm, mode="contrastive", batch_size=1)
    with pytest.raises(UserError, match="has 2 transformer layers"):
        adapt_fold(config(tone_corpus, tiny_group_norm, unfreeze=3), "spk0", tmp_path)


def _reference_nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    z = torch.cat([a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)])
    n, total = a.shape[0], 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]
        denominator = sum(math.exp(float(z[i] @ z[j]) / tau) for j in others)
        total += -math.log(math.exp(float(z[i] @ z[partner]) / tau) / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_nt_xent_matches_the_formula(tau: float) -> None:
    torch.manual_seed(0)
    a, b = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    assert float(nt_xent(a, b, tau)) == pytest.approx(_reference_nt_xent(a, b, tau), rel=1e-9)


def test_nt_xent_is_low_for_matching_views_and_high_for_swapped_ones() -> None:
    views = torch.eye(4, dtype=torch.float64) * 3
    aligned = float(nt_xent(views, views, 0.1))
    shuffled = float(nt_xent(views, views[[1, 2, 3, 0]], 0.1))
    assert aligned < 1e-3 < 5 < shuffled
    # with identical embeddings for everything, each anchor picks its partner among 2N-1 equals
    same = torch.ones(3, 4)
    assert float(nt_xent(same, same, 0.5)) == pytest.approx(math.log(5), rel=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        nt_xent(torch.ones(1, 4), torch.ones(1, 4), 0.1)


def test_crops_tile_short_clips_and_are_seeded(tone_corpus: Path) -> None:
    short = np.arange(5, dtype=np.float32)
    assert fixed_length(short, 12, 0).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert fixed_length(np.arange(10.0), 4, 100).tolist() == [6, 7, 8, 9]
    clip = Clip(id="spk0_7", path=str(tone_corpus.parent / "spk0_7.wav"), start=None, end=None, label=3)
    data = CropDataset(
        [clip], sample_rate=16000, crop_seconds=0.25, views=2, seed=1, normalize=False, random_crops=True
    )
    first, label = data[0]
    assert first.shape == (2, 4000) and label == 3
    assert torch.equal(first, data[0][0])
    data.epoch = 1
    assert not torch.equal(first, data[0][0])
    missing = CropDataset(
        [Clip(id="x", path="/no/such.wav", start=None, end=None, label=0)],
        sample_rate=16000,
        crop_seconds=0.25,
        views=1,
        seed=0,
        normalize=False,
        random_crops=False,
    )
    assert missing[0] is None


def test_unfreeze_top_rejects_non_ssl_models() -> None:
    with pytest.raises(UserError, match=r"no encoder\.layers"):
        unfreeze_top(torch.nn.Linear(2, 2), 1)
