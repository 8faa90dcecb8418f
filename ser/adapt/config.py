"""Settings of ``ser finetune`` (everything here is recorded in the checkpoint's provenance)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ser.errors import UserError

FAMILIES = ("hubert", "wav2vec2", "wavlm")
MODES = ("supervised", "contrastive")


@dataclass(kw_only=True)
class FinetuneConfig:
    """One adaptation recipe; the fold is chosen per run."""

    family: str
    """Upstream family: hubert, wav2vec2 or wavlm (wav2vec2-style encoders with ``encoder.layers``)."""
    model: str
    """Hub id or local folder of the starting checkpoint (a preset's id, or ``--checkpoint``)."""
    manifest: str
    """The manifest file (JSON lines) of the corpus."""
    protocol: str
    """The protocol preset whose folds are adapted on."""
    label_set: str | None = None
    """Default: the manifest's, else the corpus default."""
    protocol_options: dict[str, Any] = field(default_factory=dict)
    """Options of the protocol preset."""
    val_fraction: float = 0.2
    """Share of each fold's training rows carved out for validation."""
    val_by: str = "speaker"
    """``speaker`` or ``utterance``: what the validation carving holds out."""
    split_seed: int = 0
    """Seed of the validation carving: use the same value as the later ``ser fit`` so both see the
    same validation speakers."""
    mode: str = "supervised"
    """supervised (top-k layers + a linear head on mean-pooled frames, cross-entropy) or contrastive
    (FleSER: two random crops per utterance, projection head, NT-Xent; no labels used)."""
    unfreeze: int | str | None = None
    """Top transformer layers to train: a number, ``all``, or None for the mode's default (2 for
    supervised, all for contrastive). The CNN feature encoder always stays frozen."""
    epochs: int = 10
    """Most training epochs."""
    patience: int = 3
    """Early stopping on the fold's validation rows (UA for supervised, NT-Xent loss for contrastive)."""
    batch_size: int = 8
    """Crops per optimiser step."""
    lr: float = 5e-5
    """Learning rate of the unfrozen upstream layers."""
    head_lr: float = 1e-3
    """Learning rate of the classification / projection head."""
    weight_decay: float = 0.01
    """Weight decay of the optimiser."""
    crop_seconds: float | None = None
    """Training crop length (None: 4.0 s supervised, 1.0 s contrastive as FleSER). Shorter clips are
    tiled, so no batch ever holds padding (exact for group-norm checkpoints too)."""
    eval_seconds: float = 8.0
    """Supervised validation uses the central crop of this length of each utterance."""
    temperature: float = 0.07
    """NT-Xent temperature (FleSER: 0.07)."""
    projection_dim: int = 512
    """Contrastive projection head: hidden -> hidden -> ReLU -> projection_dim (FleSER: 512)."""
    seed: int = 0
    """Training seed."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    num_workers: int = 2
    """Background processes decoding audio."""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise UserError(f"ser finetune supports {', '.join(FAMILIES)}, not {self.family!r}")
        if self.mode not in MODES:
            raise UserError(f"--mode must be supervised or contrastive, not {self.mode!r}")
        if (
            self.unfreeze is not None
            and self.unfreeze != "all"
            and (not isinstance(self.unfreeze, int) or self.unfreeze < 0)
        ):
            raise UserError(f"--unfreeze takes a number of layers (0 or more) or all, not {self.unfreeze!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.mode == "contrastive" and self.batch_size < 2:
            raise UserError(
                "contrastive adaptation needs --batch-size of at least 2 (the other items are the negatives)"
            )

    @property
    def layers_to_train(self) -> int | None:
        """The top-k count for [`unfreeze_top`][ser.adapt.model.unfreeze_top] (None: every layer)."""
        if self.unfreeze is None:
            return 2 if self.mode == "supervised" else None
        return None if self.unfreeze == "all" else int(self.unfreeze)

    @property
    def crop(self) -> float:
        """The training crop length in seconds (``crop_seconds`` or the mode's default)."""
        if self.crop_seconds is not None:
            return self.crop_seconds
        return 4.0 if self.mode == "supervised" else 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
