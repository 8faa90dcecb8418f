"""SSL speech encoders (HuBERT, wav2vec2, WavLM) on tiny random checkpoints saved to disk (see conftest.py)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import transformers
from transformers import AutoFeatureExtractor, AutoModel, BertConfig, BertModel

from ser.extract.base import ExtractorError, Features, Item, ItemRejected
from ser.extract.registry import build_extractor
from ser.extract.ssl import SslExtractor

pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    # WavLM inside transformers mixes mask types; not ours to fix
    pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask:UserWarning"),
]

RATE = 16000
HIDDEN = 32
N_STATES = 3  # input embedding + 2 transformer layers
LAYERS = ("layer_00", "layer_01", "layer_02")
LENGTHS = (4800, 16000, 27200, 16000)  # 0.3 s, 1 s, 1.7 s, and a second 1 s item (same-length group)
ATOL = 1e-5


@dataclass(frozen=True)
class Case:
    family: str
    fixture: str
    layer_norm: bool


CASES = [
    Case("hubert", "tiny_hubert_layer", True),
    Case("hubert", "tiny_hubert_group", False),
    Case("wav2vec2", "tiny_wav2vec2_group", False),
    Case("wavlm", "tiny_wavlm_layer", True),
]
IDS = ["hubert-layer", "hubert-group", "wav2vec2-group", "wavlm-layer"]


@dataclass(frozen=True)
class Built:
    case: Case
    path: Path
    extractor: SslExtractor


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def built(request: pytest.FixtureRequest) -> Built:
    case: Case = request.param
    path: Path = request.getfixturevalue(case.fixture)
    extractor = build_extractor(case.family, "base", checkpoint=str(path))
    assert isinstance(extractor, SslExtractor)
    return Built(case, path, extractor)


def _noise(n_samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(n_samples)).astype(np.float32)


def _items(lengths: tuple[int, ...] = LENGTHS) -> list[Item]:
    return [Item(id=f"u{i}", audio=_noise(n, seed=i)) for i, n in enumerate(lengths)]


def _features(result: Features | ItemRejected) -> Features:
    assert isinstance(result, Features), result
    return result


def _expected_frames(n_samples: int) -> int:
    """Frames of the wav2vec2 feature encoder: the 400-sample receptive field, hopped by 320."""
    return (n_samples - 400) // 320 + 1


def _normalise(audio: np.ndarray) -> np.ndarray:
    return ((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)).astype(np.float32)


def _direct(model: torch.nn.Module, batch: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(B, L, T, D) hidden states of a plain transformers call."""
    inputs = {"input_values": torch.from_numpy(batch)}
    if mask is not None:
        inputs["attention_mask"] = torch.from_numpy(mask)
    with torch.no_grad():
        output = model(**inputs, output_hidden_states=True)
    states = list(output.hidden_states)
    states[-1] = output.last_hidden_state  # the last layer means the model output (as the extractor stores it)
    return torch.stack(states, dim=1).numpy()


def test_spec(built: Built) -> None:
    extractor, case = built.extractor, built.case
    spec = extractor.spec
    assert (spec.name, spec.preset, spec.modality) == (case.family, "base", "audio")
    assert spec.pooled == {"mean": (N_STATES, HIDDEN), "std": (N_STATES, HIDDEN)}
    assert spec.seq_layers == dict.fromkeys(LAYERS, HIDDEN)
    assert spec.sample_rate == RATE
    assert spec.frame_rate == 50.0
    assert spec.min_samples == 400
    assert spec.supports_padding is case.layer_norm
    assert spec.resolve_seq("all") == LAYERS
    assert spec.resolve_seq("last") == ("layer_02",)
    assert not extractor.model.training
    assert extractor.config()["normalize"] is True  # from the saved feature extractor's do_normalize
    upstream = extractor.upstream()
    assert upstream["feat_extract_norm"] == ("layer" if case.layer_norm else "group")
    assert upstream["attention_mask_used"] is case.layer_norm
    assert (upstream["layers"], upstream["dim"], upstream["model"]) == (N_STATES, HIDDEN, str(built.path))


