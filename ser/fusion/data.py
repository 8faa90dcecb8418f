"""Join cache stores with a manifest and a protocol fold: tensors for the heads.

A modality input is named ``STORE[:options]`` on the command line (the grammar: ``ser.views``):

``feats.h5``                         pooled, the store's recommended view (``ser cache info``; e.g.
                                     ``stat=mean,layer=weighted`` for HuBERT, ``stat=mean`` for
                                     MiniLM, ``stat=functionals`` for eGeMAPS); a store written
                                     before stores recorded one: first statistic, last layer
``feats.h5:stat=mean,layer=6``       pooled statistic ``mean`` of layer 6
``feats.h5:layer=avg``               mean over all cached layers
``feats.h5:layer=weighted``          all layers; the model learns softmax layer weights (SUPERB style)
``feats.h5:seq=layer_12``            the stored frame/token sequence of ``layer_12`` (padded + lengths)
``feats.h5:seq``                     the store's only (or last) stored sequence layer

Pooled data live in memory; sequences are read lazily from the store (and kept once read, up to
``seq_cache_bytes``). Rows a store rejected at extraction are dropped from every split and
counted; ids missing from a store, or whose manifest row changed since extraction, are refused.

Augmented copies (``<id>@aug<k>``, written by ``ser extract --augment``) become extra rows after
the manifest's rows: [`FusionData.fold_indices`][ser.fusion.data.FusionData.fold_indices] adds the copies of a fold's
TRAINING rows to its training set and never a copy to validation or test, nor a copy of a validation or test row to
training. A modality whose store has no copies (the text of an augmented audio row) reads its
source row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ser.cache.reader import CacheReader
from ser.errors import UserError
from ser.manifests.fingerprints import row_fingerprints, store_scheme
from ser.manifests.labels import LabelSet
from ser.manifests.protocols import Fold
from ser.manifests.schema import Manifest, Utterance
from ser.views import View, join_view, parse_view, split_options

logger = logging.getLogger(__name__)


class DataError(UserError):
    """The caches, the manifest and the head's needs do not fit together."""


@dataclass
class ModalityData:
    """One modality's data for a list of ids (the rows of a [`FusionData`][ser.fusion.data.FusionData])."""

    view: View
    """How the modality is read from its store."""
    dim: int
    """Feature width D of one row (one frame for sequences)."""
    pooled: np.ndarray | None = None
    """(N, D) or, for ``layer=weighted``, (N, L, D) float32."""
    reader: CacheReader | None = None
    """The open store, for sequences read on demand (None for pooled views)."""
    seq_layer: str | None = None
    """The stored sequence layer read (None for pooled views)."""
    n_layers: int = 1
    """L of the pooled stack (1 unless layer=weighted)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Where the store's features come from (see [`store_provenance`][ser.fusion.data.store_provenance]), for
    ``config.yaml``."""
    adaptation: dict[str, Any] | None = None
    """The store's ``upstream.adaptation`` record when its upstream was fine-tuned by ``ser finetune``."""
    corruption: dict[str, Any] | None = None
    """The store's ``corruption`` attribute when it holds corrupted copies (``ser extract --corrupt``)."""
    records: dict[str, Any] = field(default_factory=dict)
    """The store's full ``extractor`` and ``upstream`` attributes and its ``layout`` dtypes: what
    inference needs to rebuild the same extractor (written into the run's model files)."""
    sequences: list[np.ndarray] | None = None
    """(T, D) sequences held in memory, one per row, instead of a store (``ser predict``)."""


