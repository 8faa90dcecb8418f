"""Golden tests: ser's heads and losses against numbers computed by the ORIGINAL published code.

The fixtures live in ``../shared/reference/golden`` (its README says how they were made, which
original tensor maps to which ser name, and the ``build(...)`` call and tolerance of each file). Each
head test loads the original weights into ser's head through the name map (``golden_names``), runs
it in eval mode on the stored inputs and compares its logits (``forward``) and fused features
(``forward_features``) with the original's. Each loss test builds ser's loss with
``paper_form=True``, sets its parameter from the original's, and compares the value, the margin
logits and the ``backward()`` gradients. The default (textbook) forms differ from the original on
purpose; :func:`test_default_loss_form_differs_where_documented` pins where.

Tensor names in a fixture: ``weights.<original name>``, ``input.[<case>.]<name>``,
``output.[<case>.]<name>``, ``grad.<name>``.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ser.fusion.heads import fleser
from ser.fusion.losses import CenterLoss, CombinedMarginLoss, ContrastiveCenterLoss, FocalLoss
from tests.fusion.golden_names import (
    COPENHAGEN_RULES,
    GOLDEN_DIR,
    SERFUSE_RULES,
    SERVER_RULES,
    Rules,
    fleser_rules,
    memocmt_rules,
    mser3_rules,
    mser4_rules,
    rename,
)

if not GOLDEN_DIR.is_dir():
    pytest.skip(f"golden fixtures not found: no folder {GOLDEN_DIR}", allow_module_level=True)

ATOL = 1e-5
"""float32 files (README: "atol of about 1e-5"), scaled by the tensor's largest magnitude where that
exceeds 1 (:func:`scaled_atol`)."""
ATOL_FLOAT64 = 1e-10
"""The float64 SERVER file."""

Tensors = dict[str, torch.Tensor]


@functools.cache
def _load(file: str) -> tuple[Tensors, dict[str, str]]:
    """(tensors, header metadata) of one fixture file (cached: never modify the tensors)."""
    path = GOLDEN_DIR / file
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
    return load_file(str(path)), metadata


def _max_abs(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.detach().double() - expected.double()).abs().max())


def assert_matches(key: str, actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    """``assert_close`` with ``rtol=0``, naming the fixture tensor ``key`` when it fails."""
    try:
        torch.testing.assert_close(actual, expected, atol=atol, rtol=0)
    except AssertionError as error:
        raise AssertionError(f"{key}: {error}") from None


def scaled_atol(expected: torch.Tensor, floor: float = 1.0) -> float:
    """``ATOL · max(floor, max |expected|)``: float32 rounding grows with the size of the numbers. Some
    outputs amplify it: FleSER standardises encoder outputs of spread 0.09 (a x11 gain), so its
    self-attention features (up to |3.7|) sit 9e-6 from the original, and the original itself sits as
    far from a float64 run of the same weights: rounding noise, not a mapping error."""
    return ATOL * max(floor, float(expected.abs().max()))


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadCase:
    """One golden head check: ``ser.fusion.heads.<head>.build(dims, n_classes, **options)``."""

    id: str
    file: str
    head: str
    dims: dict[str, int]
    n_classes: int
    rules: Rules
    options: dict[str, Any] = field(default_factory=dict)
    case: str = ""
    """The case inside a multi-case file: keys are ``input.<case>.<name>`` / ``output.<case>.<name>``
    (3M-SER shares its inputs, so only its outputs carry the case)."""
    shared_inputs: bool = False
    outputs: tuple[str, ...] = ("logits", "features")
    split_x: int | None = None
    """Copenhagen stores one ``input.x`` = [text || audio]: the text width to split it at."""
    float64: bool = False

    def atol(self, expected: torch.Tensor) -> float:
        return ATOL_FLOAT64 if self.float64 else scaled_atol(expected)

    def key(self, kind: str, name: str) -> str:
        case = "" if not self.case or (kind == "input" and self.shared_inputs) else self.case + "."
        return f"{kind}.{case}{name}"


def _fleser_cases() -> list[HeadCase]:
    return [
        HeadCase(
            f"fleser-{fusion}-{fuzzy}",
            "fleser.safetensors",
            "fleser",
            {"text": 768, "audio": 768},
            7,
            fleser_rules(fusion),
            {"fusion": fusion, "alpha": 0.3, "fuzzy": fuzzy},
            case=fusion,
        )
        for fusion in fleser.FUSIONS
        for fuzzy in ("batch", "per_sample")
    ]


_SEQ_32 = {"text": 32, "audio": 32}

HEAD_CASES = [
    *_fleser_cases(),
    HeadCase(  # float64: its logits reach |549| (see the README)
        "server",
        "server.safetensors",
        "server",
        {"text": 768, "audio": 128},
        4,
        SERVER_RULES,
        outputs=("logits",),
        float64=True,
    ),
    *[
        HeadCase(
            f"mser3-{norm}",
            "mser3.safetensors",
            "mser3",
            {"text": 768, "audio": 128},
            4,
            mser3_rules(norm),
            {"audio_norm": norm},
            case=norm,
            shared_inputs=True,
            outputs=("logits",),  # the original (and ser's mser3) returns logits only
        )
        for norm in ("layer_norm", "min_max", "none")
    ],
    *[
        HeadCase(
            f"mser4_{pooling}",
            f"mser4_{pooling}.safetensors",
            "mser4",
            {"text": 32, "audio": 16},
            4,
            mser4_rules(1),
            {"pooling": pooling, "linear_layers": (64,)},
        )
        for pooling in ("cls", "mean")
    ],
    HeadCase(
        "mser4_ssl",
        "mser4_ssl.safetensors",
        "mser4",
        _SEQ_32,
        4,
        mser4_rules(2),
        {"pooling": "cls", "linear_layers": (128, 64)},
    ),
    *[
        HeadCase(
            f"memocmt_{original}",
            f"memocmt_{original}.safetensors",
            "memocmt",
            _SEQ_32,
            4,
            memocmt_rules(1),
            {"fusion_dim": 24, "pooling": ours, "dropout": 0.05, "linear_layers": (128,)},
        )
        for original, ours in (("cls", "first"), ("mean", "mean"), ("max", "max"), ("min", "min"))
    ],
    HeadCase(
        "serfuse", "serfuse.safetensors", "serfuse", {"text": 768, "audio": 192}, 4, SERFUSE_RULES, outputs=("logits",)
    ),
    HeadCase(
        "copenhagen_fused_transformer",
        "copenhagen_fused_transformer.safetensors",
        "early_fusion",
        {"text": 48, "audio": 48},
        4,
        COPENHAGEN_RULES,
        {"tokens": "concat", "d_model": 32, "n_layers": 4, "n_heads": 4, "ff_dim": 128},
        outputs=("logits",),
        split_x=48,
    ),
]


def _head_inputs(case: HeadCase, tensors: Tensors) -> Tensors:
    """ser's input dict, as the head module's ``INPUTS`` asks: (B, D) pooled, or (B, T, D) plus
    ``<modality>_lengths`` (B,) for sequences."""
    if case.split_x is not None:
        x = tensors["input.x"]
        return {"text": x[:, : case.split_x], "audio": x[:, case.split_x :]}
    module = importlib.import_module(f"ser.fusion.heads.{case.head}")
    inputs: Tensors = {}
    for modality, kind in module.INPUTS.items():
        inputs[modality] = tensors[case.key("input", modality)]
        if kind.rstrip("?") == "seq":
            inputs[f"{modality}_lengths"] = tensors[case.key("input", f"{modality}_lengths")]
    return inputs


def loaded_head(case: HeadCase) -> nn.Module:
    """ser's head with the original's weights (strict load), in eval mode."""
    tensors, _ = _load(case.file)
    module = importlib.import_module(f"ser.fusion.heads.{case.head}")
    head: nn.Module = module.build(case.dims, case.n_classes, **case.options)
    if case.float64:
        head = head.double()
    head.load_state_dict(rename(tensors, case.rules), strict=True)
    return head.eval()


def head_outputs(case: HeadCase) -> Tensors:
    """ser's outputs on the stored inputs, keyed as the fixture's ``output.*`` tensors."""
    tensors, _ = _load(case.file)
    head: Any = loaded_head(case)  # forward_features, encoders: head-specific
    inputs = _head_inputs(case, tensors)
    with torch.no_grad():
        logits = head(inputs)
        computed = {"logits": logits, "softmax": torch.softmax(logits, dim=-1)}
        if "features" in case.outputs:
            computed["features"] = head.forward_features(inputs)[1]
    names = [*case.outputs, *(["softmax"] if case.head == "serfuse" else [])]  # SER-Fuse also returns softmax
    return {case.key("output", name): computed[name] for name in names}


@pytest.mark.parametrize("case", HEAD_CASES, ids=lambda case: case.id)
def test_head_matches_original(case: HeadCase) -> None:
    tensors, _ = _load(case.file)
    outputs = head_outputs(case)
    prefix = case.key("output", "")
    stored = {key for key in tensors if key.startswith(prefix)}
    assert set(outputs) == stored  # every stored output is checked
    for key, actual in outputs.items():
        expected = tensors[key]
        assert_matches(key, actual, expected, case.atol(expected))


FLESER_CASES = [case for case in HEAD_CASES if case.head == "fleser" and case.options["fuzzy"] == "per_sample"]


@pytest.mark.parametrize("case", FLESER_CASES, ids=lambda case: case.id)
def test_fleser_memberships_match_original(case: HeadCase) -> None:
    """The fixture's inputs were chosen so that the original picks one membership per modality for
    every sample and for the batch (metadata ``memberships``): ser's rules must pick the same."""
    tensors, metadata = _load(case.file)
    expected = json.loads(metadata["memberships"])[case.case]
    head: Any = loaded_head(case)  # forward_features, encoders: head-specific
    with torch.no_grad():
        for modality in ("text", "audio"):
            encoded = head.encoders[modality](tensors[case.key("input", modality)].unsqueeze(1))  # (B, 1, H)
            per_sample = {fleser.FUZZY_TYPES[int(i)] for i in fleser.select_fuzzy_types(encoded)}
            assert per_sample == {expected[f"membership_{modality}"]}
            assert fleser.select_fuzzy_type(encoded) == expected[f"membership_{modality}"]


