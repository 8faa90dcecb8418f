"""VGGish extractor with a random-initialised torchvggish network and random PCA parameters (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torchvggish = pytest.importorskip("torchvggish")

from ser.extract.base import ExtractorError, Item, ItemRejected  # noqa: E402
from ser.extract.registry import build_extractor  # noqa: E402
from ser.extract.vggish import (  # noqa: E402
    MIN_SAMPLES,
    PCA_FILE,
    WEIGHTS_FILE,
    VggishExtractor,
    _load_tensors,
    _numpy_global,
    build,
    resolve_files,
)

RATE = 16000


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random VGGish state dict and random PCA params (numpy arrays, as in the released file)."""
    folder = tmp_path_factory.mktemp("vggish")
    torch.manual_seed(0)
    model = torchvggish.VGG(torchvggish.make_layers(), postprocess=False)
    weights = folder / "random-vggish.pth"
    torch.save(model.state_dict(), weights)
    rng = np.random.default_rng(0)
    pca = folder / "random-pca.pth"
    torch.save(
        {"pca_eigen_vectors": rng.normal(scale=30.0, size=(128, 128)), "pca_means": rng.uniform(0.0, 0.02, size=128)},
        pca,
    )
    return weights, pca


@pytest.fixture(scope="module")
def extractor(files: tuple[Path, Path]) -> VggishExtractor:
    weights, pca = files
    built = build_extractor("vggish", checkpoint=str(weights), pca_checkpoint=str(pca))
    assert isinstance(built, VggishExtractor)
    return built


def clip(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)


def features_of(extractor: VggishExtractor, audio: np.ndarray, seq: tuple[str, ...] = ("raw", "pp")):
    [result] = extractor.extract([Item(id="x", audio=audio)], list(seq))
    assert not isinstance(result, ItemRejected)
    return result


def test_spec(extractor: VggishExtractor) -> None:
    spec = extractor.spec
    assert spec.name == "vggish" and spec.preset == "default" and spec.modality == "audio"
    assert spec.sample_rate == 16000 and spec.frame_rate == pytest.approx(1 / 0.96)
    assert spec.pooled == {"raw_mean": (1, 128), "pp_mean": (1, 128), "pp_sum": (1, 128)}
    assert spec.seq_layers == {"raw": 128, "pp": 128}
    assert spec.min_samples == MIN_SAMPLES == 15600
    assert not extractor.model.training
    config = extractor.config()
    assert len(config["weights_sha256"]) == 64 and len(config["pca_sha256"]) == 64
    assert "weights_sha256" in extractor.upstream()


