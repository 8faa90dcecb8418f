"""Name maps for the golden fixtures (``../shared/reference/golden``, see its README): the original
repositories' state-dict names -> the names of ``ser``'s heads.

A map is an ordered list of ``(original prefix, ser prefix)`` rules. A prefix matches whole dotted
components only (``fc`` matches ``fc.0.weight``, not ``fcx.weight``); the first matching rule wins,
and a name no rule matches is an error, so a new or misspelt tensor in a fixture cannot slip through.
Rules whose ser prefix is :data:`DROP` name tensors the original builds but its forward never reads
for that case; they are left out, and everything else is loaded with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

GOLDEN_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference" / "golden"
"""``../shared/reference/golden`` next to the repository root."""

DROP = ""
"""Target of a rule whose tensors are not loaded."""

Rules = Sequence[tuple[str, str]]

WEIGHTS = "weights."
"""Key prefix of the original state dict in a fixture file."""


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rename(weights: Mapping[str, torch.Tensor], rules: Rules) -> dict[str, torch.Tensor]:
    """The fixture's ``weights.<original name>`` tensors under ser's names (dropped rules left out).

    Raises:
        KeyError: a tensor that no rule covers.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        if not key.startswith(WEIGHTS):
            continue
        name = key[len(WEIGHTS) :]
        rule = next(((old, new) for old, new in rules if _matches(name, old)), None)
        if rule is None:
            raise KeyError(f"no name-map rule covers the original tensor {name!r}")
        old, new = rule
        if new != DROP:
            out[new + name[len(old) :]] = tensor
    return out


def drop(*prefixes: str) -> list[tuple[str, str]]:
    """Rules that leave out every tensor under ``prefixes``."""
    return [(prefix, DROP) for prefix in prefixes]


# --- FleSER -> ser.fusion.heads.fleser ----------------------------------------------------------

FLESER_UNUSED: dict[str, tuple[str, ...]] = {
    "gmu": ("attn_proj", "multihead_attention", "attn_norm"),
    "concat": ("multihead_attention", "attn_norm", "gate_linear"),
    "self_attention": ("gate_linear",),
    "cross_attention": ("gate_linear",),
}
"""Per fusion, the original tensors its forward never reads (ser does not build those layers)."""


def fleser_rules(fusion: str) -> list[tuple[str, str]]:
    """FleSER's names; ``in_proj_*`` of the attentions become their value rows in ser's load hook."""
    rules = drop(*FLESER_UNUSED[fusion])
    for m in ("text", "audio"):
        rules += [
            (f"projection.{m}_encoder.0", f"encoders.{m}.linear"),
            (f"projection.{m}_encoder.2", f"encoders.{m}.norm_in"),
            (f"projection.self_attention_{m}", f"encoders.{m}.attn"),
            (f"projection.norm_{m}", f"encoders.{m}.norm_out"),
        ]
    return [
        *rules,
        ("attn_proj", "fusion.proj"),
        ("multihead_attention", "fusion.attn"),
        ("attn_norm", "fusion.norm"),
        ("gate_linear", "fusion.gate"),
        ("fc", "classifier"),
    ]


# --- SERVER, SER-Fuse ---------------------------------------------------------------------------

SERVER_RULES: Rules = [("linear1", "text_proj"), ("linear2", "hidden"), ("linear3", "classifier")]
SERFUSE_RULES: Rules = [("linear1", "hidden.0"), ("linear2", "hidden.1"), ("linear3", "classifier")]

# --- 3M-SER, 4M-SER -> mser3, mser4 -------------------------------------------------------------

_SELF_ATTENTION_BLOCKS: Rules = [
    (f"{side}_{part}", f"{side}_block.{ser_part}")
    for side in ("text", "fusion")
    for part, ser_part in (("attention", "attention"), ("linear", "linear"), ("layer_norm", "norm"))
]


def _classifier_rules(n_hidden: int, first: int, step: int, last: int) -> list[tuple[str, str]]:
    """``linear_i`` -> ``classifier.{first + step·i}`` and ``classifer`` (sic) -> ``classifier.{last}``."""
    return [(f"linear_{i}", f"classifier.{first + step * i}") for i in range(n_hidden)] + [
        ("classifer", f"classifier.{last}")
    ]


def mser3_rules(audio_norm: str) -> list[tuple[str, str]]:
    """3M-SER's names; ``vggish_layer_norm`` only exists in ser's ``layer_norm`` case."""
    norm = "audio_norm.layer_norm" if audio_norm == "layer_norm" else DROP
    return [
        ("vggish_layer_norm", norm),
        *_SELF_ATTENTION_BLOCKS,
        ("linear", "classifier.1"),
        ("classifer", "classifier.3"),
    ]


def mser4_rules(n_hidden: int) -> list[tuple[str, str]]:
    """4M-SER's names for ``linear_layer_output`` of length ``n_hidden``."""
    return [
        ("audio_encoder_layer_norm", "audio_norm.layer_norm"),
        *_SELF_ATTENTION_BLOCKS,
        *_classifier_rules(n_hidden, first=1, step=2, last=1 + 2 * n_hidden),
    ]


# --- MemoCMT -> memocmt -------------------------------------------------------------------------


def memocmt_rules(n_hidden: int) -> list[tuple[str, str]]:
    """MemoCMT's names (equal text and audio widths: ser builds no input projections)."""
    return [
        *drop("fusion_attention", "fusion_linear", "fusion_layer_norm"),
        *[(f"{side}_{part}", f"{side}_{part}") for side in ("text", "audio") for part in ("attention", "linear")],
        ("text_layer_norm", "text_norm"),
        ("audio_layer_norm", "audio_norm"),
        *_classifier_rules(n_hidden, first=1, step=2, last=2 * n_hidden + 2),
    ]


# --- Copenhagen FusedTransformer -> early_fusion (tokens="concat") ------------------------------

COPENHAGEN_RULES: Rules = [
    ("proj", "proj"),
    ("cls_token", "cls"),
    ("enc.layers", "encoder.layers"),
    ("norm", "norm"),
    ("head", "classifier"),
]
