"""ECAPA-TDNN extractor: a tiny random ECAPA saved in SpeechBrain's checkpoint layout (hyperparams.yaml,
embedding_model.ckpt, mean_var_norm_emb.ckpt, classifier.ckpt, label_encoder.txt) and read by the real loading
code, through ``ser extract``; exact equality with SpeechBrain's ``EncoderClassifier`` when it is importable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ser.cache.reader import CacheReader
from ser.cli import app
from ser.extract.base import ExtractorError, Features, Item, ItemRejected
from ser.extract.ecapa import EcapaExtractor, build, parse_hyperparams
from ser.extract.ecapa_net import EcapaSettings, EcapaTdnn, SpeakerEncoder
from ser.extract.registry import EXTRACTORS, build_extractor
from ser.manifests.schema import ManifestHeader, Utterance, write_manifest
from tests.fakes import write_tone

RATE = 16000
DIM = 12
CHANNELS = (16, 16, 16, 16, 48)
LABELS = ("spk_a", "spk_b", "spk_c")

TINY_HYPERPARAMS = """\
# a tiny ECAPA-TDNN in the layout of speechbrain/spkrec-ecapa-voxceleb (random weights)
n_mels: 80
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
out_n_neurons: 3

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [16, 16, 16, 16, 48]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 8
    se_channels: 8
    lin_neurons: 12

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 12
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""

VOXCELEB_SETTINGS = """\
n_mels: 80
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192
"""
"""The module settings of speechbrain/spkrec-ecapa-voxceleb's hyperparams.yaml (values as published)."""


def _write_checkpoint(folder: Path, hyperparams: str = TINY_HYPERPARAMS, *, seed: int = 0) -> Path:
    """Random ECAPA weights (batch-norm statistics too, so eval mode matters) in SpeechBrain's file layout."""
    folder.mkdir(parents=True)
    (folder / "hyperparams.yaml").write_text(hyperparams)
    torch.manual_seed(seed)
    net = EcapaTdnn(
        EcapaSettings(input_size=80, channels=CHANNELS, attention_channels=8, se_channels=8, lin_neurons=DIM)
    )
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.num_batches_tracked.fill_(1000)
    torch.save(net.state_dict(), folder / "embedding_model.ckpt")
    torch.save({"weight": torch.randn(len(LABELS), DIM)}, folder / "classifier.ckpt")
    statistics = {"count": 10, "glob_mean": torch.randn(DIM), "glob_std": torch.ones(DIM)}
    torch.save(statistics, folder / "mean_var_norm_emb.ckpt")
    lines = [f"{label!r} => {index}" for index, label in enumerate(LABELS)]
    (folder / "label_encoder.txt").write_text("\n".join(lines) + "\n================\n'starting_index' => 0\n")
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_checkpoint(tmp_path_factory.mktemp("ecapa") / "spkrec-tiny")


@pytest.fixture(scope="module")
def extractor(checkpoint: Path, torch_one_thread: None) -> EcapaExtractor:
    built = build_extractor("ecapa", checkpoint=str(checkpoint))
    assert isinstance(built, EcapaExtractor)
    return built


def clip(seconds: float, frequency: float = 220.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * frequency * t) + 0.02 * rng.normal(size=t.size)).astype(np.float32)


def _features(result: Features | ItemRejected) -> Features:
    assert isinstance(result, Features), result
    return result


def _embed(extractor: EcapaExtractor, audios: list[np.ndarray]) -> list[Features]:
    return [_features(r) for r in extractor.extract([Item(id=str(i), audio=a) for i, a in enumerate(audios)], [])]


def test_registry_entry_and_spec(extractor: EcapaExtractor, checkpoint: Path) -> None:
    family = EXTRACTORS["ecapa"]
    assert family.presets == {"voxceleb": "speechbrain/spkrec-ecapa-voxceleb"}
    assert family.recommended_view == "stat=embedding,layer=last"
    spec = extractor.spec
    assert (spec.name, spec.preset, spec.modality, spec.sample_rate) == ("ecapa", "voxceleb", "audio", RATE)
    assert spec.pooled == {"embedding": (1, DIM)} and spec.seq_layers == {}
    assert not spec.supports_padding  # items of one length per batch: padding would change the convolutions
    assert spec.min_samples == 640  # reflection padding of the dilation-4 convolution needs 5 frames
    assert not extractor.model.training
    config = extractor.config()
    assert config["model"] == str(checkpoint) and config["embedding_norm"] is False
    assert config["compute_features"]["n_mels"] == 80 and config["mean_var_norm"]["std_norm"] is False
    assert config["embedding_model"]["channels"] == list(CHANNELS)
    upstream = extractor.upstream()
    assert upstream["dim"] == DIM and len(upstream["weights_sha256"]) == 64 and upstream["revision"] is None