def test_batched_padded_equals_one_at_a_time(built: Built) -> None:
    extractor = built.extractor
    items = _items()
    batched = [_features(r) for r in extractor.extract(items, LAYERS)]
    assert len(batched) == len(items)
    for item, together in zip(items, batched, strict=True):
        alone = _features(extractor.extract([item], LAYERS)[0])
        assert together.note is None
        assert list(together.seq) == list(LAYERS)
        for stat in ("mean", "std"):
            assert together.pooled[stat].shape == (N_STATES, HIDDEN)
            assert together.pooled[stat].dtype == np.float32
            np.testing.assert_allclose(together.pooled[stat], alone.pooled[stat], atol=ATOL, rtol=0)
        for name in LAYERS:
            assert together.seq[name].shape == (_expected_frames(item.audio.size), HIDDEN)  # no padding frames
            np.testing.assert_allclose(together.seq[name], alone.seq[name], atol=ATOL, rtol=0)
    # same-length items with different audio stay different (rows are not mixed up in a group)
    assert not np.allclose(batched[1].seq["layer_02"], batched[3].seq["layer_02"])


def test_matches_direct_transformers_call(built: Built) -> None:
    model = AutoModel.from_pretrained(built.path).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(built.path)
    items = _items()
    results = built.extractor.extract(items, ["layer_01"])
    for item, result in zip(items, results, strict=True):
        features = _features(result)
        # the checkpoint's own preprocessing (zero mean, unit variance) and a plain forward
        inputs = feature_extractor(item.audio, sampling_rate=RATE, return_tensors="pt")
        np.testing.assert_allclose(inputs["input_values"][0].numpy(), _normalise(item.audio), atol=1e-5, rtol=0)
        with torch.no_grad():
            direct = model(**inputs, output_hidden_states=True)
        hidden = torch.stack(direct.hidden_states)[:, 0].numpy()  # (L, T, D)
        hidden[-1] = direct.last_hidden_state[0].numpy()  # the last layer means the model output everywhere
        assert hidden.shape == (N_STATES, _expected_frames(item.audio.size), HIDDEN)
        np.testing.assert_allclose(features.pooled["mean"][-1], hidden[-1].mean(axis=0), atol=ATOL, rtol=0)
        np.testing.assert_allclose(features.pooled["mean"], hidden.mean(axis=1), atol=ATOL, rtol=0)
        np.testing.assert_allclose(features.pooled["std"], hidden.std(axis=1), atol=ATOL, rtol=0)
        np.testing.assert_allclose(features.seq["layer_01"], hidden[1], atol=ATOL, rtol=0)


TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def test_last_layer_is_the_model_output(built: Built, request: pytest.FixtureRequest) -> None:
    """The last stored layer should be the encoder's output (``last_hidden_state``) whatever the transformers version.

    transformers 4.x put the post-final-LayerNorm state last in ``hidden_states``; 5.x records
    Hubert/WavLM/Wav2Vec2 with ``capture_outputs(tie_last_hidden_states=False)``, so for pre-LN
    (stable-layer-norm, "large") checkpoints ``hidden_states[-1]`` is the state BEFORE the final
    LayerNorm. setup.cfg allows transformers>=4.40 and the store config does not record the version.
    """
    model = AutoModel.from_pretrained(built.path).eval()
    audio = _noise(16000, seed=12)
    with torch.no_grad():
        direct = model(torch.from_numpy(_normalise(audio))[None], output_hidden_states=True)
    features = _features(built.extractor.extract([Item("a", audio)], ["layer_02"])[0])
    last = direct.last_hidden_state[0].numpy()
    np.testing.assert_allclose(features.seq["layer_02"], last, atol=ATOL, rtol=0)
    np.testing.assert_allclose(features.pooled["mean"][-1], last.mean(axis=0), atol=ATOL, rtol=0)


def test_padding_hazard_of_group_norm_encoders(built: Built) -> None:
    """Why group-norm checkpoints are never padded: a plain padded batch changes the short item's output.

    Layer-norm checkpoints with an attention mask are padding-invariant, which is what lets the
    extractor pad them.
    """
    model = AutoModel.from_pretrained(built.path).eval()
    short, long = _noise(4800, seed=10), _noise(27200, seed=11)
    alone = _direct(model, _normalise(short)[None])[0]  # (L, T, D)
    batch = np.zeros((2, long.size), dtype=np.float32)
    mask = np.zeros((2, long.size), dtype=np.int64)
    for row, audio in enumerate((short, long)):
        batch[row, : audio.size] = _normalise(audio)
        mask[row, : audio.size] = 1
    n_frames = _expected_frames(short.size)
    if built.case.layer_norm:
        padded = _direct(model, batch, mask)[0, :, :n_frames]
        np.testing.assert_allclose(padded, alone, atol=ATOL, rtol=0)
    else:
        padded = _direct(model, batch)[0, :, :n_frames]  # no attention mask: what these checkpoints were trained on
        assert np.abs(padded - alone).max() > 1e-3
        padded_masked = _direct(model, batch, mask)[0, :, :n_frames]  # a mask does not rescue the group norm
        assert np.abs(padded_masked - alone).max() > 1e-3
    # the extractor gives the one-at-a-time output for the same two items batched together
    together = _features(built.extractor.extract([Item("s", short), Item("l", long)], LAYERS)[0])
    for index, name in enumerate(LAYERS):
        np.testing.assert_allclose(together.seq[name], alone[index], atol=ATOL, rtol=0)


