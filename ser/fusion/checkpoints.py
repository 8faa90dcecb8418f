"""Which epoch's weights a member keeps: the checkpoint rule (``train.checkpoint``), and when it stops.

The rules, each the one a paper's code ran (the recipe records say which):

* ``best``: the epoch with the best validation ``train.select`` metric (UA by default; FleSER kept the
  best validation WA, MemoCMT and 4M-SER the best validation accuracy);
* ``last``: the last epoch (SERVER and the Copenhagen project saved the final model);
* ``val_loss``: the epoch with the lowest validation loss;
* ``train_val_loss``: an epoch whose training loss AND validation loss are both below those of the
  last kept epoch (SER-Fuse saved its model only then; the two minima move together, at saves).

Early stopping (``train.patience``) counts epochs without a new kept checkpoint; ``last`` keeps every
epoch, so it never stops early. Whatever the rule,
[`CheckpointRule.best_score`][ser.fusion.checkpoints.CheckpointRule.best_score] is the validation ``select`` metric of
the kept epoch: a search compares candidates on it.

Standard library only (used by both training engines and imported by nothing heavy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ser.early_stopping import EarlyStopping

CHECKPOINT_RULES = ("best", "last", "val_loss", "train_val_loss")


@dataclass
class CheckpointRule:
    """Tracks the kept epoch of one member under ``rule`` (see the module docstring)."""

    rule: str = "best"
    select: str = "ua"
    """The validation metric reported as the kept epoch's score (and compared by ``best``)."""
    patience: int = 0
    """Epochs without a new kept checkpoint before stopping (0 = never stop early)."""
    best_epoch: int = field(init=False, default=0)
    best_score: float = field(init=False, default=math.nan)
    """Validation ``select`` metric of `best_epoch`."""
    _stopping: EarlyStopping = field(init=False, repr=False)
    _losses: tuple[float, float] = field(init=False, default=(math.inf, math.inf), repr=False)

    def __post_init__(self) -> None:
        if self.rule not in CHECKPOINT_RULES:
            raise ValueError(f"checkpoint rule must be one of {', '.join(CHECKPOINT_RULES)}, not {self.rule!r}")
        self._stopping = EarlyStopping(patience=self.patience, mode="min" if self.rule == "val_loss" else "max")

    def update(self, epoch: int, metrics: Mapping[str, Any], train_loss: float, val_loss: float) -> bool:
        """Record ``epoch``; True when its weights are the new kept checkpoint."""
        score = float(metrics[self.select])
        if self.rule == "best":
            keep = self._stopping.update(epoch, score)
        elif self.rule == "val_loss":
            keep = self._stopping.update(epoch, val_loss)
        elif self.rule == "last":
            keep = self._stopping.update(epoch, float(epoch))
        else:  # train_val_loss: both losses below the last save's
            best_train, best_val = self._losses
            keep = train_loss < best_train and val_loss < best_val
            if keep:
                self._losses = (train_loss, val_loss)
            self._stopping.update(epoch, float(epoch) if keep else -math.inf)
        if keep:
            self.best_epoch, self.best_score = epoch, score
        return keep

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` (> 0) epochs in a row kept no new checkpoint."""
        return self._stopping.should_stop
