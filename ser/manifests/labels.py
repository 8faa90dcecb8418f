"""Label sets: named, data-defined mappings from a corpus' raw labels to a fixed class list.

Manifests keep the corpus' raw labels (IEMOCAP ``exc``, RAVDESS ``calm`` ...). A label set says
which raw labels become which class and in what order the classes are numbered; rows whose raw
label is not in the map are dropped and counted, never silently lost. The built-in sets live in
``label_sets.json`` next to this file; a user can pass the path of a JSON file of the same shape.

Cross-corpus sets map per corpus (JSON key ``maps``: corpus -> raw label -> class) and read the corpus of
a row from ``extra["corpus"]``, which ``ser manifest join`` writes. ``cross4`` is such a set; ``shared`` is
computed from the corpora present in a joined manifest (see
[`shared_label_set`][ser.manifests.labels.shared_label_set]).
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
    per_corpus: dict[str, dict[str, str]] | None = None
    """Corpus -> (raw label -> class), for joined manifests (JSON key ``maps``). When set, a row's map is
    chosen by its ``extra["corpus"]``; rows of a corpus without a map are dropped (``mapping`` is unused)."""

    def __post_init__(self) -> None:
        targets = set(self.mapping.values()).union(*(m.values() for m in (self.per_corpus or {}).values()))
        unknown = sorted(targets - set(self.classes))
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
        """Class name of an utterance, or None when its raw label (or, for a per-corpus set, its corpus) is
        outside the set."""
        raw = self.raw_label(utterance)
        if raw is None:
            return None
        if self.per_corpus is not None:
            return self.per_corpus.get(corpus_of(utterance) or "", {}).get(raw)
        return self.mapping.get(raw)

    def index_of(self, utterance: Utterance) -> int | None:
        """Class index of an utterance, or None when it is outside the set."""
        name = self.class_of(utterance)
        return None if name is None else self.classes.index(name)


def corpus_of(utterance: Utterance) -> str | None:
    """The corpus a row of a joined manifest comes from (``extra["corpus"]``), or None."""
    corpus = utterance.extra.get("corpus")
    return corpus if isinstance(corpus, str) and corpus else None


def dropped_key(utterance: Utterance, raw: str | None) -> str:
    """How a dropped row is counted: its raw label (``<none>`` when unlabelled), as ``corpus:label`` for a row
    of a joined manifest so that a fold table shows where the dropped rows came from."""
    label = raw or "<none>"
    corpus = corpus_of(utterance)
    return f"{corpus}:{label}" if corpus else label


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
    if "map" not in record and "maps" not in record:
        raise ManifestError(f"label set {name!r} lacks the key 'map'; it needs 'classes' and 'map' (or 'maps')")
    try:
        maps = record.get("maps")
        return LabelSet(
            name=name,
            classes=tuple(record["classes"]),
            mapping=dict(record.get("map", {})),
            corpus=record.get("corpus"),
            description=record.get("description", ""),
            field=record.get("field", "label"),
            per_corpus={corpus: dict(m) for corpus, m in maps.items()} if maps is not None else None,
        )
    except KeyError as err:
        raise ManifestError(f"label set {name!r} lacks the key {err}; it needs 'classes' and 'map'") from err


def _builtin_records() -> dict[str, dict[str, Any]]:
    text = resources.files("ser.manifests").joinpath("label_sets.json").read_text(encoding="utf-8")
    records: dict[str, dict[str, Any]] = json.loads(text)
    return records


SHARED = "shared"
"""Name of the computed cross-corpus set (the classes every corpus of a joined manifest has)."""


def builtin_label_sets() -> dict[str, LabelSet]:
    """All label sets shipped with ser, by name (the computed ``shared`` set is not among them: see
    [`shared_label_set`][ser.manifests.labels.shared_label_set])."""
    return {name: _from_record(name, record) for name, record in _builtin_records().items() if name != SHARED}


def shared_description() -> str:
    """The computed ``shared`` set's one-line description (``ser manifest label-sets``)."""
    return str(_builtin_records()[SHARED]["description"])