# --------------------------------------------------------------------------------------------
# Losses (4M-SER)
# --------------------------------------------------------------------------------------------

LOSS_KINDS = ("center", "contrastive_center", "arcface", "cosface", "focal_g0.5", "focal_g1.5")
LOSS_FILES = [f"loss_{kind}_b{batch}.safetensors" for kind in LOSS_KINDS for batch in (1, 32)]


def _kind(file: str) -> str:
    """``loss_focal_g1.5_b32.safetensors`` -> ``focal``."""
    name = file.removeprefix("loss_").rsplit("_b", 1)[0]
    return "focal" if name.startswith("focal") else name


def build_golden_loss(file: str, paper_form: bool) -> tuple[nn.Module, nn.Parameter | None]:
    """ser's loss with the file's hyper-parameters (metadata ``hyper``) and its parameter (centers or
    margin weight, None for focal) set to the original's ``weights.weight``."""
    tensors, metadata = _load(file)
    hyper = json.loads(metadata["hyper"])
    classes, feat_dim = hyper["num_classes"], hyper["feat_dim"]
    builders: dict[str, Callable[[], nn.Module]] = {
        "center": lambda: CenterLoss(classes, feat_dim, lambda_c=hyper["lambda_c"], paper_form=paper_form),
        "contrastive_center": lambda: ContrastiveCenterLoss(
            classes, feat_dim, lambda_c=hyper["lambda_c"], delta=hyper["epsilon"], paper_form=paper_form
        ),
        "margin": lambda: CombinedMarginLoss(
            classes, feat_dim, s=hyper["s"], m1=hyper["m1"], m2=hyper["m2"], m3=hyper["m3"], paper_form=paper_form
        ),
        "focal": lambda: FocalLoss(gamma=hyper["gamma"], paper_form=paper_form),
    }
    kind = _kind(file)
    loss = builders["margin" if kind in ("arcface", "cosface") else kind]()
    if kind == "focal":
        assert hyper["alpha"] is None and hyper["size_average"]  # what FocalLoss(gamma) computes
        return loss, None
    if kind == "contrastive_center":
        assert hyper["extra_divisor"] == 0.1  # hard-coded in both
    parameter = getattr(loss, "weight" if isinstance(loss, CombinedMarginLoss) else "centers")
    assert isinstance(parameter, nn.Parameter)
    with torch.no_grad():
        parameter.copy_(tensors["weights.weight"])
    return loss, parameter


