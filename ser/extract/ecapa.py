"""ECAPA-TDNN speaker embeddings from a SpeechBrain checkpoint (``speechbrain/spkrec-ecapa-voxceleb``).

One pooled statistic per utterance: ``embedding``, (1, lin_neurons) = (1, 192) for the voxceleb
checkpoint, which is what SpeechBrain's ``EncoderClassifier.encode_batch`` returns for 16 kHz audio
(Fbank -> sentence mean normalisation -> ECAPA-TDNN, see ``ser.extract.ecapa_net``). There are no
sequences. The embedding normalisation ``mean_var_norm_emb`` is not applied, as in ``encode_batch``'s
default (``normalize=False``), which is what the SER-Fuse code called.

Loading. SpeechBrain itself is not needed: the checkpoint folder's ``hyperparams.yaml`` is read for the
settings of the three modules (``compute_features``, ``mean_var_norm``, ``embedding_model``; other keys
are ignored) and ``embedding_model.ckpt`` is loaded into ``ser.extract.ecapa_net.EcapaTdnn`` with
``torch.load(weights_only=True)`` and a strict parameter-name match. ``--checkpoint`` is the folder a user
downloads (``hyperparams.yaml``, ``embedding_model.ckpt``, ``mean_var_norm_emb.ckpt``, ``classifier.ckpt``,
``label_encoder.txt``; only the first two are read); without it the preset's hub id is read from the
Hugging Face cache, downloading only when the hub answers. Offline with neither, the build fails within
seconds naming ``--checkpoint``.

Settings this loader does not implement (another feature type, deltas or context windows, global
input normalisation, a non-ReLU activation) are refused, naming the key, rather than silently computed
differently.

Padding: items are computed at their own length (only items of identical length share a batch), because
SpeechBrain's convolutions see padded frames; audio shorter than the convolutions' reach (5 frames, 640
samples for the voxceleb checkpoint) is zero-padded to it and noted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ser.devices import resolve_device
from ser.extract.audio import pad_to_minimum
from ser.extract.base import ExtractorError, ExtractorSpec, Features, Item, ItemRejected, file_sha256, require
from ser.extract.ecapa_net import EcapaSettings, FbankSettings, SpeakerEncoder, as_int_tuple
from ser.extract.hf import _offline_hint, hub_reachable, looks_like_path
from ser.extract.options import coerce_options
from ser.extract.registry import extractor_family, extractor_preset

logger = logging.getLogger(__name__)

HYPERPARAMS = "hyperparams.yaml"
WEIGHTS = "embedding_model.ckpt"
READ_FILES = (HYPERPARAMS, WEIGHTS)
"""The checkpoint files this extractor reads."""
FOLDER_FILES = (HYPERPARAMS, WEIGHTS, "mean_var_norm_emb.ckpt", "classifier.ckpt", "label_encoder.txt")
"""What a downloaded SpeechBrain speaker-recognition folder holds (named in error messages)."""
STAT = "embedding"

FBANK_CLASS = "speechbrain.lobes.features.Fbank"
NORM_CLASS = "speechbrain.processing.features.InputNormalization"
ECAPA_CLASS = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"

_FBANK_KEYS = {"sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max"}
_FBANK_FIXED: dict[str, Any] = {
    "deltas": False,
    "context": False,
    "requires_grad": False,
    "filter_shape": "triangular",
}
"""Fbank arguments this loader implements only at these (SpeechBrain's default) values."""
_FBANK_IGNORED = {"left_frames", "right_frames", "param_change_factor", "param_rand_factor"}
"""Fbank arguments without effect at inference with the fixed values above (context off, frozen filters)."""
_NORM_IGNORED = {"update_until_epoch", "avoid_padding_norm", "mean_norm"}
_ECAPA_KEYS = {
    "input_size",
    "lin_neurons",
    "channels",
    "kernel_sizes",
    "dilations",
    "attention_channels",
    "res2net_scale",
    "se_channels",
    "global_context",
    "groups",
}
_ECAPA_IGNORED = {"device", "dropout"}
"""ECAPA_TDNN arguments without effect here (dropout is off in eval mode)."""


# ---------------------------------------------------------------------------- hyperparams.yaml


@dataclass(frozen=True)
class _Tagged:
    """A HyperPyYAML ``!new:`` / ``!name:`` / ``!apply:`` node: the tag and its arguments."""

    tag: str
    args: Any


@dataclass(frozen=True)
class _Ref:
    """A HyperPyYAML ``!ref`` / ``!copy`` node: text with ``<key>`` references."""

    text: str


def _yaml_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """Safe YAML that keeps HyperPyYAML tags as data instead of instantiating anything."""

    def tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tagged:
        if isinstance(node, yaml.MappingNode):
            return _Tagged(suffix, loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return _Tagged(suffix, loader.construct_sequence(node, deep=True))
        return _Tagged(suffix, loader.construct_scalar(node))  # type: ignore[arg-type]

    def reference(loader: yaml.SafeLoader, node: yaml.Node) -> _Ref:
        return _Ref(str(loader.construct_scalar(node)))  # type: ignore[arg-type]

    def prefixed(prefix: str) -> Any:
        return lambda loader, suffix, node: tagged(loader, prefix + suffix, node)

    for prefix in ("!new:", "!name:", "!apply:", "!"):  # the first prefix that matches wins
        Loader.add_multi_constructor(prefix, prefixed(prefix))
    Loader.add_constructor("!ref", reference)
    Loader.add_constructor("!copy", reference)
    return Loader


_REF = re.compile(r"<([^<>]+)>")


def _resolve(value: Any, top: Mapping[str, Any], depth: int = 0) -> Any:
    """``value`` with every ``!ref <key>`` replaced by the top-level value it names (recursively)."""
    if depth > 20:
        raise ExtractorError("hyperparams.yaml: !ref chain too deep (a cycle?)")
    if isinstance(value, _Ref):
        whole = _REF.fullmatch(value.text.strip())
        if whole:
            return _resolve(_lookup(top, whole.group(1)), top, depth + 1)
        return _REF.sub(lambda m: str(_resolve(_lookup(top, m.group(1)), top, depth + 1)), value.text)
    if isinstance(value, dict):
        return {k: _resolve(v, top, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, top, depth) for v in value]
    return value


def _lookup(top: Mapping[str, Any], key: str) -> Any:
    node: Any = top
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ExtractorError(f"hyperparams.yaml: !ref <{key}> names no key of the file")
        node = node[part]
    return node


@dataclass(frozen=True)
class EcapaHyperparams:
    """The module settings read from a checkpoint's ``hyperparams.yaml``."""

    fbank: FbankSettings
    """The filterbank front end's settings."""
    std_norm: bool
    """Whether the per-utterance normalisation also divides by the standard deviation."""
    epsilon: float
    """Floor of the normalising standard deviation."""
    ecapa: EcapaSettings
    """The ECAPA-TDNN network's settings."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings (recorded in the store's config)."""
        from dataclasses import asdict

        return {
            "compute_features": asdict(self.fbank),
            "mean_var_norm": {"norm_type": "sentence", "std_norm": self.std_norm, "epsilon": self.epsilon},
            "embedding_model": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.ecapa).items()},
        }


