"""FleSER (Nguyen et al., Eng. Appl. of AI 165, 2026): modal encoders, fuzzy membership, fusion.

Reproduces ``FlexibleMMSER`` of the repository's HEAD ("model v2"), on pooled utterance vectors
(768-d text ``pooler_output`` and frame-averaged SSL audio in the paper; any D here):

1. per modality, a modal encoder ``e = Dropout(LayerNorm(ReLU(Linear(x))))`` followed by a residual
   multi-head self-attention block on the length-1 sequence ``(B, 1, H)``;
2. a fuzzy membership layer: the encoder output is standardised per sample over its features and
   passed through one of five membership functions, chosen by statistics rules (or fixed);
3. fusion of text and audio (``self_attention``, ``cross_attention``, ``concat`` or ``gmu``), then a
   mean over the length-1 sequence;
4. a small MLP classifier.

Text-only or audio-only (the paper's unimodal ablation): pass one modality in ``dims``; the fused
vector is then that modality's fuzzy output and no fusion layer is built.

Degeneracy of the paper's attention (kept on purpose, to be faithful): every sequence has length 1,
so the softmax over the single key is exactly 1 and each "attention" is the affine map
``out_proj(v_proj(value))``; queries and keys never matter (their projections get exactly zero
gradient). Cross-attention is therefore ``α·L(a_f) + (1 − α)·L(t_f)`` with one shared affine ``L``:
α only weights audio against text.

Deviations: the attentions are [`LengthOneAttention`][ser.fusion.heads.fleser.LengthOneAttention], the same function
with the dead query and key projections left out (same initial weights from a seed; a quarter fewer parameters, which in
the source are only shrunk by weight decay). The membership function is chosen by the paper's
statistics rules on each sample's own statistics (``fuzzy="per_sample"``), so a prediction depends
on that sample alone; the source applies the rules to the statistics of the whole batch, so its
predictions change with the batch they sit in (``fuzzy="batch"`` reproduces it).

Recipes (``paper``: the original experiment; ``ser``: harmonised) and the fidelity table:
``HEADS["fleser"].recipes`` in ``ser.fusion.heads`` (``ser fusion show fleser``). Input scaling: the ``ser``
recipe z-scores the text and audio vectors with the fold's training statistics (``train.normalize``); the
source fed them raw, and so does the ``paper`` recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

INPUTS = {"text": "pooled?", "audio": "pooled?"}
EXAMPLE_DIMS = {"text": 24, "audio": 16}

MODALITIES = ("text", "audio")
"""Order of the fusion concatenation ``[t_f ‖ a_f]``."""
FUSIONS = ("self_attention", "cross_attention", "concat", "gmu")
FUZZY_TYPES = ("linear", "gaussian", "tanh", "sigmoid", "piecewise")
"""Membership types; ``select_fuzzy_types`` returns indices into this tuple."""
FUZZY_MODES = ("batch", "per_sample", *FUZZY_TYPES, "none")
_STD_EPS = 1e-5


@dataclass(kw_only=True)
class FleserConfig:
    """Hyper-parameters of FleSER (defaults: model v2 as run on MELD at the repository's HEAD)."""

    hidden: int = 256
    """Width H of the modal encoders, the fuzzy outputs and the fused vector."""
    heads: int = 4
    """Attention heads of every multi-head attention (encoders and fusion)."""
    dropout: float = 0.3
    """Dropout everywhere: encoder output, encoder attention weights, residual branches, classifier."""
    fusion: str = "gmu"
    """``self_attention``, ``cross_attention``, ``concat`` or ``gmu``. ``gmu`` is the v2 MELD run; the
    v1 IEMOCAP run used ``self_attention`` (v1's own layer differs: it attended over
    ``α·audio + (1 − α)·text``; here ``self_attention`` is v2's layer)."""
    alpha: float = 0.3
    """Fixed (not learned) weight of the text-query direction in ``cross_attention``:
    ``α·MHA(q=t_f, kv=a_f) + (1 − α)·MHA(q=a_f, kv=t_f)``. No effect on the other fusions (as in v2)."""
    # Deviation: the paper selects the membership type on the whole batch ("batch"), so an
    # evaluation prediction depends on the other items in its batch (and on the batch size).
    # Our default applies the same rules to each sample's own statistics, so a prediction depends
    # on that sample alone; "batch" remains available to reproduce the paper.
    fuzzy: str = "per_sample"
    """Membership selection. ``batch``: the paper's rules on the statistics of the whole batch
    tensor (one type for the batch; predictions depend on batch composition). ``per_sample``: the
    same rules on each sample's own statistics. Or a fixed type: ``sigmoid``, ``tanh``, ``linear``,
    ``gaussian``, ``piecewise``; ``none`` skips the fuzzy layer (the encoder output goes straight to
    fusion)."""
    use_layernorm: bool = True
    """Normalisation after the first classifier layer: LayerNorm if True, else BatchNorm1d."""
    classifier: tuple[int, int] = (64, 32)
    """Widths of the two hidden classifier layers (the norm follows the first one only)."""

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {', '.join(FUSIONS)}")
        if self.fuzzy not in FUZZY_MODES:
            raise ValueError(f"unknown fuzzy mode {self.fuzzy!r}; choose one of {', '.join(FUZZY_MODES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")


# --- fuzzy membership ---------------------------------------------------------------------------


def standardise(x: torch.Tensor) -> torch.Tensor:
    """z = (x − mean) / (std + 1e-5) over the last (feature) dimension; std unbiased (torch default)."""
    centred, std = _centred_std(x)
    return centred / (std + _STD_EPS)


def _centred_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x − mean, unbiased std) over the last dimension, std with keepdim. Two plain passes instead of
    ``Tensor.std``, whose CPU kernel costs several times more on these (B, 256) rows (it runs twice
    per modality and step)."""
    centred = x - x.mean(dim=-1, keepdim=True)
    var = centred.square().sum(dim=-1, keepdim=True) / max(x.shape[-1] - 1, 1)
    return centred, var.sqrt()


def sigmoid_membership(z: torch.Tensor) -> torch.Tensor:
    """σ(clip(z, −4, 4))."""
    return torch.sigmoid(z.clamp(-4.0, 4.0))


def tanh_membership(z: torch.Tensor) -> torch.Tensor:
    """tanh(clip(z, −2, 2))."""
    return torch.tanh(z.clamp(-2.0, 2.0))


def linear_membership(z: torch.Tensor) -> torch.Tensor:
    """clip(softplus(z), 0, 1)."""
    return F.softplus(z).clamp(0.0, 1.0)


def gaussian_membership(z: torch.Tensor) -> torch.Tensor:
    """exp(−(clip(z, 0, 1) − 0.5)² / (2·0.15²)): peak 1 at z = 0.5."""
    return torch.exp(-((z.clamp(0.0, 1.0) - 0.5) ** 2) / (2 * 0.15**2))


def piecewise_membership(z: torch.Tensor) -> torch.Tensor:
    """c = clip(z, 0, 1) -> 0.2·c if c < 0.3, 0.5 + 0.5·c if c < 0.7, else 0.9."""
    c = z.clamp(0.0, 1.0)
    return torch.where(c < 0.3, 0.2 * c, torch.where(c < 0.7, 0.5 + 0.5 * c, torch.full_like(c, 0.9)))


MEMBERSHIPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": linear_membership,
    "gaussian": gaussian_membership,
    "tanh": tanh_membership,
    "sigmoid": sigmoid_membership,
    "piecewise": piecewise_membership,
}


def rule_indices(flat: torch.Tensor) -> torch.Tensor:
    """Selection rules on each row of ``flat`` (N, M) -> (N,) int64 indices into ``FUZZY_TYPES``.

    Statistics per row: mean μ, unbiased std σ, skew = mean((x − μ)³) / (σ³ + 1e-5), min, max.
    First matching rule wins: (a) −0.5 < skew < 0.5 and 0 ≤ min < max ≤ 1 -> linear if σ < 0.1 else
    gaussian; (b) |skew| > 0.5 -> tanh; (c) μ > 0.7 or max > 1.5 -> sigmoid; (d) else piecewise.

    Tensor code on ``flat``'s device with no host synchronisation (the decision is not
    differentiable: it runs on a detached float32 copy), so it also runs under ``torch.func.vmap``
    when members are trained stacked (``ser.fusion.engine``).
    """
    values = flat.detach().float()
    centred = values - values.mean(dim=1, keepdim=True)
    squared = centred * centred
    std = (squared.sum(dim=1) / max(values.shape[1] - 1, 1)).sqrt()
    skew = (squared * centred).mean(dim=1) / (std**3 + _STD_EPS)
    mean = values.mean(dim=1)
    low, high = values.amin(dim=1), values.amax(dim=1)
    code = {name: FUZZY_TYPES.index(name) for name in FUZZY_TYPES}
    rule_a = (skew > -0.5) & (skew < 0.5) & (low >= 0) & (low < high) & (high <= 1)
    index = torch.where((mean > 0.7) | (high > 1.5), code["sigmoid"], code["piecewise"])
    index = torch.where(skew.abs() > 0.5, code["tanh"], index)
    return torch.where(rule_a, torch.where(std < 0.1, code["linear"], code["gaussian"]), index)


def select_fuzzy_type(x: torch.Tensor) -> str:
    """The paper's selection: the rules on the statistics of the WHOLE tensor (all samples at once).
    Returns a name, so it reads one number back to the host (``batch`` mode only)."""
    return FUZZY_TYPES[int(rule_indices(x.reshape(1, -1))[0])]


def select_fuzzy_types(x: torch.Tensor) -> torch.Tensor:
    """Per-sample selection: the rules on each sample's own statistics, (B, ...) -> (B,) indices."""
    return rule_indices(x.reshape(x.shape[0], -1))


