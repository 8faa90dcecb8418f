"""Label sets: named, data-defined mappings from a corpus' raw labels to a fixed class list.

Manifests keep the corpus' raw labels (IEMOCAP ``exc``, RAVDESS ``calm`` ...). A label set says
which raw labels become which class and in what order the classes are numbered; rows whose raw
label is not in the map are dropped and counted, never silently lost. The built-in sets live in
``label_sets.json`` next to this file; a user can pass the path of a JSON file of the same shape.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ser.manifests.corpora import CORPORA
from ser.manifests.schema import Manifest, ManifestError, Utterance

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LabelSet:
    """A fixed, ordered class list and the raw labels that map onto it."""

    name: str
    """The set's name (``ser manifest label-sets`` lists them)."""
    classes: tuple[str, ...]
    """Class names; the class index used in training is the position in this tuple."""
    mapping: dict[str, str]
    """Raw label -> class name. Raw labels not listed are dropped."""
    corpus: str | None = None
    """Corpus the set was written for (informational; any manifest with those raw labels works)."""
    description: str = ""
    """One line on the set."""
    field: str = "label"
    """Utterance field holding the raw label: ``label`` or ``extra.<key>``."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.mapping.values()) - set(self.classes))
        if unknown:
            raise ManifestError(
                f"label set {self.name!r} maps onto {unknown}, which are not in its classes {list(self.classes)}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ManifestError(f"label set {self.name!r} lists a class twice: {list(self.classes)}")

    def raw_label(self, utterance: Utterance) -> str | None:
        """The raw label this set reads from an utterance."""
        if self.field == "label":
            return utterance.label
        key = self.field.removeprefix("extra.")
        value = utterance.extra.get(key)
        return None if value is None else str(value)

    def class_of(self, utterance: Utterance) -> str | None:
        """Class name of an utterance, or None when its raw label is outside the set."""
        raw = self.raw_label(utterance)
        return None if raw is None else self.mapping.get(raw)

    def index_of(self, utterance: Utterance) -> int | None:
        """Class index of an utterance, or None when it is outside the set."""
        name = self.class_of(utterance)
        return None if name is None else self.classes.index(name)


@dataclass(frozen=True)
class LabelFilterResult:
    """What [`apply_label_set`][ser.manifests.labels.apply_label_set] kept and dropped."""

    kept: list[Utterance]
    """The rows whose raw label the set maps, relabelled to its classes."""
    dropped: Counter[str]
    """Raw label (``<none>`` for unlabelled rows) -> number of rows dropped."""

    def summary(self) -> str:
        if not self.dropped:
            return f"kept {len(self.kept)} rows, dropped none"
        parts = ", ".join(f"{label} {count}" for label, count in sorted(self.dropped.items()))
        return f"kept {len(self.kept)} rows, dropped {sum(self.dropped.values())} ({parts})"


def _from_record(name: str, record: dict[str, Any]) -> LabelSet:
    try:
        return LabelSet(
            name=name,
            classes=tuple(record["classes"]),
            mapping=dict(record["map"]),
            corpus=record.get("corpus"),
            description=record.get("description", ""),
            field=record.get("field", "label"),
        )
    except KeyError as err:
        raise ManifestError(f"label set {name!r} lacks the key {err}; it needs 'classes' and 'map'") from err


def builtin_label_sets() -> dict[str, LabelSet]:
    """All label sets shipped with ser, by name."""
    text = resources.files("ser.manifests").joinpath("label_sets.json").read_text(encoding="utf-8")
    return {name: _from_record(name, record) for name, record in json.loads(text).items()}


def load_label_set(name_or_path: str) -> LabelSet:
    """A built-in label set by name, or the single set in a JSON file.

    The file holds ``{"name": {"classes": [...], "map": {...}}}`` (one or more entries; with more
    than one, pick with ``file.json#name``).
    """
    builtins = builtin_label_sets()
    if name_or_path in builtins:
        return builtins[name_or_path]
    path_text, _, wanted = name_or_path.partition("#")
    path = Path(path_text)
    if not path.is_file():
        raise ManifestError(
            f"unknown label set {name_or_path!r}; built-in sets: {', '.join(sorted(builtins))} "
            "(or pass a JSON file path)"
        )
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from err
    if wanted:
        if wanted not in records:
            raise ManifestError(f"{path} has no label set {wanted!r}; it has {sorted(records)}")
        return _from_record(wanted, records[wanted])
    if len(records) != 1:
        raise ManifestError(f"{path} holds {len(records)} label sets; choose one with {path}#NAME")
    ((name, record),) = records.items()
    return _from_record(name, record)


@dataclass(frozen=True)
class LabelSetChoice:
    """The label set a command works with, and why that one."""

    label_set: LabelSet | None
    """The chosen set (None: the rows' raw labels are used as they are)."""
    source: str
    """``named`` (given by the user), ``header`` (the manifest was built with it), ``default`` (the
    corpus default) or ``none``."""

    def describe(self) -> str:
        if self.label_set is None:
            return "no label set"
        return {
            "named": self.label_set.name,
            "header": f"{self.label_set.name} (from the manifest header)",
            "default": f"{self.label_set.name} (the corpus default)",
        }[self.source]


def choose_label_set(manifest: Manifest, name: str | None, *, all_labels: bool = False) -> LabelSetChoice:
    """The label set named, else the one the manifest was built with, else the corpus default, else none
    (``all_labels``: none, whatever the manifest says)."""

    if all_labels:
        return LabelSetChoice(None, "none")
    if name:
        return LabelSetChoice(load_label_set(name), "named")
    if manifest.header.label_set:
        return LabelSetChoice(load_label_set(manifest.header.label_set), "header")
    corpus = CORPORA.get(manifest.header.corpus)
    default = corpus.default_label_set if corpus else None
    return LabelSetChoice(load_label_set(default), "default") if default else LabelSetChoice(None, "none")


def apply_label_set(utterances: Iterable[Utterance], label_set: LabelSet) -> LabelFilterResult:
    """Keep the utterances whose raw label is in ``label_set``; count the others by raw label."""
    kept: list[Utterance] = []
    dropped: Counter[str] = Counter()
    for utt in utterances:
        if label_set.class_of(utt) is None:
            dropped[label_set.raw_label(utt) or "<none>"] += 1
        else:
            kept.append(utt)
    if dropped:
        logger.info("label set %s: %s", label_set.name, LabelFilterResult(kept=kept, dropped=dropped).summary())
    return LabelFilterResult(kept=kept, dropped=dropped)