def loss_outputs(file: str, paper_form: bool = True) -> Tensors:
    """ser's loss value, margin logits and gradients, keyed as the fixture's ``output.*`` / ``grad.*``."""
    tensors, _ = _load(file)
    loss, parameter = build_golden_loss(file, paper_form)
    name = "logits" if _kind(file) == "focal" else "features"
    x = tensors[f"input.{name}"].clone().requires_grad_(True)
    labels = tensors["input.labels"]
    value = loss(x, labels)
    value.backward()
    out = {"output.loss": value.detach(), f"grad.{name}": x.grad}
    if parameter is not None:
        out["grad.weight"] = parameter.grad
    if isinstance(loss, CombinedMarginLoss):
        out["output.logits"] = loss.margin_logits(x, labels).detach()
    return {key: tensor for key, tensor in out.items() if tensor is not None}


def loss_atol(key: str, expected: torch.Tensor) -> float:
    """Values and margin logits (up to |64|): :func:`scaled_atol`. Gradients: 1e-5 of the tensor's
    largest entry, whatever its size (the contrastive-center b32 gradients peak at 4.7e-5)."""
    return scaled_atol(expected, floor=0.0 if key.startswith("grad.") else 1.0)


@pytest.mark.parametrize("file", LOSS_FILES, ids=lambda file: file.removesuffix(".safetensors"))
def test_paper_form_loss_matches_original(file: str) -> None:
    tensors, _ = _load(file)
    outputs = loss_outputs(file)
    assert set(outputs) == {key for key in tensors if key.startswith(("output.", "grad."))}
    for key, actual in outputs.items():
        expected = tensors[key]
        assert_matches(key, actual, expected, loss_atol(key, expected))


