"""Waveform augmentation (extra training rows) and corruption (noisy evaluation copies) at extraction.

**Augmentation policies** are YAML, one transform chain per class (class-differentiated, as the
Copenhagen project) plus a default::

    seed: 0
    label_set: iemocap4          # classes are named by this label set (default: the manifest's)
    default:                     # classes without their own chain (omit: no copies for them)
      copies: 1
      chain:
        - pitch_shift: {semitones: [-2, 2]}
        - time_stretch: {rate: [0.9, 1.1]}
        - noise: {color: white, snr_db: [25, 35]}
    classes:
      hap: {copies: 2, chain: [{pitch_shift: {semitones: [-4, 4]}}, {time_stretch: {rate: [1.1, 1.3]}}]}
      sad: {chain: [{time_stretch: {rate: [0.7, 0.9]}}, {pitch_shift: {semitones: [-4, -2]}}]}
      neu: {chain: [{reverb: {rt60: [0.2, 0.5]}, p: 0.5}, {noise: {folder: musan/noise, snr_db: [10, 20]}}]}

Transforms: ``pitch_shift`` (semitones), ``time_stretch`` (rate; the length changes), ``noise``
(``color`` white/pink/brown/blue/violet, or ``folder`` of noise files such as MUSAN; ``snr_db``),
``reverb`` (``rt60`` seconds of a synthetic exponentially decaying room response, or ``ir_folder``
of measured impulse responses) and ``gain`` (``db``). A range ``[lo, hi]`` is drawn uniformly per
copy, a number is fixed; ``p`` is the chance a transform is applied. The implementations are
audiomentations' (pitch shift and time stretch with signalsmith-stretch, coloured and
background noise at an RMS signal-to-noise ratio), except the synthetic reverb.

Each copy of an utterance becomes its own cache row, ``<id>@aug<k>``, linked to its source
([`source_of`][ser.cache.format.source_of]); ``ser fit`` adds copies of TRAINING rows only, never of validation or test
rows. Every copy is seeded from (policy seed, utterance id, copy number), so the same policy gives
the same audio whatever the order, worker or resume.

**Corruption** (``--corrupt white@10dB``, FleSER's test-time noise) replaces every row by a
corrupted version instead: ``white|pink|brown|blue|violet@SNRdB``, ``PATH@SNRdB`` (noise files
from a folder) or ``reverb@RT60s``; use it to extract evaluation copies of a corpus.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser.cache.format import AUG_SEPARATOR, augmented_id, source_of
from ser.errors import UserError
from ser.manifests.schema import Utterance
from ser.yaml_files import read_yaml

COLORS = ("white", "pink", "brown", "blue", "violet")
KINDS = {"pitch_shift": ("semitones",), "time_stretch": ("rate",), "noise": ("snr_db",), "reverb": (), "gain": ("db",)}
"""Transform name -> the range parameters it must have."""
OPTIONAL = {"noise": ("color", "folder"), "reverb": ("rt60", "ir_folder")}

__all__ = ["AUG_SEPARATOR", "augmented_id", "source_of"]  # re-exported: the row-id convention lives in ser.cache


class AugmentError(UserError):
    """A malformed augmentation policy or corruption spec."""


@dataclass(frozen=True)
class Transform:
    """One step of a chain: a kind, its parameters (ranges as (lo, hi)) and its probability."""

    kind: str
    """``pitch_shift``, ``time_stretch``, ``noise``, ``reverb`` or ``gain``."""
    params: dict[str, Any]
    """Parameter -> a fixed value or a ``(lo, hi)`` range drawn uniformly per copy."""
    p: float = 1.0
    """Chance that the transform is applied to a copy."""


@dataclass(frozen=True)
class Chain:
    """The transforms applied, in order, to make each of ``copies`` copies."""

    transforms: tuple[Transform, ...]
    """The transforms, applied in order."""
    copies: int = 1
    """Augmented copies made of each row of the class."""


@dataclass(frozen=True)
class AugmentPolicy:
    """Per-class chains plus a default (see the module docstring)."""

    seed: int = 0
    """Seed of every draw (with the utterance id and copy number)."""
    label_set: str | None = None
    """The label set whose classes ``classes`` names (None: the manifest's)."""
    default: Chain | None = None
    """The chain of classes without their own (None: no copies of them)."""
    classes: dict[str, Chain] = field(default_factory=dict)
    """Class name -> its own chain."""
    source: str = field(default="augmentation policy", compare=False)
    """Where the policy was read from, for messages (not part of the policy: ``to_dict`` leaves it out)."""

    def chain_for(self, label: str | None) -> Chain | None:
        if label is not None and label in self.classes:
            return self.classes[label]
        return self.default

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        del record["source"]  # the same policy read from another path is the same policy (same config hash)
        return record

    def transforms(self) -> list[Transform]:
        """Every transform of every chain (the default's, then each class's)."""
        chains = ([self.default] if self.default is not None else []) + list(self.classes.values())
        return [transform for chain in chains for transform in chain.transforms]

    def check_classes(self, known: Sequence[str], label_set: str | None) -> None:
        """Refuse class chains named after no class of the label set the rows are classed by (a
        misspelt class would silently get the default chain instead of its own)."""
        unknown = [name for name in self.classes if name not in known]
        if unknown:
            where = f"label set {label_set}" if label_set else "the manifest's labels"
            raise AugmentError(
                f"{self.source}: class {unknown[0]!r} is not a class of {where} ({', '.join(known)}); "
                "name classes as the label set does"
            )


def noise_folders(transforms: Sequence[Transform]) -> list[str]:
    """The resolved folders of noise recordings that ``transforms`` mix in (sorted, no repeats): what
    a store records so that ``ser fit`` can tell training and test noise apart."""
    return sorted({str(Path(t.params["folder"]).resolve()) for t in transforms if "folder" in t.params})


def _range(value: Any, where: str) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            raise AugmentError(f"{where}: range [{lo}, {hi}] is reversed; write [low, high]")
        return lo, hi
    raise AugmentError(f"{where}: expected a number or a [low, high] range, got {value!r}")


def parse_transform(entry: Any, where: str) -> Transform:
    """``{kind: {param: value, ...}, p: 0.5}`` -> [`Transform`][ser.extract.augment.Transform] (every value checked)."""
    if not isinstance(entry, dict):
        raise AugmentError(f"{where}: a transform is a mapping like {{pitch_shift: {{semitones: [-2, 2]}}}}")
    entry = dict(entry)
    p = entry.pop("p", 1.0)
    if len(entry) != 1:
        raise AugmentError(f"{where}: one transform per list item, got {sorted(entry)}")
    ((kind, raw),) = entry.items()
    if kind not in KINDS:
        raise AugmentError(f"{where}: unknown transform {kind!r}; choose from {', '.join(KINDS)}")
    if not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise AugmentError(f"{where}: p must be a probability in [0, 1], got {p!r}")
    raw = raw or {}
    if not isinstance(raw, dict):
        raise AugmentError(f"{where}: {kind} takes a mapping of parameters")
    allowed = set(KINDS[kind]) | set(OPTIONAL.get(kind, ()))
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise AugmentError(f"{where}: {kind} has no parameters {unknown}; it takes {sorted(allowed)}")
    params: dict[str, Any] = {}
    for name in KINDS[kind]:
        if name not in raw:
            raise AugmentError(f"{where}: {kind} needs {name}")
        params[name] = _range(raw[name], f"{where} {kind}.{name}")
    if kind == "time_stretch" and params["rate"][0] <= 0:
        raise AugmentError(f"{where}: time_stretch rates must be positive")
    if kind == "noise":
        if ("color" in raw) == ("folder" in raw):
            raise AugmentError(f"{where}: noise needs exactly one of color ({'/'.join(COLORS)}) or folder")
        if "color" in raw and raw["color"] not in COLORS:
            raise AugmentError(f"{where}: noise color must be one of {', '.join(COLORS)}, not {raw['color']!r}")
        params.update({k: str(raw[k]) for k in ("color", "folder") if k in raw})
    if kind == "reverb":
        if ("rt60" in raw) == ("ir_folder" in raw):
            raise AugmentError(f"{where}: reverb needs exactly one of rt60 (seconds) or ir_folder")
        if "rt60" in raw:
            params["rt60"] = _range(raw["rt60"], f"{where} reverb.rt60")
            if params["rt60"][0] <= 0:
                raise AugmentError(f"{where}: reverb rt60 must be positive seconds")
        else:
            params["ir_folder"] = str(raw["ir_folder"])
    for folder_key in ("folder", "ir_folder"):
        if folder_key in params and not Path(params[folder_key]).is_dir():
            raise AugmentError(f"{where}: {kind}.{folder_key} {params[folder_key]} is not a folder")
    return Transform(kind=kind, params=params, p=float(p))


def _parse_chain(record: Any, where: str) -> Chain:
    if isinstance(record, list):
        record = {"chain": record}
    if not isinstance(record, dict) or "chain" not in record:
        raise AugmentError(f"{where}: expected {{copies: N, chain: [transforms]}} or a list of transforms")
    unknown = sorted(set(record) - {"chain", "copies"})
    if unknown:
        raise AugmentError(f"{where}: unknown keys {unknown}; a class entry has copies and chain")
    copies = record.get("copies", 1)
    if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
        raise AugmentError(f"{where}: copies must be a positive integer, got {copies!r}")
    chain = record["chain"]
    if not isinstance(chain, list) or not chain:
        raise AugmentError(f"{where}: chain must be a non-empty list of transforms")
    return Chain(tuple(parse_transform(t, f"{where} item {i}") for i, t in enumerate(chain)), copies)


def parse_policy(record: Any, source: str = "policy") -> AugmentPolicy:
    if not isinstance(record, dict):
        raise AugmentError(f"{source}: an augmentation policy is a mapping (seed, label_set, default, classes)")
    unknown = sorted(set(record) - {"seed", "label_set", "default", "classes"})
    if unknown:
        raise AugmentError(f"{source}: unknown keys {unknown}; a policy has seed, label_set, default, classes")
    seed = record.get("seed", 0)
    if not isinstance(seed, int):
        raise AugmentError(f"{source}: seed must be an integer")
    classes = record.get("classes") or {}
    if not isinstance(classes, dict):
        raise AugmentError(f"{source}: classes maps a class name to its chain")
    default = record.get("default")
    policy = AugmentPolicy(
        seed=seed,
        label_set=record.get("label_set"),
        default=None if default is None else _parse_chain(default, f"{source} default"),
        classes={str(k): _parse_chain(v, f"{source} class {k}") for k, v in classes.items()},
        source=source,
    )
    if policy.default is None and not policy.classes:
        raise AugmentError(f"{source}: the policy augments nothing; give a default chain or class chains")
    return policy


def load_policy(path: Path) -> AugmentPolicy:
    return parse_policy(read_yaml(path, "augmentation policy", AugmentError), str(path))


CORRUPTION = re.compile(r"^(?P<kind>.+)@(?P<value>-?\d+(?:\.\d+)?)(?P<unit>dB|db|s)$")


def parse_corruption(spec: str) -> Transform:
    """``white@10dB`` / ``pink@0dB`` / ``PATH@5dB`` (noise files) / ``reverb@0.6s`` -> a fixed transform."""
    match = CORRUPTION.match(spec.strip())
    if match is None:
        raise AugmentError(
            f"--corrupt {spec!r}: write NOISE@SNRdB (white, pink, brown, blue, violet or a folder of "
            "noise files, e.g. white@10dB) or reverb@RT60s (e.g. reverb@0.5s)"
        )
    kind, value, unit = match["kind"], float(match["value"]), match["unit"].lower()
    if kind == "reverb":
        if unit != "s" or value <= 0:
            raise AugmentError(f"--corrupt {spec!r}: reverb takes a positive RT60 in seconds, e.g. reverb@0.5s")
        return parse_transform({"reverb": {"rt60": value}}, f"--corrupt {spec}")
    if unit != "db":
        raise AugmentError(f"--corrupt {spec!r}: noise takes an SNR in dB, e.g. {kind}@10dB")
    noise = {"color": kind} if kind in COLORS else {"folder": kind}
    return parse_transform({"noise": {**noise, "snr_db": value}}, f"--corrupt {spec}")


def describe_corruption(transform: Transform) -> dict[str, Any]:
    """{"type": ..., "snr_db"/"rt60": ...} for provenance and reports."""
    if transform.kind == "reverb":
        return {"type": "reverb", "rt60": transform.params["rt60"][0]}
    noise = transform.params.get("color") or Path(transform.params["folder"]).name
    return {"type": noise, "snr_db": transform.params["snr_db"][0]}


# ---------------------------------------------------------------------------------------- applying


def row_seed(seed: int, row_id: str, copy: int) -> int:
    """A 32-bit seed from (policy seed, row id, copy): independent of order, worker and resume."""
    digest = hashlib.sha256(f"{seed}\x00{row_id}\x00{copy}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def synthetic_room_response(rt60: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) impulse response: a unit direct path then Gaussian noise decaying by 60 dB over ``rt60`` s."""
    length = max(2, int(1.5 * rt60 * rate))
    t = np.arange(length) / rate
    tail = rng.standard_normal(length) * np.exp(-np.log(1000.0) * t / rt60)
    tail[0] = 0.0
    tail *= 0.5 / max(np.sqrt(np.sum(tail**2)), 1e-12)  # the reverberant tail at -6 dB of the direct path
    tail[0] = 1.0
    return tail.astype(np.float32)


def _reverb(samples: np.ndarray, rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import fftconvolve

    wet = fftconvolve(samples, synthetic_room_response(rt60, rate, rng))[: len(samples)]
    scale = np.sqrt(np.mean(samples**2) / max(float(np.mean(wet**2)), 1e-20))
    return (wet * scale).astype(np.float32)


_BUILT: dict[str, Any] = {}


def _audiomentation(transform: Transform) -> Any:
    """The audiomentations object for a transform (built once per process; always applied, ``p`` is
    drawn by the caller)."""
    key = json.dumps(asdict(transform), sort_keys=True)
    if key not in _BUILT:
        _BUILT[key] = _build_audiomentation(transform)
    return _BUILT[key]


def _build_audiomentation(transform: Transform) -> Any:
    try:
        import audiomentations as am
    except ImportError as err:
        raise UserError("waveform augmentation needs audiomentations: pip install 'serkit[augment]'") from err
    params = transform.params
    if transform.kind == "pitch_shift":
        lo, hi = params["semitones"]
        return am.PitchShift(min_semitones=lo, max_semitones=hi, p=1.0)
    if transform.kind == "time_stretch":
        lo, hi = params["rate"]
        return am.TimeStretch(min_rate=lo, max_rate=hi, leave_length_unchanged=False, p=1.0)
    if transform.kind == "gain":
        lo, hi = params["db"]
        return am.Gain(min_gain_db=lo, max_gain_db=hi, p=1.0)
    if transform.kind == "noise":
        lo, hi = params["snr_db"]
        if "folder" in params:
            return am.AddBackgroundNoise(sounds_path=params["folder"], min_snr_db=lo, max_snr_db=hi, p=1.0)
        decay = float(am.NOISE_COLOR_DECAYS[params["color"]])
        return am.AddColorNoise(min_snr_db=lo, max_snr_db=hi, min_f_decay=decay, max_f_decay=decay, p=1.0)
    if transform.kind == "reverb" and "ir_folder" in params:
        return am.ApplyImpulseResponse(ir_path=params["ir_folder"], p=1.0)
    raise AssertionError(transform.kind)


Plan = dict[str, tuple[tuple[Transform, ...], int]]
"""Row id -> (transforms, seed) for the rows whose audio is transformed before feature extraction."""


def augmented_rows(
    rows: list[Utterance],
    policy: AugmentPolicy,
    class_of: Any,
    *,
    splits: tuple[str, ...] = (),
    classes: Sequence[str] | None = None,
    label_set: str | None = None,
) -> tuple[list[Utterance], Plan]:
    """The extra rows a policy makes (``<id>@aug<k>``: the source row's audio, text and labels) and
    their transforms. ``class_of(row)`` names a row's class for the policy; with ``splits`` only rows
    of those official splits are augmented. ``classes`` (those of ``label_set``, or the manifest's
    labels) are the names the policy's class chains must use (see
    [`AugmentPolicy.check_classes`][ser.extract.augment.AugmentPolicy.check_classes])."""
    import dataclasses

    if classes is not None:
        policy.check_classes(classes, label_set)
    extra_rows: list[Utterance] = []
    plan: Plan = {}
    for row in rows:
        if AUG_SEPARATOR in row.id:
            raise AugmentError(
                f"manifest id {row.id!r} contains {AUG_SEPARATOR!r}, which marks augmented copies; "
                "rename it before augmenting"
            )
        if row.audio is None or (splits and row.split not in splits):
            continue
        chain = policy.chain_for(class_of(row))
        if chain is None:
            continue
        for copy in range(chain.copies):
            copy_id = augmented_id(row.id, copy)
            extra_rows.append(dataclasses.replace(row, id=copy_id))
            plan[copy_id] = (chain.transforms, row_seed(policy.seed, row.id, copy))
    return extra_rows, plan


def corruption_plan(rows: list[Utterance], corruption: Transform, seed: int = 0) -> Plan:
    """Every row corrupted, each with its own seed."""
    return {row.id: ((corruption,), row_seed(seed, row.id, 0)) for row in rows}


def apply_chain(transforms: tuple[Transform, ...], samples: np.ndarray, rate: int, seed: int) -> np.ndarray:
    """Run ``transforms`` over mono float32 ``samples`` (T,) at ``rate`` Hz, seeded by ``seed``.

    audiomentations draws from Python's and numpy's global generators, so both are seeded here and
    restored afterwards (the caller's random streams are left as they were)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    try:
        out = np.ascontiguousarray(samples, dtype=np.float32)
        for transform in transforms:
            if rng.random() >= transform.p:
                continue
            if transform.kind == "reverb" and "rt60" in transform.params:
                out = _reverb(out, rate, float(rng.uniform(*transform.params["rt60"])), rng)
            else:
                out = _audiomentation(transform)(samples=out, sample_rate=rate).astype(np.float32, copy=False)
        return out
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