def test_three_second_clip(extractor: VggishExtractor) -> None:
    result = features_of(extractor, clip(3.0))
    raw, pp = result.seq["raw"], result.seq["pp"]
    assert raw.shape == (3, 128) and pp.shape == (3, 128)
    assert raw.dtype == np.float32 and pp.dtype == np.float32
    assert (raw >= 0).all()  # ReLU output
    assert np.array_equal(pp, np.round(pp)) and pp.min() >= 0 and pp.max() <= 255
    assert len(np.unique(pp)) > 2  # the random PCA spreads values over the range
    for name in ("raw_mean", "pp_mean", "pp_sum"):
        assert result.pooled[name].shape == (1, 128)
    np.testing.assert_allclose(result.pooled["pp_sum"], pp.sum(axis=0, keepdims=True))
    np.testing.assert_allclose(result.pooled["pp_mean"], pp.mean(axis=0, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(result.pooled["raw_mean"], raw.mean(axis=0, keepdims=True), rtol=1e-5, atol=1e-7)
    assert result.note is None


def test_matches_torchvggish_pipeline(
    extractor: VggishExtractor, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """raw = VGG(postprocess=False) and pp = torchvggish.vggish() with its own postprocessor, same weights."""
    weights, pca = files
    state = torch.load(weights, weights_only=True)
    params = torch.load(pca, weights_only=False)

    def fake_download(url: str, *args: object, **kwargs: object) -> object:
        return params if "pca" in url else state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    audio = clip(3.0, seed=3)
    examples = torchvggish.waveform_to_examples(audio, RATE, return_tensor=True)
    reference = torchvggish.vggish(postprocess=True)
    raw_model = torchvggish.VGG(torchvggish.make_layers(), postprocess=False)
    raw_model.load_state_dict(state)
    with torch.no_grad():
        expected_pp = reference(examples).numpy()
        expected_raw = raw_model(examples).numpy()
    result = features_of(extractor, audio)
    np.testing.assert_array_equal(result.seq["pp"], expected_pp)
    np.testing.assert_allclose(result.seq["raw"], expected_raw, rtol=1e-5, atol=1e-6)


def test_deterministic_and_batch_independent(extractor: VggishExtractor) -> None:
    audios = [clip(3.0, 1), clip(0.5, 2), clip(2.2, 3)]
    first = extractor.extract([Item(id=str(i), audio=a) for i, a in enumerate(audios)], ["raw", "pp"])
    again = extractor.extract([Item(id=str(i), audio=a) for i, a in enumerate(audios)], ["raw", "pp"])
    alone = [features_of(extractor, a) for a in audios]
    old = extractor.cfg.batch_patches
    extractor.cfg.batch_patches = 1
    try:
        one_by_one = extractor.extract([Item(id=str(i), audio=a) for i, a in enumerate(audios)], ["raw", "pp"])
    finally:
        extractor.cfg.batch_patches = old
    assert [r.seq["pp"].shape[0] for r in first] == [3, 1, 2]
    for results in (again, alone, one_by_one):
        for a, b in zip(first, results, strict=True):
            np.testing.assert_allclose(a.seq["raw"], b.seq["raw"], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(a.seq["pp"], b.seq["pp"])
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.seq["raw"], b.seq["raw"])
        for name in a.pooled:
            np.testing.assert_array_equal(a.pooled[name], b.pooled[name])


def test_short_clip_padded_and_noted(extractor: VggishExtractor) -> None:
    result = features_of(extractor, clip(0.5))
    assert result.seq["pp"].shape == (1, 128)
    assert result.note is not None and "padded" in result.note and str(MIN_SAMPLES) in result.note
    np.testing.assert_allclose(result.pooled["pp_sum"], result.seq["pp"])
    # exactly one patch's worth of audio needs no padding
    assert features_of(extractor, clip(MIN_SAMPLES / RATE)).note is None


def test_seq_selection(extractor: VggishExtractor) -> None:
    assert set(features_of(extractor, clip(1.2), ("pp",)).seq) == {"pp"}
    assert features_of(extractor, clip(1.2), ()).seq == {}


def test_missing_checkpoint_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_download(*args: object, **kwargs: object) -> object:
        raise AssertionError("must not download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    for kwargs in ({}, {"checkpoint": str(tmp_path / "nope.pth")}):
        with pytest.raises(ExtractorError) as caught:
            build("default", **kwargs)
        message = str(caught.value)
        assert "--checkpoint PATH" in message and "-O pca_checkpoint=PATH" in message
        assert WEIGHTS_FILE in message and PCA_FILE in message


def test_pca_missing_alone_is_reported(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ExtractorError, match="pca_checkpoint"):
        build("default", checkpoint=str(files[0]))


def test_resolve_files_from_folder_and_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    for name in (WEIGHTS_FILE, PCA_FILE):
        (hub / "checkpoints" / name).write_bytes(b"x")
    assert resolve_files(None, None) == (hub / "checkpoints" / WEIGHTS_FILE, hub / "checkpoints" / PCA_FILE)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / WEIGHTS_FILE).write_bytes(b"x")
    # the PCA file next to the weights wins over the hub cache once it exists
    assert resolve_files(str(folder), None) == (folder / WEIGHTS_FILE, hub / "checkpoints" / PCA_FILE)
    (folder / PCA_FILE).write_bytes(b"x")
    assert resolve_files(str(folder), None) == (folder / WEIGHTS_FILE, folder / PCA_FILE)
    assert resolve_files(str(folder / WEIGHTS_FILE), None) == (folder / WEIGHTS_FILE, folder / PCA_FILE)


def test_bad_files_and_options(files: tuple[Path, Path], tmp_path: Path) -> None:
    weights, pca = files
    with pytest.raises(ExtractorError, match="unknown options"):
        build("default", checkpoint=str(weights), pca_checkpoint=str(pca), postprocess=False)
    with pytest.raises(ExtractorError, match="not a torchvggish VGGish state dict"):
        build("default", checkpoint=str(pca), pca_checkpoint=str(pca))
    bad_pca = tmp_path / "bad-pca.pth"
    torch.save({"pca_eigen_vectors": torch.zeros(4, 4), "pca_means": torch.zeros(4)}, bad_pca)
    with pytest.raises(ExtractorError, match="PCA shapes"):
        build("default", checkpoint=str(weights), pca_checkpoint=str(bad_pca))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ExtractorError, match="cannot load"):
        build("default", checkpoint=str(garbage), pca_checkpoint=str(pca))


def test_pca_file_formats(tmp_path: Path) -> None:
    """PCA params saved as tensors or numpy arrays load with weights_only; numpy 1 names resolve."""
    as_tensors = tmp_path / "t.pth"
    torch.save({"pca_eigen_vectors": torch.eye(3), "pca_means": torch.zeros(3)}, as_tensors)
    assert torch.equal(_load_tensors(as_tensors)["pca_eigen_vectors"], torch.eye(3))
    as_numpy = tmp_path / "n.pth"
    torch.save({"pca_eigen_vectors": np.eye(3, dtype=np.float32), "pca_means": np.arange(3.0)}, as_numpy)
    loaded = _load_tensors(as_numpy)
    np.testing.assert_array_equal(loaded["pca_means"], np.arange(3.0))
    assert _numpy_global("numpy.core.multiarray._reconstruct") is np._core.multiarray._reconstruct
    assert _numpy_global("numpy.ndarray") is np.ndarray


class _Exec:
    """Pickles as a call of numpy.testing's string-executing helper (the attack a crafted file mounts)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        from numpy.testing._private.utils import runstring

        return runstring, (f"open({str(self.marker)!r}, 'w').write('ran')", {})


@pytest.mark.parametrize("payload", ["numpy_exec", "os_system"])
def test_crafted_checkpoint_naming_other_globals_is_refused_without_running_it(
    tmp_path: Path, payload: str, files: tuple[Path, Path]
) -> None:
    import os

    marker = tmp_path / "ran.txt"

    class _System:
        def __reduce__(self) -> tuple:
            return os.system, (f"touch {marker}",)

    crafted = tmp_path / "pca.pth"
    evil = _Exec(marker) if payload == "numpy_exec" else _System()
    torch.save({"pca_eigen_vectors": np.eye(3), "pca_means": np.zeros(3), "x": evil}, crafted)
    with pytest.raises(ExtractorError, match="refusing to load it"):
        _load_tensors(crafted)
    with pytest.raises(ExtractorError, match="refusing to load it"):
        build("default", checkpoint=str(files[0]), pca_checkpoint=str(crafted))
    assert not marker.exists()