DEFAULT_FORM_DIFFERS = {
    "center": {"output.loss", "grad.features", "grad.weight"},  # squared per-sample vs unsquared batch norm
    "contrastive_center": {"output.loss", "grad.features", "grad.weight"},  # per-sample vs batch-sum ratio
    "arcface": {"grad.features", "grad.weight"},  # differentiable margin; value and logits agree
    "cosface": set(),  # a constant shift: the detached and differentiable margins have the same gradient
    "focal": {"grad.logits"},  # differentiable (1 − p_t)^γ; value agrees
}
"""Per loss, which outputs of ser's DEFAULT form differ from the original's (by design, see the
module docstring of ``ser.fusion.losses``); every other output must still match."""


@pytest.mark.parametrize("file", LOSS_FILES, ids=lambda file: file.removesuffix(".safetensors"))
def test_default_loss_form_differs_where_documented(file: str) -> None:
    """So that the distinction between the two forms cannot vanish silently."""
    tensors, _ = _load(file)
    differs = DEFAULT_FORM_DIFFERS[_kind(file)]
    for key, actual in loss_outputs(file, paper_form=False).items():
        expected = tensors[key]
        close = torch.allclose(actual, expected, atol=loss_atol(key, expected), rtol=0)
        assert close != (key in differs), f"{key}: max |diff| {_max_abs(actual, expected):.3g}"


def test_every_golden_file_is_checked() -> None:
    files = {path.name for path in GOLDEN_DIR.glob("*.safetensors")}
    assert files == {case.file for case in HEAD_CASES} | set(LOSS_FILES)