def _module(top: Mapping[str, Any], key: str, expected: str, ignored: set[str]) -> dict[str, Any]:
    if key not in top:
        raise ExtractorError(
            f"hyperparams.yaml has no {key!r}; an ECAPA speaker-embedding checkpoint (EncoderClassifier) "
            "defines compute_features, mean_var_norm and embedding_model"
        )
    node = top[key]
    if not isinstance(node, _Tagged) or node.tag != expected:
        found = node.tag if isinstance(node, _Tagged) else type(node).__name__
        raise ExtractorError(f"hyperparams.yaml: {key} is {found}, but this extractor implements {expected} only")
    args = node.args if node.args not in (None, "") else {}
    if not isinstance(args, dict):
        raise ExtractorError(f"hyperparams.yaml: {key} must be given keyword arguments, not {args!r}")
    # references are resolved only for the arguments that are read (``device: !ref <device>`` may dangle)
    return {name: value if name in ignored else _resolve(value, top) for name, value in args.items()}


def _unknown(key: str, args: Mapping[str, Any], known: set[str]) -> None:
    extra = sorted(set(args) - known)
    if extra:
        raise ExtractorError(
            f"hyperparams.yaml: {key} sets {', '.join(extra)}, which this extractor does not implement; "
            f"it reads {', '.join(sorted(known))}"
        )


