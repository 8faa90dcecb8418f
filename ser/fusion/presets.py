"""Training presets: each head's paper recipe as ``train.*`` values.

Precedence of a fit's training settings (``ser fit``, ``ser ablate``, any record read by
``ser.fusion.config.config_from_dict``)::

    TrainConfig defaults < TRAIN_PRESETS[head] < YAML train: {...} < flags < --set train.X=...

A preset only names what the paper fixes; everything else keeps the :class:`TrainConfig` default.
In Python, ``TrainConfig()`` is the plain defaults and ``TrainConfig.for_head(name, **changes)`` the
preset (``FitConfig(train=...)`` takes what it is given).

Choices that hold for every preset (each one a deviation from some paper, on purpose):

* ``patience=0``: the papers train a fixed number of epochs; we do too and keep the checkpoint of
  the best VALIDATION epoch (``train.select``, UA by default). Where a paper selected on the test
  set (3M-SER, Patamia 2023) or took the last epoch (SERVER, Patamia), this is the fix, not a copy.
* Batch size 1 (SERVER, 3M-SER, 4M-SER, MemoCMT: no padding, no masks) becomes the trainer's
  default 32 with key-padding masks: an item's output does not depend on its batch, but there are
  32x fewer updates per epoch at the same lr. ``train.batch_size=1`` restores the update count.
* ``normalize`` stays True: pooled inputs are z-scored with the fold's training statistics, which
  no paper does (they feed raw vectors). It never touches sequences. ``train.normalize=false``
  feeds the raw cached vectors as the papers did.
* Schedules are stepped once per epoch. 3M-SER builds StepLR(30, 0.1) but never calls
  ``scheduler.step()`` (constant lr, a bug); its preset steps it, as the paper's config intends.

Torch-free (``ser ablate`` expands grids and hashes run directories without importing torch).
"""

from __future__ import annotations

from typing import Any

from ser.errors import unknown_name
from ser.fusion.heads import HEADS

_ADAM_STEP = {
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "schedule": "step",
    "step_size": 30,
    "gamma": 0.1,
    "patience": 0,
}
"""Adam 1e-4 (β 0.9/0.999, eps 1e-8, no weight decay) with StepLR(30, 0.1) per epoch: the
Pham/Tran family's recipe (SERVER, 3M-SER, 4M-SER, MemoCMT, SER-Fuse)."""

_COPENHAGEN = {
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "schedule": "plateau",
    "gamma": 0.8,
    "plateau_patience": 2,
    "epochs": 30,
    "batch_size": 64,
    "patience": 0,
}
"""whitesungun876/ser_multimodal_project train_model.py: Adam 1e-4 with weight decay 1e-4,
ReduceLROnPlateau(factor 0.8, patience 2) on validation loss, 30 epochs, batch 64, CE. Its optional
early stop (patience 3 on validation loss) is off by default there, so off here too."""

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # Our baseline, no paper: the TrainConfig defaults (AdamW 1e-3, weight decay 1e-2, batch 32, early
    # stopping after 20 epochs without a better validation UA).
    "mlp": {},
    # Classic baselines (ser.fusion.classic): their grid point is chosen on validation, then refitted
    # on train + validation, as the SVM / logistic-regression rows of SER papers train on every
    # training speaker. (epochs, lr, ... do not apply to them.)
    "logreg": {"refit": True},
    "svm": {"refit": True},
    # SERVER: CE, Adam 1e-4, StepLR(30, 0.1) stepped each epoch, 101 epochs, batch 1.
    "server": {**_ADAM_STEP, "epochs": 101},
    # 3M-SER: Adam 1e-4, StepLR(30, 0.1) (never stepped in the source: fixed here), 200 epochs, batch 1.
    "mser3": {**_ADAM_STEP, "epochs": 200},
    # 4M-SER: Adam 1e-4 (the SSL configs; the hidden SGD 0.99 default of the others is not copied),
    # StepLR(30, 0.1), 100 epochs, batch 1, best validation accuracy.
    "mser4": {**_ADAM_STEP, "epochs": 100},
    # MemoCMT: CE, Adam 1e-4, StepLR(30, 0.1), 100 epochs, batch 1, best validation accuracy.
    "memocmt": {**_ADAM_STEP, "epochs": 100},
    # FleSER v2 (the repository HEAD model): AdamW lr 1e-4 wd 1e-2, batch 64, 100 epochs,
    # ReduceLROnPlateau(min, factor 0.3, patience 30) on validation loss. (v1: Adam 1e-4, batch 128,
    # 150 epochs, StepLR(30, 0.3).) The source keeps the best validation WA; we select on train.select.
    "fleser": {
        "optimizer": "adamw",
        "lr": 1e-4,
        "weight_decay": 1e-2,
        "batch_size": 64,
        "epochs": 100,
        "schedule": "plateau",
        "gamma": 0.3,
        "plateau_patience": 30,
        "patience": 0,
    },
    # SER-Fuse: CE, Adam 1e-4, StepLR(30, 0.1), 200 epochs, batch 128.
    "serfuse": {**_ADAM_STEP, "epochs": 200, "batch_size": 128},
    # Patamia 2023, the 3-modal Adam run: lr 1e-5, batch 5, 100 epochs, no schedule. (Its lr was
    # chosen for fine-tuning wav2vec2 and BERT end to end; on frozen cached features it is slow.)
    "patamia": {
        "optimizer": "adam",
        "lr": 1e-5,
        "weight_decay": 0.0,
        "batch_size": 5,
        "epochs": 100,
        "schedule": "none",
        "patience": 0,
    },
    # Copenhagen project: one script trains all its models.
    "early_fusion": dict(_COPENHAGEN),
    "xattn_patch": dict(_COPENHAGEN),
    "resnet18": dict(_COPENHAGEN),
    "cnn_bilstm": dict(_COPENHAGEN),
    "audio_transformer": dict(_COPENHAGEN),
}


def train_preset(fusion: str) -> dict[str, Any]:
    """A copy of the paper's ``train.*`` values for head ``fusion`` (a :class:`UserError` names the
    heads for an unknown name)."""
    if fusion not in HEADS:
        raise unknown_name("fusion head", fusion, HEADS)
    return dict(TRAIN_PRESETS.get(fusion, {}))
