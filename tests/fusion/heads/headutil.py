"""Inputs and checks shared by the head tests: pooled vectors, log-mel sequences, padded text/audio
sequence pairs, and the padding-invariance, gradient and seeding checks."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

N_MELS = 64
"""Mel bands of the spectrogram heads' example inputs."""

Item = dict[str, torch.Tensor]


def pooled_batch(dims: dict[str, int], n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """``(n, D)`` standard-normal vectors per modality of ``dims``, drawn in ``dims`` order."""
    return {modality: torch.randn(n, dim, generator=generator) for modality, dim in dims.items()}


def log_mel_batch(lengths: list[int], pad: float = 0.0, t: int | None = None) -> dict[str, torch.Tensor]:
    """``audio``: ``(B, T, N_MELS)`` log-mel-like frames (around -6), item ``i`` padded with ``pad`` after
    ``lengths[i]`` frames up to ``t`` (default: the longest item); ``audio_lengths``: ``(B,)``."""
    t = t or max(lengths)
    audio = torch.randn(len(lengths), t, N_MELS) * 2.0 - 6.0
    for i, length in enumerate(lengths):
        audio[i, length:] = pad
    return {"audio": audio, "audio_lengths": torch.tensor(lengths)}


def alone(inputs: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Item ``i`` of a batch on its own: a batch of one, each sequence with a ``<name>_lengths`` entry cut
    to its length (no padding left)."""
    single = {}
    for name, tensor in inputs.items():
        lengths = inputs.get(f"{name}_lengths")
        end = int(lengths[i]) if lengths is not None else None
        single[name] = tensor[i : i + 1, :end] if end is not None else tensor[i : i + 1]
    return single


def item(gen: torch.Generator, dims: dict[str, int], text_len: int, audio_len: int) -> Item:
    """One utterance: unpadded (T, Dt) text tokens and (F, Da) audio frames."""
    return {
        "text": torch.randn(text_len, dims["text"], generator=gen),
        "audio": torch.randn(audio_len, dims["audio"], generator=gen) * 2 + 1,
    }


def collate(items: list[Item], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Stack items into padded (B, L, D) tensors plus ``<modality>_lengths``. The padding is finite random
    garbage (not zeros), so a head passes the invariance tests only if it really masks it."""
    batch: dict[str, torch.Tensor] = {}
    for modality in ("text", "audio"):
        sequences = [it[modality] for it in items]
        longest = max(len(s) for s in sequences)
        padded = torch.randn(len(items), longest, sequences[0].shape[1], generator=gen) * 5 + 3
        for i, sequence in enumerate(sequences):
            padded[i, : len(sequence)] = sequence
        batch[modality] = padded
        batch[f"{modality}_lengths"] = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    return batch


def random_batch(
    dims: dict[str, int], text_lengths: list[int], audio_lengths: list[int], seed: int = 0
) -> dict[str, torch.Tensor]:
    """Padded text and audio sequences of the given lengths (see :func:`collate`), seeded."""
    gen = torch.Generator().manual_seed(seed)
    return collate([item(gen, dims, t, a) for t, a in zip(text_lengths, audio_lengths, strict=True)], gen)


def assert_padding_invariant(
    run: Callable[[dict[str, torch.Tensor]], torch.Tensor], dims: dict[str, int], grad: bool = False
) -> None:
    """``run`` on an item alone equals ``run`` on the same item inside a batch where longer items pad it in
    both text and audio (and in the middle of the batch)."""
    gen = torch.Generator().manual_seed(1)
    target = item(gen, dims, 4, 6)
    longer = [item(gen, dims, 9, 11), item(gen, dims, 7, 15)]
    with torch.set_grad_enabled(grad):
        single = run(collate([target], gen))
        batched = run(collate([longer[0], target, longer[1]], gen))
    assert batched.shape[0] == 3
    torch.testing.assert_close(batched[1], single[0], atol=1e-5, rtol=0)


def assert_all_grads(head: nn.Module, dims: dict[str, int], n_classes: int, unreached: tuple[str, ...] = ()) -> None:
    """One cross-entropy backward pass in train mode gives every parameter a finite, non-zero gradient,
    except those whose names start with one of ``unreached`` (off the output's path), which get none."""
    torch.manual_seed(0)
    head.train()
    inputs = random_batch(dims, [5, 3, 7, 2], [6, 8, 3, 4])
    loss = F.cross_entropy(head(inputs), torch.arange(4) % n_classes)
    loss.backward()
    for name, param in head.named_parameters():
        if unreached and name.startswith(unreached):
            assert param.grad is None or not param.grad.any(), name
            continue
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def assert_same_init(build: Callable[[], nn.Module]) -> None:
    """Two builds after the same ``torch.manual_seed`` have identical parameters and buffers."""
    torch.manual_seed(3)
    first = build().state_dict()
    torch.manual_seed(3)
    second = build().state_dict()
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], atol=0, rtol=0)


def assert_every_parameter_learns(head: nn.Module) -> None:
    """After a backward pass through ``head``: every parameter has a gradient, and not an all-zero one."""
    for name, param in head.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def assert_items_match_alone(head: nn.Module, inputs: dict[str, torch.Tensor], tolerance: float = 1e-5) -> None:
    """Each item's output inside the padded batch equals its output alone, unpadded (see :func:`alone`)."""
    with torch.no_grad():
        batched = head(inputs)
        for i in range(batched.shape[0]):
            torch.testing.assert_close(head(alone(inputs, i))[0], batched[i], atol=tolerance, rtol=tolerance)


def assert_poolings_differ(head: ModuleType) -> None:
    """The features of a head module's ``POOLINGS`` options all differ on the same inputs (same seed)."""
    inputs = random_batch(head.EXAMPLE_DIMS, [5, 3], [2, 6])
    features = {}
    for pooling in head.POOLINGS:
        torch.manual_seed(0)
        features[pooling] = (
            head.build(head.EXAMPLE_DIMS, n_classes=4, pooling=pooling).eval().forward_features(inputs)[1]
        )
    names = list(features)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(features[a], features[b], atol=1e-4), (a, b)