def test_pooled_stats_are_those_of_the_frames(built: Built) -> None:
    extractor = built.extractor
    layers = extractor.spec.resolve_seq("all")
    for result in extractor.extract(_items(), layers):
        features = _features(result)
        frames = np.stack([features.seq[name] for name in layers]).astype(np.float64)  # (L, T, D)
        np.testing.assert_allclose(features.pooled["mean"], frames.mean(axis=1), atol=ATOL, rtol=0)
        np.testing.assert_allclose(features.pooled["std"], frames.std(axis=1), atol=ATOL, rtol=0)
        assert np.all(features.pooled["std"] > 0)


def test_seq_layer_selection(built: Built) -> None:
    extractor = built.extractor
    item = _items((16000,))
    for choice, expected in [("none", []), ("last", ["layer_02"]), ("0,2", ["layer_00", "layer_02"])]:
        features = _features(extractor.extract(item, extractor.spec.resolve_seq(choice))[0])
        assert list(features.seq) == expected
        assert features.pooled["mean"].shape == (N_STATES, HIDDEN)  # pooled stats cover every layer regardless


def test_short_audio_is_padded_to_the_receptive_field(built: Built) -> None:
    extractor = built.extractor
    audio = _noise(200, seed=5)
    features = _features(extractor.extract([Item("short", audio)], LAYERS)[0])
    assert features.note is not None
    assert "padded from 200 to 400 samples" in features.note
    assert all(features.seq[name].shape == (1, HIDDEN) for name in LAYERS)
    centred = _features(extractor.extract([Item("centred", np.pad(audio, (100, 100)))], LAYERS)[0])
    assert centred.note is None
    for name in LAYERS:
        np.testing.assert_allclose(features.seq[name], centred.seq[name], atol=ATOL, rtol=0)
    exact = _features(extractor.extract([Item("exact", _noise(400, seed=6))], LAYERS)[0])
    assert exact.note is None
    assert exact.seq["layer_00"].shape == (1, HIDDEN)


@pytest.mark.parametrize(
    ("n_samples", "chunk_sizes"),
    [(40000, (16000, 16000, 8000)), (32200, (16000, 16200))],
    ids=["three-chunks", "short-tail-merged"],
)
def test_long_audio_is_chunked(built: Built, n_samples: int, chunk_sizes: tuple[int, ...]) -> None:
    chunked = build_extractor(built.case.family, "base", checkpoint=str(built.path), max_seconds=1.0)
    assert chunked.config()["max_seconds"] == 1.0
    audio = _noise(n_samples, seed=7)
    other = _noise(12000, seed=8)  # an unchunked neighbour in the same batch
    results = [_features(r) for r in chunked.extract([Item("long", audio), Item("other", other)], LAYERS)]
    features = results[0]
    assert features.note is not None
    assert f"processed in {len(chunk_sizes)} chunks" in features.note
    assert results[1].note is None
    assert results[1].seq["layer_02"].shape[0] == _expected_frames(other.size)
    # every chunk is computed as if alone, and the frames are concatenated in time order
    bounds = np.cumsum((0, *chunk_sizes))
    pieces = [
        _features(r)
        for r in built.extractor.extract(
            [Item(f"c{i}", audio[a:b]) for i, (a, b) in enumerate(itertools.pairwise(bounds))], LAYERS
        )
    ]
    assert features.seq["layer_00"].shape[0] == sum(_expected_frames(size) for size in chunk_sizes)
    for name in LAYERS:
        np.testing.assert_allclose(features.seq[name], np.concatenate([p.seq[name] for p in pieces]), atol=ATOL, rtol=0)
    frames = np.stack([features.seq[name] for name in LAYERS]).astype(np.float64)
    np.testing.assert_allclose(features.pooled["mean"], frames.mean(axis=1), atol=ATOL, rtol=0)
    np.testing.assert_allclose(features.pooled["std"], frames.std(axis=1), atol=ATOL, rtol=0)
    # not the statistics of any single chunk
    assert not np.allclose(features.pooled["mean"], pieces[0].pooled["mean"], atol=ATOL)