@dataclass
class FusionData:
    """Everything a fit needs, for the usable rows of a manifest (in manifest order)."""

    ids: list[str]
    """Row ids: the manifest's usable rows, then the augmented copies."""
    labels: np.ndarray
    """(N,) int64 class indices of the label set."""
    speakers: list[str | None]
    """Each row's speaker (None where the manifest has none)."""
    classes: tuple[str, ...]
    """The label set's class names; ``labels`` index into them."""
    modalities: dict[str, ModalityData]
    """Modality -> its data."""
    dropped_rejected: dict[str, str] = field(default_factory=dict)
    """Id -> reason, for rows some store rejected at extraction (excluded everywhere)."""
    sources: list[str] = field(default_factory=list)
    """(N,) the manifest id each row comes from (itself for original rows; empty = all original)."""
    keys: dict[str, list[str]] = field(default_factory=dict)
    """Modality -> the store row read for each row (a copy's own row, or its source's)."""
    seq_cache_bytes: int = 4 << 30
    """Memory budget for sequences kept after their first read."""
    _seq_cache: dict[tuple[str, int], np.ndarray] = field(default_factory=dict, repr=False)
    _seq_cached_bytes: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of the given (manifest) ids that are usable; rejected ids are skipped and
        augmented copies are never returned."""
        position = {uid: i for i, uid in enumerate(self.ids) if not self.is_copy(i)}
        return np.array([position[uid] for uid in ids if uid in position], dtype=np.int64)

    def is_copy(self, row: int) -> bool:
        return bool(self.sources) and self.sources[row] != self.ids[row]

    def copies_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of the augmented copies of the given manifest ids."""
        wanted = set(ids)
        return np.array(
            [i for i, source in enumerate(self.sources) if self.is_copy(i) and source in wanted], dtype=np.int64
        )

    def fold_indices(self, fold: Fold) -> dict[str, np.ndarray]:
        """Rows of a fold's splits: validation and test get original rows only; training also gets the
        augmented copies of its own rows."""
        rows = {split: self.index_of(ids) for split, ids in fold.split_ids().items()}
        if self.sources:
            rows["train"] = np.concatenate([rows["train"], self.copies_of(fold.train)])
        return rows

    def sequence(self, modality: str, row: int) -> np.ndarray:
        """(T, D) float32 sequence of one row, read lazily and cached in memory."""
        key = (modality, row)
        cached = self._seq_cache.get(key)
        if cached is not None:
            return cached
        data = self.modalities[modality]
        if data.sequences is not None:
            return data.sequences[row]
        assert data.reader is not None and data.seq_layer is not None
        key_ids = self.keys.get(modality)
        frames = data.reader.sequence(key_ids[row] if key_ids else self.ids[row], data.seq_layer)
        if self._seq_cached_bytes + frames.nbytes <= self.seq_cache_bytes:
            self._seq_cache[key] = frames
            self._seq_cached_bytes += frames.nbytes
        return frames


def store_provenance(reader: CacheReader) -> dict[str, Any]:
    """What identifies a store's features: path, extractor name / preset / config hash, the upstream
    model (id, revision and the other scalar upstream attributes) and the manifest hash it was
    extracted from. Lists (e.g. feature names) are left out to keep ``config.yaml`` readable."""
    extractor = reader.attrs.get("extractor") or {}
    upstream = reader.attrs.get("upstream") or {}
    manifest = reader.attrs.get("manifest") or {}
    return {
        "store": str(reader.path.resolve()),
        "extractor": {k: extractor.get(k) for k in ("name", "preset", "config_hash") if k in extractor},
        "upstream": {k: v for k, v in upstream.items() if isinstance(v, str | int | float | bool) or v is None},
        "manifest_sha256": manifest.get("sha256"),
        "created": reader.attrs.get("created"),
    }


def store_records(reader: CacheReader) -> dict[str, Any]:
    """The store attributes inference needs: the full ``extractor`` record (name, preset, modality,
    config, config hash), the ``upstream`` record, the ``corruption`` record if any, and the dtypes
    the features were stored in (training saw them after that rounding, so inference repeats it)."""
    return {
        "extractor": reader.attrs.get("extractor") or {},
        "upstream": reader.attrs.get("upstream") or {},
        "corruption": reader.attrs.get("corruption"),
        "dtypes": {"pooled": reader.layout.pooled_dtype, "seq": reader.layout.seq_dtype},
    }