def fuzzify(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Membership layer on (B, ..., H): standardise per sample over features, then the membership
    chosen by ``mode`` (see ``FleserConfig.fuzzy``).

    ``per_sample`` evaluates all five memberships (elementwise, cheap next to the encoder's matrix
    products) and keeps each sample's own: no data-dependent branch, so no host synchronisation.
    """
    if mode == "none":
        return x
    z = standardise(x)
    if mode == "per_sample":
        index = select_fuzzy_types(x).view(-1, *([1] * (z.dim() - 1)))  # (B, 1, ..., 1)
        out = MEMBERSHIPS[FUZZY_TYPES[-1]](z)
        for k, name in enumerate(FUZZY_TYPES[:-1]):
            out = torch.where(index == k, MEMBERSHIPS[name](z), out)
        return out
    name = select_fuzzy_type(x) if mode == "batch" else mode
    return MEMBERSHIPS[name](z)


# --- layers -------------------------------------------------------------------------------------


class LengthOneAttention(nn.Module):
    """``nn.MultiheadAttention(query, value, value)`` on a length-1 key/value sequence, whatever the
    query: (B, 1, H) -> (B, 1, H).

    The softmax over one key is exactly 1, so each head returns its value projection and the output
    is ``out_proj(value_proj(value))``; the query and key projections of ``nn.MultiheadAttention``
    never change any output (they get exactly zero gradient), so they are not built. The value and
    output projections are initialised exactly as ``nn.MultiheadAttention`` initialises them (the
    value rows of its Xavier-initialised input projection, zero biases, the same random draws), so
    a seed gives the weights it gave when the whole attention was built. Attention-weight dropout
    (training mode) keeps or zeroes each head's whole output per sample, scaled by 1 / (1 - p),
    which is what ``nn.MultiheadAttention`` does to a weight of 1.

    Leaving the dead projections out takes a quarter of FleSER's parameters (and of its optimiser's
    memory traffic) and the zero-filled gradient of the unused rows out of every training step.
    State dicts of the full attention (``in_proj_weight`` / ``in_proj_bias``) still load: their
    value rows are taken.
    """

    def __init__(self, hidden: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed_dim, self.num_heads, self.dropout = hidden, heads, dropout
        # nn.MultiheadAttention's draws, in its order: out_proj (a Linear), then Xavier on (3H, H).
        self.out_proj = nn.Linear(hidden, hidden)
        full = torch.empty(3 * hidden, hidden)
        nn.init.xavier_uniform_(full)
        with torch.random.fork_rng(devices=[]):  # its own initial draws are overwritten: keep the stream
            self.value = nn.Linear(hidden, hidden)
        with torch.no_grad():
            self.value.weight.copy_(full[2 * hidden :])
            self.value.bias.zero_()
            self.out_proj.bias.zero_()
        register: Callable[[Callable[..., None]], object] = self.register_load_state_dict_pre_hook  # untyped in torch
        register(_value_rows_of_full_attention)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        v = self.value(value)  # (B, 1, H)
        if self.training and self.dropout > 0:
            heads, hidden = self.num_heads, self.embed_dim
            grouped = torch.unflatten(v, -1, (heads, hidden // heads))  # (B, 1, heads, H / heads)
            keep = F.dropout(torch.ones_like(grouped[..., :1]), self.dropout, training=True)  # 0 or 1 / (1 - p)
            v = (grouped * keep).flatten(-2)
        out: torch.Tensor = self.out_proj(v)  # (B, 1, H)
        return out


def _value_rows_of_full_attention(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """Load hook: a full ``nn.MultiheadAttention`` state (``in_proj_weight`` (3H, H), ``in_proj_bias``
    (3H,)) becomes the value projection (its last H rows); the query/key rows are dropped."""
    for name, target in (("in_proj_weight", "value.weight"), ("in_proj_bias", "value.bias")):
        full = state_dict.pop(prefix + name, None)
        if full is not None:
            state_dict[prefix + target] = full[2 * full.shape[0] // 3 :]


class ModalEncoder(nn.Module):
    """(B, 1, D) -> (B, 1, H): ``e = Dropout(LayerNorm(ReLU(Linear(x))))``, ``a = MHA(e, e, e)``,
    ``LayerNorm(e + Dropout(a))``."""

    def __init__(self, dim: int, config: FleserConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, config.hidden)
        self.norm_in = nn.LayerNorm(config.hidden)
        self.drop_in = nn.Dropout(config.dropout)
        # Length-1 self-attention (faithful to the paper): softmax over the single key is 1, so this
        # is the affine out_proj(v_proj(e)); the attention dropout then drops a head's whole output.
        self.attn = LengthOneAttention(config.hidden, config.heads, dropout=config.dropout)
        self.drop_attn = nn.Dropout(config.dropout)
        self.norm_out = nn.LayerNorm(config.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.drop_in(self.norm_in(torch.relu(self.linear(x))))
        a = self.attn(e)  # = MHA(e, e, e) on the length-1 sequence
        out: torch.Tensor = self.norm_out(e + self.drop_attn(a))  # (B, 1, H)
        return out


class FleserFusion(nn.Module):
    """(B, 1, H) text and audio fuzzy outputs -> (B, H) fused vector. Builds only the layers its
    fusion method uses (``gmu`` has no ``proj``; ``concat`` has no attention)."""

    def __init__(self, config: FleserConfig) -> None:
        super().__init__()
        self.method = config.fusion
        self.alpha = config.alpha
        hidden = config.hidden
        if self.method == "gmu":
            self.gate = nn.Linear(2 * hidden, hidden)
            return
        self.proj = nn.Linear(2 * hidden, hidden)
        if self.method in ("self_attention", "cross_attention"):
            # No attention dropout here (as in the paper). Length-1 sequences: affine, see module doc.
            self.attn = LengthOneAttention(hidden, config.heads)
            self.drop = nn.Dropout(config.dropout)
            self.norm = nn.LayerNorm(hidden)

    def forward(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([text, audio], dim=-1)
        if self.method == "gmu":
            gate = torch.sigmoid(self.gate(cat))
            fused = gate * text + (1 - gate) * audio
        else:
            proj = self.proj(cat)
            if self.method == "concat":
                fused = proj
            elif self.method == "self_attention":
                attended = self.attn(proj)  # = MHA(proj, proj, proj)
                fused = self.norm(proj + self.drop(attended))
            else:  # cross_attention: one shared MHA in both directions
                text_query = self.attn(audio)  # = MHA(text, audio, audio)
                audio_query = self.attn(text)  # = MHA(audio, text, text)
                mixed = self.alpha * text_query + (1 - self.alpha) * audio_query
                fused = self.norm(proj + self.drop(mixed))
        return fused.mean(dim=1)


class FleserHead(nn.Module):
    """Pooled text and/or audio vectors (B, D) -> logits (B, C); fused features (B, H)."""

    def __init__(self, dims: dict[str, int], n_classes: int, config: FleserConfig) -> None:
        super().__init__()
        unknown = sorted(set(dims) - set(MODALITIES))
        if unknown or not dims:
            raise ValueError(f"the fleser head takes text and/or audio, got {sorted(dims) or 'nothing'}")
        self.config = config
        self.modalities = [m for m in MODALITIES if m in dims]
        self.encoders = nn.ModuleDict({m: ModalEncoder(dims[m], config) for m in self.modalities})
        self.fusion = FleserFusion(config) if len(self.modalities) == 2 else None
        first, second = config.classifier
        norm = nn.LayerNorm(first) if config.use_layernorm else nn.BatchNorm1d(first)
        self.classifier = nn.Sequential(
            nn.Linear(config.hidden, first),
            norm,
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(first, second),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(second, n_classes),
        )
        self.feature_dim = config.hidden

    def fuzzy_outputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per modality, the encoder output after the membership layer: (B, 1, H)."""
        return {m: fuzzify(self.encoders[m](inputs[m].unsqueeze(1)), self.config.fuzzy) for m in self.modalities}

    def forward_features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.fuzzy_outputs(inputs)
        if self.fusion is None:  # unimodal ablation: the mean of that modality's fuzzy output
            features = outputs[self.modalities[0]].mean(dim=1)
        else:
            features = self.fusion(outputs["text"], outputs["audio"])
        return self.classifier(features), features

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(inputs)[0]


CONFIG = FleserConfig
"""The config dataclass (``ser fit`` coerces ``head.*`` values by its field types and records all its fields)."""


def build(dims: dict[str, int], n_classes: int, **overrides: Any) -> FleserHead:
    return FleserHead(dims, n_classes, FleserConfig(**overrides))