def test_speechbrain_parameter_names() -> None:
    """The state-dict names of SpeechBrain's ECAPA_TDNN module tree (what embedding_model.ckpt holds)."""
    settings = EcapaSettings(input_size=80, channels=CHANNELS, attention_channels=8, se_channels=8)
    names = set(EcapaTdnn(settings).state_dict())
    for name in (
        "blocks.0.conv.conv.weight",
        "blocks.0.norm.norm.running_var",
        "blocks.1.tdnn1.conv.conv.weight",
        "blocks.1.res2net_block.blocks.6.conv.conv.bias",
        "blocks.3.se_block.conv2.conv.weight",
        "blocks.3.tdnn2.norm.norm.num_batches_tracked",
        "mfa.conv.conv.weight",
        "asp.tdnn.conv.conv.weight",
        "asp.conv.conv.bias",
        "asp_bn.norm.running_mean",
        "fc.conv.weight",
    ):
        assert name in names, name
    assert not any("shortcut" in name for name in names)  # equal channels: identity residuals
    assert len(names) == 231


def test_voxceleb_hyperparams_give_the_192_d_encoder() -> None:
    hp = parse_hyperparams(VOXCELEB_SETTINGS)
    assert hp.fbank.n_mels == 80 and hp.fbank.win_samples == 400 and hp.fbank.hop_samples == 160
    assert hp.fbank.n_fft == 400 and hp.fbank.f_max is None and hp.std_norm is False
    ecapa = hp.ecapa
    assert ecapa.channels == (1024, 1024, 1024, 1024, 3072) and ecapa.lin_neurons == 192
    assert (ecapa.attention_channels, ecapa.se_channels, ecapa.res2net_scale) == (128, 128, 8)
    assert ecapa.global_context and ecapa.kernel_sizes == (5, 3, 3, 3, 1) and ecapa.dilations == (1, 2, 3, 4, 1)
    encoder = SpeakerEncoder(hp.fbank, ecapa, std_norm=hp.std_norm).eval()
    assert sum(p.numel() for p in encoder.parameters()) == 20_767_552  # SpeechBrain's ECAPA_TDNN with these settings
    assert encoder.min_samples == 640


def _manifest(root: Path) -> tuple[Path, dict[str, float]]:
    tones = {"a": 1.0, "b": 1.0, "c": 0.7, "short": 0.03, "d": 1.3}
    rows = []
    for index, (uid, seconds) in enumerate(tones.items()):
        write_tone(root / f"{uid}.wav", seconds=seconds, frequency=180.0 + 70 * index)
        rows.append(Utterance(id=uid, audio=f"{uid}.wav"))
    write_tone(root / "stereo.wav", seconds=0.8, sample_rate=22050, channels=2, frequency=500.0)
    rows.append(Utterance(id="stereo", audio="stereo.wav"))
    manifest = root / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="tones", root=str(root)), rows)
    return manifest, tones