def _typed(key: str, name: str, value: Any, kind: type) -> Any:
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        wanted = {bool: "true or false", int: "an integer"}.get(kind, "a number")
        raise ExtractorError(f"hyperparams.yaml: {key}.{name} = {value!r} is not {wanted}") from None


def parse_hyperparams(text: str) -> EcapaHyperparams:
    """Settings of ``compute_features``, ``mean_var_norm`` and ``embedding_model`` in a SpeechBrain
    ``hyperparams.yaml`` (HyperPyYAML tags are read as data; nothing is imported or instantiated)."""
    import yaml

    try:
        top = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: constructs data only
    except yaml.YAMLError as err:
        raise ExtractorError(f"hyperparams.yaml is not valid YAML ({err})") from err
    if not isinstance(top, dict):
        raise ExtractorError("hyperparams.yaml does not hold a mapping of hyperparameters")

    fbank_args = _module(top, "compute_features", "!new:" + FBANK_CLASS, _FBANK_IGNORED)
    _unknown("compute_features", fbank_args, _FBANK_KEYS | set(_FBANK_FIXED) | _FBANK_IGNORED)
    for name, fixed in _FBANK_FIXED.items():
        if name in fbank_args and fbank_args[name] != fixed:
            raise ExtractorError(
                f"hyperparams.yaml: compute_features.{name} = {fbank_args[name]!r}; this extractor implements "
                f"{name} = {fixed!r} only"
            )
    kinds = {"sample_rate": int, "n_fft": int, "n_mels": int, "win_length": float, "hop_length": float}
    kinds.update({"f_min": float, "f_max": float})
    fbank_settings: dict[str, Any] = {
        name: None if value is None and name == "f_max" else _typed("compute_features", name, value, kinds[name])
        for name, value in fbank_args.items()
        if name in _FBANK_KEYS
    }
    fbank = FbankSettings(**fbank_settings)

    norm_args = _module(top, "mean_var_norm", "!new:" + NORM_CLASS, _NORM_IGNORED)
    _unknown("mean_var_norm", norm_args, {"norm_type", "std_norm", "epsilon"} | _NORM_IGNORED)
    norm_type = norm_args.get("norm_type", "global")
    if norm_type != "sentence":
        raise ExtractorError(
            f"hyperparams.yaml: mean_var_norm.norm_type = {norm_type!r}; this extractor implements "
            "'sentence' normalisation only"
        )
    if norm_args.get("mean_norm", True) is not True:
        raise ExtractorError("hyperparams.yaml: mean_var_norm.mean_norm must be true")
    std_norm = _typed("mean_var_norm", "std_norm", norm_args.get("std_norm", True), bool)
    epsilon = _typed("mean_var_norm", "epsilon", norm_args.get("epsilon", 1e-10), float)

    ecapa_args = _module(top, "embedding_model", "!new:" + ECAPA_CLASS, _ECAPA_IGNORED)
    _unknown("embedding_model", ecapa_args, _ECAPA_KEYS | _ECAPA_IGNORED)
    if "input_size" not in ecapa_args:
        raise ExtractorError("hyperparams.yaml: embedding_model.input_size is not set")
    settings: dict[str, Any] = {}
    for name, value in ecapa_args.items():
        if name in ("channels", "kernel_sizes", "dilations", "groups"):
            try:
                settings[name] = as_int_tuple(value, f"embedding_model.{name}")
            except (TypeError, ValueError) as err:
                raise ExtractorError(f"hyperparams.yaml: {err}") from None
        elif name == "global_context":
            settings[name] = _typed("embedding_model", name, value, bool)
        elif name in _ECAPA_KEYS:
            settings[name] = _typed("embedding_model", name, value, int)
    try:
        ecapa = EcapaSettings(**settings)
    except ValueError as err:
        raise ExtractorError(f"hyperparams.yaml: embedding_model: {err}") from None
    if ecapa.input_size != fbank.n_mels:
        raise ExtractorError(
            f"hyperparams.yaml: embedding_model.input_size {ecapa.input_size} differs from "
            f"compute_features.n_mels {fbank.n_mels}"
        )
    return EcapaHyperparams(fbank=fbank, std_norm=std_norm, epsilon=epsilon, ecapa=ecapa)


