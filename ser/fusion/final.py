"""``ser fit --final``: one deployment model trained on every labelled row of the protocol.

The folds' members estimate how well a configuration generalises; the model to deploy should see
all the labelled data. It is trained like ``train.refit`` trains a fold's member, with nothing
chosen on data it then trains on:

* the search candidate is the one most folds chose on validation (ties: the best mean validation
  score over those folds);
* the rows are the union of every fold's training and validation rows (with their augmented
  copies); under leave-one-speaker-out that is every labelled row, under an official split the
  test split stays out;
* neural heads train for the median best epoch of the tested members, replaying the learning rate
  of each epoch from the member with that median (so a plateau or step schedule follows the same
  trajectory); classic heads refit the grid point most members chose;
* the seed is the first ``--seeds`` value.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser.fusion.classic import ClassicPredictor, refit_classic
from ser.fusion.config import TrainConfig
from ser.fusion.data import FusionData
from ser.fusion.heads import HEADS, head_module
from ser.fusion.train import FoldResult, refit_torch, resolve_device

logger = logging.getLogger(__name__)


@dataclass
class FinalRecipe:
    """How the final model is trained, chosen from the tested members only."""

    candidate: int
    """Index of the search candidate."""
    seed: int
    """The seed the final model trains with."""
    epochs: int
    """Neural heads: epochs to train (the median best epoch); 0 for classic heads."""
    lrs: list[float]
    """Learning rate of each epoch, replayed from the median member's history."""
    params: dict[str, float]
    """Classic heads: the grid point most members chose."""
    from_member: str
    """``fold seed`` of the member the epochs and learning rates come from."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "seed": self.seed,
            "epochs": self.epochs,
            "params": self.params,
            "from_member": self.from_member,
        }


def choose_recipe(
    results: list[FoldResult], chosen: dict[str, int], scores: dict[str, list[float]], seed: int
) -> FinalRecipe:
    """The final model's candidate, epochs and learning rates from the tested members.

    ``chosen`` maps fold -> the candidate chosen there; ``scores`` fold -> validation score of every
    candidate (mean over seeds)."""
    votes = Counter(chosen.values())
    top = max(votes.values())
    tied = [c for c in sorted(votes) if votes[c] == top]
    candidate = max(tied, key=lambda c: (float(np.mean([s[c] for s in scores.values()])), -c))
    members = [r for r in results if chosen[r.fold] == candidate]
    by_epoch = sorted(members, key=lambda r: (r.best_epoch, r.fold, r.seed))
    median = by_epoch[(len(by_epoch) - 1) // 2]
    params: dict[str, float] = {}
    if isinstance(median.predictor, ClassicPredictor):
        counted = Counter(tuple(sorted(r.predictor.params.items())) for r in members)
        most_common = max(counted, key=lambda p: (counted[p], -list(counted).index(p)))
        params = dict(most_common)
    lrs = [float(epoch["lr"]) for epoch in median.history[: median.best_epoch]] if not params else []
    return FinalRecipe(
        candidate=candidate,
        seed=seed,
        epochs=median.best_epoch if not params else 0,
        lrs=lrs,
        params=params,
        from_member=f"{median.fold} seed {median.seed}",
    )


def labelled_rows(data: FusionData, fold_rows: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Sorted union of every fold's training and validation rows (augmented copies included)."""
    return np.unique(np.concatenate([np.concatenate([rows["train"], rows["validation"]]) for rows in fold_rows]))


def train_final(
    data: FusionData,
    rows: np.ndarray,
    *,
    fusion: str,
    head_options: dict[str, Any],
    cfg: TrainConfig,
    recipe: FinalRecipe,
) -> Any:
    """Train the final model on ``rows``; returns its predictor."""
    logger.info(
        "final model: %d labelled rows, seed %d, %s (from member %s)",
        len(rows),
        recipe.seed,
        f"grid point {recipe.params}" if recipe.params else f"{recipe.epochs} epochs",
        recipe.from_member,
    )
    if HEADS[fusion].engine == "sklearn":
        config = head_module(fusion).build(
            {m: d.dim for m, d in data.modalities.items()}, len(data.classes), **head_options
        )
        return refit_classic(data, rows, config=config, params=recipe.params, normalize=cfg.normalize, seed=recipe.seed)
    device = resolve_device(cfg.device)
    return refit_torch(
        data, rows, fusion=fusion, head_options=head_options, cfg=cfg, seed=recipe.seed, device=device, lrs=recipe.lrs
    )