def test_ser_extract_writes_one_embedding_per_utterance(
    extractor: EcapaExtractor, checkpoint: Path, tmp_path: Path
) -> None:
    manifest, _ = _manifest(tmp_path / "corpus")
    out = tmp_path / "ecapa.h5"
    args = ["extract", "--model", "ecapa", "--checkpoint", str(checkpoint), "-m", str(manifest), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--no-progress", "--num-workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with CacheReader(out) as reader:
        ids = list(reader.ids)
        stored = reader.pooled("embedding", ids=ids)
        attrs = reader.attrs
        notes = dict(reader.notes)
        assert list(reader.layout.pooled) == ["embedding"] and not reader.layout.seq
    assert stored.shape == (6, 1, DIM) and stored.dtype == np.float32 and np.isfinite(stored).all()
    assert attrs["extractor"]["recommended_view"] == "stat=embedding,layer=last"
    assert attrs["extractor"]["config"]["embedding_model"]["lin_neurons"] == DIM
    assert attrs["upstream"]["weights_sha256"] == extractor.upstream()["weights_sha256"]
    assert set(notes) == {"short"} and "padded from 480 to 640 samples" in notes["short"]
    # each stored row is the extractor's output for that file alone (decoded as the runner does)
    from ser.extract.audio import load_audio

    for row, uid in zip(stored, ids, strict=True):
        audio = load_audio(tmp_path / "corpus" / f"{uid}.wav", sample_rate=RATE)
        [alone] = _embed(extractor, [audio])
        np.testing.assert_allclose(row, alone.pooled["embedding"], rtol=1e-5, atol=1e-6)
    assert len({tuple(np.round(r.ravel(), 4)) for r in stored}) == 6  # different tones, different vectors


def test_deterministic_and_batch_equals_single(extractor: EcapaExtractor) -> None:
    audios = [clip(1.0, 200, 1), clip(0.7, 300, 2), clip(1.0, 410, 3), clip(1.0, 520, 4)]
    batched = _embed(extractor, audios)
    again = _embed(extractor, audios)
    for first, second in zip(batched, again, strict=True):
        np.testing.assert_array_equal(first.pooled["embedding"], second.pooled["embedding"])
    for audio, together in zip(audios, batched, strict=True):
        [alone] = _embed(extractor, [audio])
        assert together.pooled["embedding"].shape == (1, DIM) and together.note is None
        np.testing.assert_allclose(together.pooled["embedding"], alone.pooled["embedding"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched[0].pooled["embedding"], batched[2].pooled["embedding"])


def test_short_audio_is_padded_to_the_minimum_and_noted(extractor: EcapaExtractor) -> None:
    [short, exact] = _embed(extractor, [clip(0.02), clip(640 / RATE)])
    assert short.note is not None and "padded from 320 to 640" in short.note
    assert exact.note is None
    with pytest.raises(ExtractorError, match="no sequences"):
        extractor.extract([Item(id="x", audio=clip(1.0))], ["embedding"])


def _speechbrain_classifier(checkpoint: Path, savedir: Path) -> Any:
    try:
        from speechbrain.inference.speaker import EncoderClassifier
    except Exception as err:  # ImportError, or torchaudio failing to load its library (OSError)
        pytest.skip(f"speechbrain is not importable here ({type(err).__name__}: {err})")
    return EncoderClassifier.from_hparams(
        source=str(checkpoint),
        savedir=str(savedir),
        overrides={"pretrained_path": str(checkpoint)},
        run_opts={"device": "cpu"},
    )


def test_equals_speechbrain_encode_batch(extractor: EcapaExtractor, checkpoint: Path, tmp_path: Path) -> None:
    """Exactly SpeechBrain's EncoderClassifier.encode_batch on the same checkpoint files (skipped without it)."""
    classifier = _speechbrain_classifier(checkpoint, tmp_path / "speechbrain")
    saved = torch.load(checkpoint / "embedding_model.ckpt", weights_only=True)
    loaded = classifier.mods.embedding_model.state_dict()
    assert set(loaded) == set(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)
    same_length = [clip(1.0, 220, 5), clip(1.0, 330, 6)]
    with torch.no_grad():
        reference = classifier.encode_batch(torch.from_numpy(np.stack(same_length)))
    assert reference.shape == (2, 1, DIM)
    ours = np.stack([f.pooled["embedding"] for f in _embed(extractor, same_length)])
    np.testing.assert_array_equal(ours, reference.numpy())
    single = clip(0.73, 440, 7)
    with torch.no_grad():
        reference_single = classifier.encode_batch(torch.from_numpy(single))
    np.testing.assert_array_equal(_embed(extractor, [single])[0].pooled["embedding"], reference_single[0].numpy())


def test_offline_hub_name_fails_fast_naming_the_checkpoint_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for kwargs in ({}, {"checkpoint": "ser-tests-nobody/no-such-ecapa"}):
        start = time.perf_counter()
        with pytest.raises(ExtractorError) as caught:
            build("voxceleb", **kwargs)
        assert time.perf_counter() - start < 5.0
        message = str(caught.value)
        assert "--checkpoint PATH" in message and "not in the Hugging Face cache" in message
        assert str(kwargs.get("checkpoint", "speechbrain/spkrec-ecapa-voxceleb")) in message
    # online but the hub does not answer: the same message after one quick probe
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ExtractorError, match="--checkpoint PATH"):
        build("voxceleb", checkpoint="ser-tests-nobody/no-such-ecapa")


def test_missing_model_through_the_cli_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    manifest, _ = _manifest(tmp_path / "corpus")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["extract", "--model", "ecapa", "--checkpoint", str(tmp_path / "no-such-folder"), "-m", str(manifest)]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "x.h5"), "--no-progress", "--num-workers", "0"])
    assert result.exit_code == 2, result.output
    assert "no such folder" in result.output and "--checkpoint" in result.output