# ---------------------------------------------------------------------------- locating the files


_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _missing_files_message(folder: Path, missing: Sequence[str]) -> str:
    return (
        f"{folder} is not a SpeechBrain ECAPA checkpoint folder: it lacks {', '.join(missing)}. A download of "
        f"speechbrain/spkrec-ecapa-voxceleb holds {', '.join(FOLDER_FILES)}; point --checkpoint at that folder"
    )


def locate_files(model: str, revision: str | None) -> tuple[dict[str, Path], str | None]:
    """``({file name: path}, resolved commit or None)`` for a local folder or a hub id (see module doc)."""
    local = Path(model).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ExtractorError(
                f"--checkpoint {model} is a file; point --checkpoint at the folder holding {' and '.join(READ_FILES)}"
            )
        missing = [name for name in READ_FILES if not (local / name).is_file()]
        if missing:
            raise ExtractorError(_missing_files_message(local, missing))
        return {name: local / name for name in READ_FILES}, None
    if looks_like_path(model):
        raise ExtractorError(
            f"--checkpoint {model}: no such folder ({local.absolute()} does not exist); point --checkpoint at "
            f"the folder holding {' and '.join(READ_FILES)}, or give a hub id as owner/name"
        )
    hub = require("huggingface_hub", "ecapa")

    def fetch(local_only: bool) -> dict[str, Path]:
        return {
            name: Path(hub.hf_hub_download(model, name, revision=revision, local_files_only=local_only))
            for name in READ_FILES
        }

    try:
        paths = fetch(True)
    except (OSError, ValueError) as cached_error:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        if offline or not hub_reachable():
            raise ExtractorError(_offline_hint(model)) from cached_error
        logger.info("downloading %s from the hub", model)
        try:
            paths = fetch(False)
        except (OSError, ValueError) as err:
            raise ExtractorError(
                f"cannot load {model!r} from the hub ({err}); pass a local copy with --checkpoint PATH"
            ) from err
    snapshot = paths[HYPERPARAMS].parent.name
    return paths, snapshot if _COMMIT.match(snapshot) else None


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save`` (tensors only: ``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ExtractorError(f"cannot load {path} as a tensor file ({err})") from err
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExtractorError(f"{path} is not a state dict of tensors")
    return dict(state)


# ---------------------------------------------------------------------------- the extractor


@dataclass(kw_only=True)
class EcapaConfig:
    """Settings of the ECAPA extractor."""

    preset: str = "voxceleb"
    """The preset name (``voxceleb``)."""
    model: str
    """Hub id or local folder of the SpeechBrain checkpoint."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to read; ignored for a local folder."""


class EcapaExtractor:
    """One ECAPA-TDNN speaker embedding per utterance; see the module docstring."""

    def __init__(self, config: EcapaConfig, *, device: str = "cpu") -> None:
        self.cfg = config
        self.device = torch.device(resolve_device(device))
        self.paths, self.commit = locate_files(config.model, config.revision)
        hyperparams_text = self.paths[HYPERPARAMS].read_text(encoding="utf-8")
        self.hyperparams = parse_hyperparams(hyperparams_text)
        hp = self.hyperparams
        self.model = SpeakerEncoder(hp.fbank, hp.ecapa, std_norm=hp.std_norm, epsilon=hp.epsilon)
        state = load_state(self.paths[WEIGHTS])
        try:
            result = self.model.embedding_model.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shapes that differ from hyperparams.yaml's
            raise ExtractorError(
                f"{self.paths[WEIGHTS]} does not match the ECAPA_TDNN of hyperparams.yaml ({err})"
            ) from err
        # a state dict from before BatchNorm counted batches lacks num_batches_tracked, which inference never reads
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            problems = []
            if missing:
                problems.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
            if result.unexpected_keys:
                unexpected = result.unexpected_keys
                problems.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
            raise ExtractorError(
                f"{self.paths[WEIGHTS]} does not match the ECAPA_TDNN of hyperparams.yaml ({'; '.join(problems)})"
            )
        self.model.eval().to(self.device)
        self.weights_sha256 = hashlib.sha256(
            (file_sha256(self.paths[HYPERPARAMS]) + file_sha256(self.paths[WEIGHTS])).encode()
        ).hexdigest()
        self.dim = hp.ecapa.lin_neurons
        self.sample_rate = hp.fbank.sample_rate
        self.spec = ExtractorSpec(
            name="ecapa",
            preset=config.preset,
            modality="audio",
            pooled={STAT: (1, self.dim)},
            seq_layers={},
            sample_rate=self.sample_rate,
            frame_rate=None,
            min_samples=self.model.min_samples,
            supports_padding=False,
        )

    def config(self) -> dict[str, Any]:
        """Everything that changes the features (hashed into the store)."""
        return {
            "preset": self.cfg.preset,
            "model": self.cfg.model,
            "revision": self.cfg.revision,
            "dtype": "float32",
            "sample_rate": self.sample_rate,
            "min_samples": self.spec.min_samples,
            "embedding_norm": False,
            **self.hyperparams.describe(),
        }

    def upstream(self) -> dict[str, Any]:
        """Provenance: what was loaded, from where."""
        return {
            "model": self.cfg.model,
            "class": "speechbrain ECAPA_TDNN (EncoderClassifier.encode_batch)",
            "revision": self.commit or self.cfg.revision,
            "files": {name: str(path) for name, path in self.paths.items()},
            "weights_sha256": self.weights_sha256,
            "sample_rate": self.sample_rate,
            "dim": self.dim,
            "dtype": "float32",
            "device": str(self.device),
        }

    def embed(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 embeddings of audio clips of one length (no padding)."""
        batch = torch.from_numpy(np.stack([np.asarray(a, dtype=np.float32) for a in audios])).to(self.device)
        with torch.inference_mode():
            return self.model(batch).float().cpu().numpy()

    def extract(self, items: Sequence[Item], seq_layers: Sequence[str]) -> list[Features | ItemRejected]:
        """Per item the pooled ``embedding`` (1, dim); items of equal length are computed together."""
        if seq_layers:
            raise ExtractorError(f"ecapa stores no sequences (asked for {', '.join(seq_layers)}); use --seq none")
        prepared: list[np.ndarray] = []
        notes: list[str | None] = []
        for item in items:
            if item.audio is None:
                raise ExtractorError(f"{item.id}: audio extractors need audio")
            audio, note = pad_to_minimum(np.asarray(item.audio, dtype=np.float32), self.spec.min_samples)
            prepared.append(audio)
            notes.append(note)
        by_length: dict[int, list[int]] = {}
        for index, audio in enumerate(prepared):
            by_length.setdefault(audio.size, []).append(index)
        embeddings: list[np.ndarray | None] = [None] * len(items)
        for group in by_length.values():
            for index, vector in zip(group, self.embed([prepared[i] for i in group]), strict=True):
                embeddings[index] = vector
        results: list[Features | ItemRejected] = []
        for vector, note in zip(embeddings, notes, strict=True):
            assert vector is not None
            results.append(Features(pooled={STAT: vector[None, :].copy()}, note=note))
        return results


def build(
    preset: str = "voxceleb",
    *,
    checkpoint: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    **options: Any,
) -> EcapaExtractor:
    """ECAPA-TDNN extractor; ``checkpoint`` (a SpeechBrain folder or hub id) replaces the preset's; option
    ``revision``."""
    extractor_preset("ecapa", preset)
    settings = coerce_options("ecapa", EcapaConfig, options, allowed={"revision"})
    if dtype != "float32":
        logger.info("ecapa computes in float32 (--dtype %s ignored)", dtype)
    config = EcapaConfig(preset=preset, model=checkpoint or extractor_family("ecapa").presets[preset], **settings)
    return EcapaExtractor(config, device=device)
