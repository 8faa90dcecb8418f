"""Early stopping on a validation score: the best score and its epoch, and when to stop.

One tracker per trained model: fusion members (sequential and stacked engines) and upstream
adaptation. After each epoch the loop calls [`EarlyStopping.update`][ser.early_stopping.EarlyStopping.update] with the
epoch's score; it answers whether that epoch is the new best (the caller then keeps a copy of the weights), and
[`EarlyStopping.should_stop`][ser.early_stopping.EarlyStopping.should_stop] tells when ``patience`` epochs in a row
brought no improvement.

Standard library only: every layer may import this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["max", "min"]


@dataclass
class EarlyStopping:
    """Best-score tracking with patience.

    ``mode`` ``max``: higher is better (UA, F1); ``min``: lower is better (a loss). An epoch improves
    on the best when it beats it by more than ``min_delta`` (strictly better with the default 0); the
    first epoch always counts as the best so far, whatever its score. ``patience`` 0 never stops early.
    """

    patience: int = 0
    mode: Mode = "max"
    min_delta: float = 0.0
    best_score: float = field(init=False, default=math.nan)
    """Score of [`best_epoch`][ser.early_stopping.EarlyStopping.best_epoch] (NaN before the first update)."""
    best_epoch: int = field(init=False, default=0)
    """The best epoch so far (epochs as passed to [`update`][ser.early_stopping.EarlyStopping.update]; 0 before the
    first update)."""
    waited: int = field(init=False, default=0)
    """Epochs since the best one."""
    updates: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"early stopping mode must be 'max' or 'min', not {self.mode!r}")
        if self.patience < 0 or self.min_delta < 0:
            raise ValueError(f"patience and min_delta must not be negative (got {self.patience} and {self.min_delta})")

    def improves(self, score: float) -> bool:
        """Whether ``score`` would be a new best (without recording it)."""
        if self.updates == 0:
            return True
        if self.mode == "max":
            return score > self.best_score + self.min_delta
        return score < self.best_score - self.min_delta

    def update(self, epoch: int, score: float) -> bool:
        """Record ``epoch``'s ``score``; True when it is the new best (keep its weights)."""
        improved = self.improves(score)
        self.updates += 1
        if improved:
            self.best_score, self.best_epoch, self.waited = score, epoch, 0
        else:
            self.waited += 1
        return improved

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` (> 0) epochs in a row did not improve on the best."""
        return bool(self.patience) and self.waited >= self.patience