def resolve_view(reader: CacheReader, view: View, *, learn_layers: bool = True) -> View:
    """The concrete view of an input: an input that named no view gets the store's recommended one
    (logged), or, for a store written before stores recorded one, its first statistic and last layer.

    ``learn_layers=False`` (heads that take one fixed vector per modality: logreg, svm) turns a
    recommended ``layer=weighted`` into ``layer=avg`` and refuses an explicit one.
    """
    if view.auto:
        extractor = reader.attrs.get("extractor") or {}
        recommended = extractor.get("recommended_view")
        if recommended:
            view = parse_view(join_view(view.store, split_options(recommended)))
            if view.layer == "weighted" and not learn_layers:
                view = replace(view, layer="avg")
            logger.info(
                "%s: no view given; using the recommended view of %s %s: %s",
                view.store.name,
                extractor.get("name"),
                extractor.get("preset"),
                view.describe(),
            )
        else:
            view = View(store=view.store, stat=_default_stat(reader, view))
            logger.warning(
                "%s records no recommended view (written by an older ser); reading the first statistic "
                "of the last layer, %s; name a view (STORE:stat=..,layer=..) to choose",
                view.store.name,
                view.describe(),
            )
    if view.kind == "pooled" and view.layer == "weighted" and not learn_layers:
        raise DataError(
            f"{view.describe()}: this head takes one vector per modality and cannot learn layer "
            "weights; use layer=avg, layer=last or a layer number"
        )
    return view


def _default_stat(reader: CacheReader, view: View) -> str:
    stat = view.stat or next(iter(reader.layout.pooled))
    if stat not in reader.layout.pooled:
        raise DataError(
            f"{view.store} has no pooled statistic {stat!r}; it has {sorted(reader.layout.pooled)} (name one: "
            f"{view.store}:stat=NAME; a recipe's view applies only to an input given without one)"
        )
    return stat


def _pooled_matrix(reader: CacheReader, view: View, ids: Sequence[str]) -> tuple[np.ndarray, int]:
    """(N, D) for one layer or the layer mean, (N, L, D) for ``weighted``; reads only the layers used."""
    stat = _default_stat(reader, view)
    n_layers = reader.layout.pooled[stat][0]
    if view.layer in ("avg", "weighted"):
        stack = reader.pooled(stat, ids=ids).astype(np.float32, copy=False)  # (N, L, D)
        return (stack.mean(axis=1), 1) if view.layer == "avg" else (stack, n_layers)
    if view.layer == "last":
        layer = n_layers - 1
    else:
        try:
            layer = int(view.layer)
        except ValueError:
            raise DataError(f"{view.describe()}: layer must be last, avg, weighted or a number") from None
        if not -n_layers <= layer < n_layers:
            raise DataError(f"{view.store} stat {stat} has {n_layers} layers (0..{n_layers - 1}); no layer {layer}")
    return reader.pooled(stat, ids=ids, layers=[layer])[:, 0].astype(np.float32, copy=False), 1


def _seq_layer(reader: CacheReader, view: View) -> str:
    stored = list(reader.layout.seq)
    if not stored:
        raise DataError(
            f"{view.store} stores no sequences; re-extract with --seq LAYER (pooled statistics "
            "cannot feed a sequence head)"
        )
    layer = view.layer or stored[-1]
    if layer not in stored:
        raise DataError(f"{view.store} stores sequences for {stored}, not {layer!r}")
    return layer


