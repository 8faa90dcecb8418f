"""Classic baseline: class-balanced multinomial logistic regression (scikit-learn) on pooled vectors::

    [audio ‖ mocap ‖ text] (N, sum D), z-scored with the fold's training rows -> LogisticRegression

Not a neural head: ``ser.fusion.classic`` trains it (grid over ``C`` chosen on the fold's
validation rows, then, by its ``ser`` recipe, refitted on train + validation). Multi-modal inputs
are concatenated. It reproduces no paper, so it has only the ``ser`` recipe (``ser fusion show logreg``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENGINE = "sklearn"
INPUTS = {"audio": "pooled?", "text": "pooled?", "mocap": "pooled?"}
EXAMPLE_DIMS = {"audio": 12, "text": 8}


@dataclass(kw_only=True)
class LogregConfig:
    """The grid searched on validation."""

    C: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    """Inverse L2 regularisation strengths tried (log-spaced, 1e-3 .. 10)."""


CONFIG = LogregConfig


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> LogregConfig:
    """The config the classic trainer fits with (``dims`` and ``n_classes`` are read from the data)."""
    return LogregConfig(**overrides)
