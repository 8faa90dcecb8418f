"""SERVER head: shapes, paper defaults, masked patch sum, padding invariance, gradients, overrides."""

from __future__ import annotations

import pytest
import torch

from ser.fusion.heads import server
from tests.fusion.heads.headutil import assert_every_parameter_learns

PAPER_DIMS = {"text": 768, "audio": 128}


def batch(dims: dict[str, int], lengths: list[int], pad_value: float = 0.0) -> dict[str, torch.Tensor]:
    """Text pooled vectors and VGGish-like patch sequences (integers 0..255, as postprocessed VGGish)."""
    n = max(lengths)
    audio = torch.randint(0, 256, (len(lengths), n, dims["audio"])).float()
    for i, length in enumerate(lengths):
        audio[i, length:] = pad_value
    return {
        "text": torch.randn(len(lengths), dims["text"]),
        "audio": audio,
        "audio_lengths": torch.tensor(lengths, dtype=torch.long),
    }


@pytest.mark.parametrize("dims", [server.EXAMPLE_DIMS, PAPER_DIMS])
def test_output_shape(dims: dict[str, int]) -> None:
    head = server.build(dims, n_classes=4)
    logits, features = head.forward_features(batch(dims, [3, 1, 5]))
    assert logits.shape == (3, 4)
    assert features.shape == (3, head.feature_dim)
    assert head(batch(dims, [2, 2])).shape == (2, 4)


def test_paper_defaults() -> None:
    config = server.ServerConfig()
    assert (config.text_dim, config.hidden, config.dropout) == (128, 64, 0.5)
    assert config.nonlinear is False
    assert config.audio_norm == "none"
    assert server.INPUTS == {"text": "pooled", "audio": "seq"}
    head = server.build(PAPER_DIMS, n_classes=4)
    assert head.hidden.in_features == 256
    assert not any(isinstance(m, torch.nn.ReLU) for m in head.modules())


def test_nonlinear_option_adds_relu() -> None:
    head = server.build(server.EXAMPLE_DIMS, n_classes=3, nonlinear=True)
    assert any(isinstance(m, torch.nn.ReLU) for m in head.modules())


def test_sum_equals_manual_sum_of_valid_patches() -> None:
    torch.manual_seed(0)
    head = server.build(server.EXAMPLE_DIMS, n_classes=3, dropout=0.0)
    inputs = batch(server.EXAMPLE_DIMS, [4, 2, 6], pad_value=777.0)
    logits = head(inputs)
    for i, length in enumerate([4, 2, 6]):
        audio = inputs["audio"][i, :length].sum(dim=0)
        text = head.text_proj(inputs["text"][i])
        expected = head.classifier(head.hidden(torch.cat([text, audio])))
        torch.testing.assert_close(logits[i], expected, atol=1e-4, rtol=1e-5)


def test_mean_option_divides_by_valid_patches() -> None:
    torch.manual_seed(0)
    head = server.build(server.EXAMPLE_DIMS, n_classes=3, audio_norm="mean")
    inputs = batch(server.EXAMPLE_DIMS, [4, 2], pad_value=5.0)
    expected = torch.stack([inputs["audio"][0, :4].mean(0), inputs["audio"][1, :2].mean(0)])
    torch.testing.assert_close(head.pool_audio(inputs["audio"], inputs["audio_lengths"]), expected)


@pytest.mark.parametrize("audio_norm", ["none", "mean"])
def test_padding_invariance(audio_norm: str) -> None:
    torch.manual_seed(0)
    head = server.build(server.EXAMPLE_DIMS, n_classes=4, audio_norm=audio_norm).eval()
    inputs = batch(server.EXAMPLE_DIMS, [3, 7, 5], pad_value=123.0)
    alone = {"text": inputs["text"][:1], "audio": inputs["audio"][:1, :3], "audio_lengths": inputs["audio_lengths"][:1]}
    with torch.no_grad():
        torch.testing.assert_close(head(inputs)[:1], head(alone), atol=1e-5, rtol=1e-6)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    head = server.build(server.EXAMPLE_DIMS, n_classes=4).train()
    head(batch(server.EXAMPLE_DIMS, [3, 5, 2, 4])).sum().backward()
    assert_every_parameter_learns(head)


def test_unknown_override_is_type_error() -> None:
    with pytest.raises(TypeError, match="n_layers"):
        server.build(server.EXAMPLE_DIMS, n_classes=4, n_layers=3)


def test_bad_options_and_modalities_are_value_errors() -> None:
    with pytest.raises(ValueError, match="audio_norm"):
        server.build(server.EXAMPLE_DIMS, n_classes=4, audio_norm="max")
    with pytest.raises(ValueError, match="text and audio"):
        server.build({"text": 8}, n_classes=4)


def test_deterministic_under_seed() -> None:
    torch.manual_seed(7)
    first = server.build(PAPER_DIMS, n_classes=4)
    torch.manual_seed(7)
    second = server.build(PAPER_DIMS, n_classes=4)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