def shared_label_set(corpora: Iterable[str]) -> LabelSet:
    """The largest class set every corpus in ``corpora`` has, mapped per corpus.

    Each corpus contributes its full built-in set (``label_sets.json``, ``shared.sources``: ravdess8, emodb7,
    iemocap6, meld7, esd5, cremad6, msp8, tess7) with the record's per-corpus ``rename`` applied (MELD
    ``joy`` counts as ``hap``, IEMOCAP ``exc`` as ``hap`` as in iemocap4); the classes are the intersection,
    in the fixed order of ``shared.vocabulary``. A corpus without a source set, or corpora sharing fewer
    than two classes, raise a [`ManifestError`][ser.manifests.schema.ManifestError].
    """
    record = _builtin_records()[SHARED]
    sources: dict[str, str] = record["sources"]
    renames: dict[str, dict[str, str]] = record.get("rename", {})
    vocabulary: list[str] = record["vocabulary"]
    builtins = builtin_label_sets()
    names = sorted(set(corpora))
    unknown = [c for c in names if c not in sources]
    if unknown:
        raise ManifestError(
            f"label set 'shared' knows the classes of {', '.join(sorted(sources))}, not of {', '.join(unknown)}; "
            "pass a JSON label set with a 'maps' entry for every corpus (see cross4 in `ser manifest label-sets`)"
        )
    maps: dict[str, dict[str, str]] = {}
    for corpus in names:
        source = builtins[sources[corpus]]
        rename = renames.get(corpus, {})
        maps[corpus] = {raw: rename.get(cls, cls) for raw, cls in source.mapping.items()}
    common = set(vocabulary).intersection(*(set(m.values()) for m in maps.values()))
    classes = tuple(c for c in vocabulary if c in common)
    if len(classes) < 2:
        raise ManifestError(
            f"corpora {', '.join(names)} share {len(classes)} class(es) ({', '.join(classes) or 'none'}); a "
            "classifier needs two or more: join corpora with more emotions in common"
        )
    return LabelSet(
        name=SHARED,
        classes=classes,
        mapping={},
        description=f"classes shared by {', '.join(names)}",
        per_corpus={c: {raw: cls for raw, cls in m.items() if cls in common} for c, m in maps.items()},
    )


def load_label_set(name_or_path: str, *, corpora: Iterable[str] | None = None) -> LabelSet:
    """A built-in label set by name, or the single set in a JSON file.

    The file holds ``{"name": {"classes": [...], "map": {...}}}`` (one or more entries; with more
    than one, pick with ``file.json#name``). ``shared`` is computed from ``corpora`` (the corpora of a
    joined manifest; [`manifest_corpora`][ser.manifests.labels.manifest_corpora]).
    """
    if name_or_path == SHARED:
        if not corpora:
            raise ManifestError(
                "label set 'shared' is computed from the corpora of a joined manifest (`ser manifest join`); "
                "use it with a joined manifest, or name a fixed set such as cross4"
            )
        return shared_label_set(corpora)
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
    corpora = manifest_corpora(manifest)
    if name:
        return LabelSetChoice(load_label_set(name, corpora=corpora), "named")
    if manifest.header.label_set:
        return LabelSetChoice(load_label_set(manifest.header.label_set, corpora=corpora), "header")
    if corpora:  # a joined manifest: the classes its corpora share
        return LabelSetChoice(shared_label_set(corpora), "default")
    corpus = CORPORA.get(manifest.header.corpus)
    default = corpus.default_label_set if corpus else None
    return LabelSetChoice(load_label_set(default), "default") if default else LabelSetChoice(None, "none")


def manifest_corpora(manifest: Manifest) -> list[str]:
    """The corpora of a joined manifest's rows (``extra["corpus"]``), sorted; empty for a single-corpus one."""
    return sorted({c for c in (corpus_of(u) for u in manifest.utterances) if c})


def apply_label_set(utterances: Iterable[Utterance], label_set: LabelSet) -> LabelFilterResult:
    """Keep the utterances whose raw label is in ``label_set``; count the others by raw label
    (``corpus:label`` for rows of a joined manifest, [`dropped_key`][ser.manifests.labels.dropped_key])."""
    kept: list[Utterance] = []
    dropped: Counter[str] = Counter()
    for utt in utterances:
        if label_set.class_of(utt) is None:
            dropped[dropped_key(utt, label_set.raw_label(utt))] += 1
        else:
            kept.append(utt)
    if dropped:
        logger.info("label set %s: %s", label_set.name, LabelFilterResult(kept=kept, dropped=dropped).summary())
    return LabelFilterResult(kept=kept, dropped=dropped)