def _augmented_copies(readers: dict[str, CacheReader], usable: set[str]) -> dict[str, str]:
    """Stored augmented copies of usable rows -> their sources, in store order, over every store (none
    rejected), from the links each store records (`CacheReader.links`): in a store without them an
    id that merely ends in ``@aug<k>`` is an ordinary row, never a copy of its namesake."""
    copies: dict[str, str] = {}
    for reader in readers.values():
        for row_id in reader.ids:
            source = reader.links.get(row_id)
            if source in usable and row_id not in reader.rejected:
                copies.setdefault(row_id, source)
    return copies


def load_fusion_data(
    utterances: Sequence[Utterance],
    label_set: LabelSet,
    views: dict[str, View],
    *,
    augmented: bool = True,
    learn_layers: bool = True,
    manifest: Manifest | None = None,
) -> FusionData:
    """Join stores and manifest rows (already filtered to the label set) into one
    [`FusionData`][ser.fusion.data.FusionData]; with ``augmented`` the stores' augmented copies of those rows are
    appended (training only). Views are resolved by [`resolve_view`][ser.fusion.data.resolve_view] (``learn_layers`` as
    there). ``manifest`` (the rows' manifest) locates the audio files whose identity stores record (see
    ``ser.manifests.fingerprints``)."""
    if not views:
        raise DataError("no input given: pass at least one of --audio, --text, --mocap")
    rows = [u for u in utterances if label_set.class_of(u) is not None]
    readers = {m: CacheReader(v.store) for m, v in views.items()}
    dropped: dict[str, str] = {}
    for modality, reader in readers.items():
        reader.require_intact(["ids", "fingerprints", "rejected/ids"])  # before any row is matched
        scheme, kind = store_scheme(reader.attrs)
        if scheme is not None and manifest is None:
            raise DataError(f"{reader.path}: checking its rows needs the manifest (audio identities)")
        stored = [u for u in rows if u.id in reader.index]
        reader.check_rows(
            row_fingerprints(manifest, stored, modality=kind, scheme=scheme)  # type: ignore[arg-type]
            if scheme is not None
            else {u.id: u.fingerprint() for u in stored}
        )
        for u in rows:
            if u.id in reader.rejected:
                dropped.setdefault(u.id, f"{modality}: {reader.rejected[u.id]}")
    usable = [u for u in rows if u.id not in dropped]
    if dropped:
        logger.warning("%d rows were rejected at extraction and are left out of every split", len(dropped))
    originals = [u.id for u in usable]
    links = _augmented_copies(readers, set(originals)) if augmented else {}
    if links:
        logger.info("%d augmented copies found; they join the training rows of their sources only", len(links))
    copies = list(links)
    ids = originals + copies
    sources = originals + [links[c] for c in copies]
    by_id = {u.id: u for u in usable}
    modalities: dict[str, ModalityData] = {}
    keys: dict[str, list[str]] = {}
    for modality, view in views.items():
        reader = readers[modality]
        view = resolve_view(reader, view, learn_layers=learn_layers)
        reader.rows_of(originals)  # refuses absent ids with a clear message
        keys[modality] = originals + [c if c in reader.index else links[c] for c in copies]
        provenance = store_provenance(reader)
        adaptation = (reader.attrs.get("upstream") or {}).get("adaptation")
        corruption = reader.attrs.get("corruption")
        records = store_records(reader)
        widths = {
            **{f"pooled {k}": d for k, (_, d) in reader.layout.pooled.items()},
            **{f"seq {k}": d for k, d in reader.layout.seq.items()},
        }
        if 0 in widths.values():
            zero = ", ".join(k for k, d in widths.items() if not d)
            raise DataError(
                f"{view.store} holds zero-width features ({zero}); re-extract"
                " it with options that give features (e.g. -O n_mels > 0)"
            )
        if view.kind == "seq":
            layer = _seq_layer(reader, view)
            view = replace(view, layer=layer)
            modalities[modality] = ModalityData(
                view=view,
                dim=reader.layout.seq[layer],
                reader=reader,
                seq_layer=layer,
                provenance=provenance,
                adaptation=adaptation,
                corruption=corruption,
                records=records,
            )
        else:
            view = replace(view, stat=_default_stat(reader, view))
            reader.require_intact([f"pooled/{view.stat}"])  # never train on damaged bytes
            matrix, n_layers = _pooled_matrix(reader, view, keys[modality])
            modalities[modality] = ModalityData(
                view=view,
                dim=matrix.shape[-1],
                pooled=matrix,
                n_layers=n_layers,
                provenance=provenance,
                adaptation=adaptation,
                corruption=corruption,
                records=records,
            )
            reader.close()
    labels = np.array([label_set.index_of(by_id[source]) for source in sources], dtype=np.int64)
    return FusionData(
        ids=ids,
        labels=labels,
        speakers=[by_id[source].speaker for source in sources],
        classes=label_set.classes,
        modalities=modalities,
        dropped_rejected=dropped,
        sources=sources if copies else [],
        keys=keys if copies else {},
    )