def test_normalize_option_overrides_the_checkpoint(tiny_hubert_group: Path) -> None:
    raw = build_extractor("hubert", "base", checkpoint=str(tiny_hubert_group), normalize=False)
    assert raw.config()["normalize"] is False
    audio = _noise(16000, seed=9) + 0.05  # an offset that normalisation would remove
    features = _features(raw.extract([Item("a", audio)], ["layer_02"])[0])
    direct = _direct(AutoModel.from_pretrained(tiny_hubert_group).eval(), audio[None])[0]
    np.testing.assert_allclose(features.seq["layer_02"], direct[2], atol=ATOL, rtol=0)
    normalised = build_extractor("hubert", "base", checkpoint=str(tiny_hubert_group))
    assert normalised.config() != raw.config()
    assert not np.allclose(
        _features(normalised.extract([Item("a", audio)], ["layer_02"])[0]).seq["layer_02"],
        features.seq["layer_02"],
        atol=1e-3,
    )


def test_item_without_audio_is_an_error(tiny_hubert_layer: Path) -> None:
    extractor = build_extractor("hubert", "base", checkpoint=str(tiny_hubert_layer))
    with pytest.raises(ExtractorError, match="need audio"):
        extractor.extract([Item("text-only", text="hello")], [])


# ---------------------------------------------------------------------- loading failures


def _empty_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty HF_HOME. huggingface_hub reads its environment once at import, so its constant is patched too."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))


def test_offline_without_a_local_copy_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _empty_hub_cache(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ExtractorError) as raised:
        build_extractor("hubert", "base")
    assert time.monotonic() - start < 5.0
    message = str(raised.value)
    assert "--checkpoint" in message
    assert "HF_HUB_OFFLINE" in message
    assert "facebook/hubert-base-ls960" in message


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _empty_hub_cache(monkeypatch, tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: the connection is refused at once
    start = time.monotonic()
    with pytest.raises(ExtractorError, match="--checkpoint"):
        build_extractor("wavlm", "large")
    assert time.monotonic() - start < 5.0


def test_folder_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ExtractorError, match=r"no config\.json|cannot be loaded"):
        build_extractor("hubert", "base", checkpoint=str(tmp_path))


def test_folder_with_only_a_preprocessor_config_is_rejected(tiny_hubert_layer: Path, tmp_path: Path) -> None:
    (tmp_path / "preprocessor_config.json").write_bytes((tiny_hubert_layer / "preprocessor_config.json").read_bytes())
    with pytest.raises(ExtractorError, match=r"no config\.json|cannot be loaded"):
        build_extractor("hubert", "base", checkpoint=str(tmp_path))


def test_folder_without_weights_is_rejected(tiny_hubert_layer: Path, tmp_path: Path) -> None:
    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_bytes((tiny_hubert_layer / name).read_bytes())
    with pytest.raises(ExtractorError):
        build_extractor("hubert", "base", checkpoint=str(tmp_path))


def test_unknown_option_names_the_accepted_ones(tiny_hubert_layer: Path) -> None:
    with pytest.raises(ExtractorError, match="unknown options") as raised:
        build_extractor("hubert", "base", checkpoint=str(tiny_hubert_layer), chunk_seconds=5)
    message = str(raised.value)
    assert "chunk_seconds" in message
    for option in ("max_seconds", "normalize", "revision"):
        assert option in message


def test_bad_dtype_is_rejected(tiny_hubert_layer: Path) -> None:
    with pytest.raises(ExtractorError, match="--dtype must be one of"):
        build_extractor("hubert", "base", checkpoint=str(tiny_hubert_layer), dtype="float64")


def test_text_checkpoint_is_not_a_speech_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30,
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=16,
    )
    BertModel(config).save_pretrained(tmp_path)
    with pytest.raises(ExtractorError, match="not a wav2vec2-style speech encoder"):
        build_extractor("hubert", "base", checkpoint=str(tmp_path))
