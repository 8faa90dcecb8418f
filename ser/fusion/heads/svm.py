"""Classic baseline: class-balanced support vector machine (scikit-learn ``SVC``) on pooled vectors::

    [audio ‖ mocap ‖ text] (N, sum D), z-scored with the fold's training rows -> SVC(kernel)

Not a neural head: ``ser.fusion.classic`` trains it. The grid (``C`` x ``gamma`` for the RBF kernel,
``C`` for the linear one) is chosen on the fold's validation rows; by its ``ser`` recipe the chosen point
is then refitted on train + validation. ``gamma`` is given as a multiple of ``1 / D`` (D = feature
count), which on z-scored inputs is scikit-learn's ``gamma="scale"``: 1.0 is its default.
Probabilities are the softmax of the one-vs-rest decision values (``break_ties=True``: the
predicted class is their argmax, as ``SVC.predict`` returns); no Platt scaling, whose internal
5-fold cross-validation would cost five extra fits per grid point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENGINE = "sklearn"
INPUTS = {"audio": "pooled?", "text": "pooled?", "mocap": "pooled?"}
EXAMPLE_DIMS = {"audio": 12, "text": 8}
KERNELS = ("rbf", "linear")


@dataclass(kw_only=True)
class SvmConfig:
    """Kernel and the grid searched on validation."""

    kernel: str = "rbf"
    """rbf or linear."""
    C: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    """Soft-margin penalties tried."""
    gamma: tuple[float, ...] = (0.1, 1.0, 10.0)
    """RBF widths tried, as multiples of 1 / D (1.0 = scikit-learn's "scale" on z-scored inputs)."""

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {self.kernel!r}")


CONFIG = SvmConfig


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> SvmConfig:
    """The config the classic trainer fits with (``dims`` and ``n_classes`` are read from the data)."""
    return SvmConfig(**overrides)
