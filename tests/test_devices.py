"""``--device`` checked once: unknown names and unavailable GPUs are user errors; torchrun ranks get their GPU."""

from __future__ import annotations

import os

import pytest
import torch

from ser.devices import resolve_device
from ser.errors import UserError


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("name", ["gpu", "cuda0", "cuda:x", "cpu:1", "tpu", "", "auto:0"])
def test_unknown_names_are_refused(name: str, no_gpu: None) -> None:
    with pytest.raises(UserError, match=rf"^--device {name}: unknown device; use auto, cpu, cuda, cuda:N or mps$"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_a_gpu_is_refused(name: str, no_gpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(UserError, match=rf"--device {name}: CUDA is not available here .*use --device cpu"):
        resolve_device(name)


def test_cpu_and_auto_without_a_gpu(no_gpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "cpu"
    assert resolve_device(" CPU ") == "cpu"


def test_gpus_outside_torchrun(two_gpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == "cuda:0"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(UserError, match=r"--device cuda:2: GPU 2 does not exist \(2 visible: cuda:0 ... cuda:1"):
        resolve_device("cuda:2")


def test_under_torchrun_auto_and_cuda_mean_the_local_rank(two_gpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == "cuda:1"
    assert resolve_device("cuda") == "cuda:1"
    assert resolve_device("cuda:0") == "cuda:0"  # an explicit index is kept
    monkeypatch.setenv("LOCAL_RANK", "3")  # more ranks than GPUs on this node
    with pytest.raises(UserError, match="GPU 3 does not exist"):
        resolve_device("cuda")


def test_mps_where_there_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError, match="MPS"):
        resolve_device("mps")


def test_ablate_workers_are_no_torchrun_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner started under torchrun (LOCAL_RANK=3): its workers see one GPU and must drive it."""
    from ser.ablate.runner import worker_env

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name, value in {
        "LOCAL_RANK": "3",
        "RANK": "7",
        "WORLD_SIZE": "8",
        "CUDA_DEVICE_ORDER": "FASTEST_FIRST",
    }.items():
        monkeypatch.setenv(name, value)
    env = worker_env("2", max_threads=4)
    assert "LOCAL_RANK" not in env and "RANK" not in env and "WORLD_SIZE" not in env
    assert env["CUDA_VISIBLE_DEVICES"] == "2"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # nvidia-smi's index 2 is CUDA's index 2
    with pytest.raises(UserError, match="GPU 3 does not exist"):
        resolve_device("auto")  # what a worker inheriting LOCAL_RANK got
    with monkeypatch.context() as inside:  # the worker's environment, exactly
        for name in list(os.environ):
            inside.delenv(name)
        for name, value in env.items():
            inside.setenv(name, value)
        assert resolve_device("auto") == "cuda:0"
        assert resolve_device("cuda") == "cuda"
    assert worker_env(None, max_threads=1)["CUDA_VISIBLE_DEVICES"] == ""