def test_hub_cache_snapshot_is_used_and_its_commit_recorded(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    constants = pytest.importorskip("huggingface_hub.constants")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--speechbrain--spkrec-ecapa-voxceleb"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("hyperparams.yaml", "embedding_model.ckpt"):
        (snapshot / name).write_bytes((checkpoint / name).read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = build("voxceleb")
    assert cached.config()["model"] == "speechbrain/spkrec-ecapa-voxceleb"
    assert cached.upstream()["revision"] == commit
    local = build("voxceleb", checkpoint=str(checkpoint))
    assert cached.upstream()["weights_sha256"] == local.upstream()["weights_sha256"]
    [from_cache], [from_folder] = _embed(cached, [clip(0.5)]), _embed(local, [clip(0.5)])
    np.testing.assert_array_equal(from_cache.pooled["embedding"], from_folder.pooled["embedding"])


def test_bad_folders_are_named(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExtractorError, match=r"^--checkpoint .*no-such: no such folder"):
        build("voxceleb", checkpoint=str(tmp_path / "no-such"))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "hyperparams.yaml").write_text(TINY_HYPERPARAMS)
    with pytest.raises(ExtractorError, match=r"lacks embedding_model\.ckpt") as caught:
        build("voxceleb", checkpoint=str(partial))
    assert "label_encoder.txt" in str(caught.value) and "--checkpoint" in str(caught.value)
    with pytest.raises(ExtractorError, match="is a file"):
        build("voxceleb", checkpoint=str(checkpoint / "embedding_model.ckpt"))
    wider = _write_checkpoint(tmp_path / "wider")
    (wider / "hyperparams.yaml").write_text(TINY_HYPERPARAMS.replace("lin_neurons: 12", "lin_neurons: 16"))
    with pytest.raises(ExtractorError, match=r"does not match the ECAPA_TDNN of hyperparams\.yaml"):
        build("voxceleb", checkpoint=str(wider))
    garbage = _write_checkpoint(tmp_path / "garbage")
    (garbage / "embedding_model.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExtractorError, match="cannot load"):
        build("voxceleb", checkpoint=str(garbage))
    with pytest.raises(ExtractorError, match="unknown options"):
        build("voxceleb", checkpoint=str(checkpoint), normalize=True)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("norm_type: sentence", "norm_type: global", "'sentence' normalisation only"),
        ("    n_mels: !ref <n_mels>\n", "    n_mels: !ref <n_mels>\n    deltas: True\n", "deltas = True"),
        ("lin_neurons: 12", "lin_neurons: 12\n    activation: !name:torch.nn.LeakyReLU", "activation"),
        ("!new:speechbrain.lobes.features.Fbank", "!new:speechbrain.lobes.features.MFCC", "Fbank only"),
        ("input_size: !ref <n_mels>", "input_size: !ref <n_mfcc>", "names no key"),
        ("input_size: !ref <n_mels>", "input_size: 40", "differs from compute_features.n_mels"),
        ("kernel_sizes: [5, 3, 3, 3, 1]", "kernel_sizes: [5, 3, 3, 1]", "one entry per block"),
    ],
)
def test_settings_this_loader_does_not_implement_are_refused(old: str, new: str, message: str) -> None:
    assert old in TINY_HYPERPARAMS
    with pytest.raises(ExtractorError, match=message):
        parse_hyperparams(TINY_HYPERPARAMS.replace(old, new, 1))


def test_std_norm_divides_by_the_sentence_std() -> None:
    hp = parse_hyperparams(TINY_HYPERPARAMS.replace("std_norm: False", "std_norm: True"))
    assert hp.std_norm is True
    from ser.extract.ecapa_net import sentence_norm

    feats = torch.randn(2, 30, 4) * 3 + 1
    normed = sentence_norm(feats, std_norm=True)
    torch.testing.assert_close(normed.mean(dim=1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.std(dim=1, unbiased=False), torch.ones(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(sentence_norm(feats, std_norm=False), feats - feats.mean(dim=1, keepdim=True))
