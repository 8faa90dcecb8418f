"""Training presets: each head's paper recipe as ``train.*`` values.

Precedence of a fit's training settings (``ser fit``, ``ser ablate``, any record read by
``ser.fusion.config.config_from_dict``)::

    TrainConfig defaults < the head's preset < YAML train: {...} < flags < --set train.X=...

Each head's preset is data in its registry record (``HEADS[name].preset`` in ``ser.fusion.heads``, with
``preset_note`` saying where it follows the paper); this module only explains how presets apply. A
preset only names what the paper fixes; everything else keeps the :class:`TrainConfig` default.
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

from ser.fusion.heads import train_preset

__all__ = ["train_preset"]