# ----------------------------------------------------------------------------------------- batches


@dataclass
class Standardizer:
    """Per-feature z-scoring of pooled inputs with statistics of the TRAINING rows only."""

    mean: dict[str, np.ndarray]
    """Modality -> per-feature mean of the training rows."""
    std: dict[str, np.ndarray]
    """Modality -> per-feature standard deviation of the training rows (floored, never 0)."""

    @classmethod
    def fit(cls, data: FusionData, train_rows: np.ndarray) -> Standardizer:
        mean, std = {}, {}
        for modality, m in data.modalities.items():
            if m.pooled is not None:
                values = m.pooled[train_rows].astype(np.float64)
                mean[modality] = values.mean(axis=0).astype(np.float32)
                std[modality] = np.maximum(values.std(axis=0), 1e-8).astype(np.float32)
        return cls(mean, std)

    def apply(self, modality: str, values: np.ndarray) -> np.ndarray:
        if modality not in self.mean:
            return values
        standardized: np.ndarray = (values - self.mean[modality]) / self.std[modality]
        return standardized


def _pad(sequences: list[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    out = torch.zeros(len(sequences), max(int(lengths.max()), 1), dim, dtype=torch.float32)
    for i, frames in enumerate(sequences):
        out[i, : len(frames)] = torch.from_numpy(np.asarray(frames, dtype=np.float32))
    return out, lengths


def make_batch(data: FusionData, rows: np.ndarray, standardizer: Standardizer | None) -> dict[str, torch.Tensor]:
    """The input dict of the head contract for ``rows``: pooled (B, D) / (B, L, D), or padded
    sequences (B, T, D) with ``<modality>_lengths`` (B,)."""
    batch: dict[str, torch.Tensor] = {}
    for modality, m in data.modalities.items():
        if m.pooled is not None:
            values = m.pooled[rows]
            if standardizer is not None:
                values = standardizer.apply(modality, values)
            batch[modality] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        else:
            padded, lengths = _pad([data.sequence(modality, int(r)) for r in rows], m.dim)
            batch[modality] = padded
            batch[f"{modality}_lengths"] = lengths
    return batch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on the training ``device``: floating point as float32 (MPS has no float64), and on CUDA copied
    from pinned memory without blocking the host (the copy is queued on the stream; nothing waits for it)."""
    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        tensor = tensor.float()
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def batch_to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of a ``make_batch`` dict through [`to_device`][ser.fusion.data.to_device]."""
    return {name: to_device(tensor, device) for name, tensor in batch.items()}


def iterate_batches(
    data: FusionData,
    rows: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    standardizer: Standardizer | None,
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor], torch.Tensor]]:
    """(rows, inputs, labels) batches over ``rows`` (shuffled with ``generator`` when asked)."""
    order = rows
    if shuffle:
        order = rows[torch.randperm(len(rows), generator=generator).numpy()]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        yield chunk, make_batch(data, chunk, standardizer), torch.from_numpy(data.labels[chunk])
