"""Adapting an upstream speech encoder to one protocol fold, without touching its test data.

Two modes (``ser finetune``): supervised partial fine-tuning (the top-k transformer layers plus a
small classification head, trained on the fold's training speakers, early-stopped on its
validation speakers) and FleSER-style label-free contrastive adaptation (two random crops per
utterance, NT-Xent). Both save a ``save_pretrained`` checkpoint with ``ser_finetune.json``: which
fold, which protocol, which utterance ids trained and validated it. ``ser extract --checkpoint``
carries that into the cache, and ``ser fit`` refuses to test a fold on a cache adapted with any of
its test utterances.

May import ``ser.extract`` (model loading, audio io), ``ser.manifests`` and ``ser.cache``; never
``ser.fusion`` or the CLI.
"""
