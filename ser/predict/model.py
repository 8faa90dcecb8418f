"""A trained run as a classifier of new audio and text: ``load_model(run_dir).predict("a.wav")``.

For each input the model repeats what the run was trained on, from its records only:

1. decode the audio (any length up to ``max_seconds``; resampled to the extractor's rate) and take
   the text given with it;
2. run each input's extractor, rebuilt and checked by :mod:`ser.predict.extractors`;
3. read the recorded view (pooled statistic and layer, or the sequence layer), rounded to the
   dtype the store kept (float16 sequences stay float16-exact);
4. z-score with the training rows' statistics and run every selected member; the probabilities are
   the mean over members (``members``: the final model, every fold and seed, or one fold's seeds).

Inputs that cannot be used (unreadable or silent audio, empty text) come back as a
:class:`Prediction` with ``error`` set; they never stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser.devices import resolve_device
from ser.errors import UserError
from ser.extract.audio import DEFAULT_MAX_SECONDS, AudioError, load_audio, prepare_signal
from ser.extract.base import Extractor, Features, Item, ItemRejected
from ser.fusion.data import FusionData, ModalityData
from ser.fusion.model_files import FINAL, MODELS_DIR, ModelFileError, as_float32, load_member, read_index
from ser.predict import defaults
from ser.predict.extractors import rebuild_extractor
from ser.views import View, store_of

logger = logging.getLogger(__name__)

AudioInput = str | Path | np.ndarray


@dataclass
class Request:
    """One thing to classify: audio (a file, a segment of one, or samples) and/or text."""

    id: str
    path: Path | None = None
    start: float | None = None
    end: float | None = None
    samples: np.ndarray | None = None
    sample_rate: int | None = None
    text: str | None = None


@dataclass
class Prediction:
    """The model's answer for one input."""

    id: str
    label: str | None
    """The most probable class (None when the input could not be used)."""
    probabilities: dict[str, float] = field(default_factory=dict)
    """Class -> probability (mean over the selected members); empty on error."""
    error: str | None = None
    """Why the input could not be used."""
    start: float | None = None
    end: float | None = None
    """The window or segment in seconds, when the input was one."""

    def row(self, classes: Sequence[str]) -> dict[str, Any]:
        """One output row: id, (start, end), pred, one ``p_<class>`` column per class, error."""
        row: dict[str, Any] = {"id": self.id}
        if self.start is not None:
            row |= {"start": round(self.start, 3), "end": round(self.end or 0.0, 3)}
        row["pred"] = self.label or ""
        row |= {f"p_{c}": (round(self.probabilities[c], 6) if self.probabilities else "") for c in classes}
        row["error"] = self.error or ""
        return row


@dataclass
class _Input:
    """One modality of the run: its records, view and rebuilt extractor."""

    modality: str
    record: dict[str, Any]
    view: View
    extractor: Extractor

    def vector(self, features: Features) -> np.ndarray:
        """The recorded view of one item's features: (D,), (L, D) for ``layer=weighted``, or (T, D)."""
        dtypes = self.record.get("dtypes") or {}
        if self.view.kind == "seq":
            return as_float32(features.seq[self.view.layer], dtypes.get("seq", "float32"))
        stack = as_float32(features.pooled[str(self.view.stat)], dtypes.get("pooled", "float32"))  # (L, D)
        if self.view.layer == "weighted":
            return stack
        if self.view.layer == "avg":
            return stack[None].mean(axis=1)[0]  # as training: a mean over the layer axis of (N, L, D)
        return stack[-1] if self.view.layer == "last" else stack[int(self.view.layer)]


def _members(index: dict[str, Any], choice: str | None) -> list[dict[str, Any]]:
    members = index.get("members") or []
    folds = list(dict.fromkeys(m["fold"] for m in members))
    choice = choice or ("final" if index.get("final") else "all")
    if choice == "final":
        if not index.get("final"):
            raise ModelFileError(
                "this run has no final model: fit it with --final, or pick --members all or a fold "
                f"({', '.join(folds)})"
            )
        return [index["final"]]
    if choice == "all":
        return members
    chosen = [m for m in members if m["fold"] == choice]
    if not chosen:
        raise ModelFileError(
            f"--members {choice}: no such fold in this run; choose final, all or one of {', '.join(folds)}"
        )
    return chosen


class SerModel:
    """A run directory's trained model(s), ready to classify new recordings (see the module docstring)."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        members: str | None = None,
        device: str = defaults.DEVICE,
        checkpoints: dict[str, str] | None = None,
        batch_size: int = defaults.BATCH_SIZE,
        max_seconds: float = DEFAULT_MAX_SECONDS,
    ) -> None:
        import torch

        self.run_dir = Path(run_dir)
        index = read_index(self.run_dir)
        self.index = index
        self.classes: tuple[str, ...] = tuple(index["classes"])
        self.fusion: str = index["fusion"]
        self.batch_size = batch_size
        self.max_seconds = max_seconds
        self.member_records = _members(index, members)
        unknown = sorted(set(checkpoints or {}) - set(index["inputs"]))
        if unknown:
            raise UserError(
                f"--checkpoint {', '.join(unknown)}: this run has no such input; it reads {', '.join(index['inputs'])}"
            )
        device_name = resolve_device(device)
        self.device = torch.device(device_name)
        self._inputs: dict[str, dict[str, _Input]] = {}
        """Member name -> modality -> its input (members share the objects when their records agree)."""
        built: dict[str, _Input] = {}
        for member in self.member_records:
            self._inputs[member["name"]] = {}
            for modality, record in self._member_inputs(member).items():
                key = f"{modality}:{record['extractor'].get('config_hash')}:{record['described']}"
                if key not in built:
                    extractor = rebuild_extractor(
                        modality, record, device=device_name, checkpoint=(checkpoints or {}).get(modality)
                    )
                    view = View(
                        store=Path(store_of(record["described"])),
                        kind=record["view"]["kind"],
                        stat=record["view"]["stat"],
                        layer=record["view"]["layer"],
                    )
                    built[key] = _Input(modality, record, view, extractor)
                self._inputs[member["name"]][modality] = built[key]
        self._predictors = [
            load_member(self.run_dir / MODELS_DIR, {**index, "inputs": self._member_inputs(m)}, m, self.device)
            for m in self.member_records
        ]
        self.modalities = tuple(index["inputs"])
        self.needs_text = "text" in self.modalities
        self.needs_audio = "audio" in self.modalities

    def _member_inputs(self, member: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return member.get("inputs") or self.index["inputs"]

    @property
    def extractors(self) -> dict[str, Extractor]:
        """Modality -> the rebuilt extractor (of the first member; per-fold stores may differ per member)."""
        return {m: spec.extractor for m, spec in self._inputs[self.member_records[0]["name"]].items()}

    @property
    def members(self) -> list[str]:
        """Names of the members whose probabilities are averaged."""
        return [m["name"] for m in self.member_records]

    # ------------------------------------------------------------------ public API

    def predict(
        self, audio: AudioInput | None = None, *, sample_rate: int | None = None, text: str | None = None
    ) -> Prediction:
        """Classify one recording (a path, or samples with ``sample_rate``) and/or its ``text``."""
        return self.predict_many([self.request(audio, sample_rate=sample_rate, text=text)])[0]

    def request(
        self,
        audio: AudioInput | None = None,
        *,
        sample_rate: int | None = None,
        text: str | None = None,
        id: str | None = None,
    ) -> Request:
        """A :class:`Request` from a path or samples (``sample_rate`` required with samples)."""
        if isinstance(audio, np.ndarray):
            if sample_rate is None:
                raise UserError("predict(array): pass sample_rate= (the rate of the samples)")
            return Request(id=id or "array", samples=audio, sample_rate=int(sample_rate), text=text)
        if audio is None:
            return Request(id=id or "text", text=text)
        return Request(id=id or str(audio), path=Path(audio), text=text)

    def predict_many(
        self,
        inputs: Sequence[AudioInput | Request],
        *,
        texts: Sequence[str | None] | None = None,
        progress: bool = False,
    ) -> list[Prediction]:
        """Classify many inputs (paths, arrays at 16 kHz, or :class:`Request` s), in batches; one
        :class:`Prediction` per input, in order."""
        requests = [
            item
            if isinstance(item, Request)
            else self.request(
                item,
                sample_rate=16000 if isinstance(item, np.ndarray) else None,
                text=texts[i] if texts is not None else None,
            )
            for i, item in enumerate(inputs)
        ]
        out: list[Prediction] = []
        from tqdm import tqdm

        with tqdm(
            total=len(requests),
            unit="input",
            disable=not progress or len(requests) <= self.batch_size,
            dynamic_ncols=True,
        ) as bar:
            for batch in _chunks(requests, self.batch_size):
                out += self._predict_batch(batch)
                bar.update(len(batch))
        return out

    # ------------------------------------------------------------------ internals

    def check_requests(self, requests: Sequence[Request]) -> None:
        """Refuse (one clear line) a text model without text, or an audio model without audio."""
        if self.needs_text and any(r.text is None for r in requests):
            raise UserError(
                f'this model ({self.fusion}) reads text: give the transcript (--text "...", a manifest '
                "with a text field, or predict(..., text=...))"
            )
        if self.needs_audio and any(r.path is None and r.samples is None for r in requests):
            raise UserError(f"this model ({self.fusion}) reads audio: give audio files, folders or a manifest")

    def _decode(self, request: Request, sample_rate: int) -> np.ndarray:
        if request.samples is not None:
            return prepare_signal(
                request.samples,
                int(request.sample_rate or sample_rate),
                sample_rate=sample_rate,
                max_seconds=self.max_seconds,
            )
        assert request.path is not None
        return load_audio(
            request.path, sample_rate=sample_rate, start=request.start, end=request.end, max_seconds=self.max_seconds
        )

    def _features(self, spec_input: _Input, requests: list[Request], errors: dict[int, str]) -> dict[int, np.ndarray]:
        """Row -> the input's view vector, for the rows not failed yet (failures go to ``errors``)."""
        extractor = spec_input.extractor
        items: list[Item] = []
        rows: list[int] = []
        for row, request in enumerate(requests):
            if row in errors:
                continue
            if extractor.spec.modality == "audio":
                try:
                    audio = self._decode(request, extractor.spec.sample_rate or 16000)
                except AudioError as err:
                    errors[row] = str(err)
                    continue
                items.append(Item(id=request.id, audio=audio, text=request.text))
            else:
                if not (request.text or "").strip():
                    errors[row] = "empty text"
                    continue
                items.append(Item(id=request.id, text=request.text))
            rows.append(row)
        seq = [spec_input.view.layer] if spec_input.view.kind == "seq" else []
        results = _extract(extractor, items, seq)
        vectors = {}
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, ItemRejected):
                errors[row] = f"{spec_input.modality}: {result}"
            else:
                vectors[row] = spec_input.vector(result)
        return vectors

    def _predict_batch(self, requests: list[Request]) -> list[Prediction]:
        self.check_requests(requests)
        errors: dict[int, str] = {}
        features: dict[int, dict[str, dict[int, np.ndarray]]] = {}
        by_key: dict[int, dict[int, np.ndarray]] = {}
        for member in self.member_records:
            for modality, spec_input in self._inputs[member["name"]].items():
                key = id(spec_input)
                if key not in by_key:
                    by_key[key] = self._features(spec_input, requests, errors)
                features.setdefault(id(member), {})[modality] = by_key[key]
        good = [row for row in range(len(requests)) if row not in errors]
        probabilities = np.zeros((len(good), len(self.classes)))
        if good:
            for member, predictor in zip(self.member_records, self._predictors, strict=True):
                data = self._data(self._inputs[member["name"]], features[id(member)], good)
                probabilities += predictor.probabilities(data, np.arange(len(good)))
            probabilities /= len(self._predictors)
        answers = {row: probs for row, probs in zip(good, probabilities, strict=True)}
        out = []
        for row, request in enumerate(requests):
            if row in errors:
                out.append(Prediction(request.id, None, error=errors[row], start=request.start, end=request.end))
                continue
            probs = answers[row]
            out.append(
                Prediction(
                    request.id,
                    self.classes[int(np.argmax(probs))],
                    {c: float(p) for c, p in zip(self.classes, probs, strict=True)},
                    start=request.start,
                    end=request.end,
                )
            )
        return out

    def _data(
        self, inputs: dict[str, _Input], vectors: dict[str, dict[int, np.ndarray]], rows: list[int]
    ) -> FusionData:
        """The rows' features in the form the trained heads read (labels are placeholders)."""
        modalities = {}
        for modality, spec_input in inputs.items():
            record = spec_input.record
            values = [vectors[modality][row] for row in rows]
            if spec_input.view.kind == "seq":
                modalities[modality] = ModalityData(
                    view=spec_input.view, dim=int(record["dim"]), sequences=values, seq_layer=spec_input.view.layer
                )
            else:
                modalities[modality] = ModalityData(
                    view=spec_input.view,
                    dim=int(record["dim"]),
                    pooled=np.stack(values),
                    n_layers=int(record["n_layers"]),
                )
        return FusionData(
            ids=[str(r) for r in rows],
            labels=np.zeros(len(rows), dtype=np.int64),
            speakers=[None] * len(rows),
            classes=self.classes,
            modalities=modalities,
        )


def _extract(extractor: Extractor, items: list[Item], seq: list[str]) -> list[Features | ItemRejected]:
    """A batch through the extractor; a batch that fails as a whole is retried item by item, so one bad
    input cannot sink the rest."""
    if not items:
        return []
    try:
        return extractor.extract(items, seq)
    except (RuntimeError, ValueError) as err:
        if len(items) == 1:
            return [ItemRejected(f"extraction failed: {type(err).__name__}: {err}")]
        logger.warning("a batch of %d failed (%s); retrying one by one", len(items), err)
        return [result for item in items for result in _extract(extractor, [item], seq)]


def _chunks(values: list[Request], size: int) -> Iterator[list[Request]]:
    for start in range(0, len(values), max(size, 1)):
        yield values[start : start + size]


def load_model(
    run_dir: str | Path,
    *,
    members: str | None = None,
    device: str = defaults.DEVICE,
    checkpoints: dict[str, str] | None = None,
    batch_size: int = defaults.BATCH_SIZE,
) -> SerModel:
    """Load a run directory written by ``ser fit`` for inference.

    ``members``: ``final`` (the ``--final`` model; the default when the run has one), ``all`` (the mean
    of every fold and seed member; the default otherwise) or a fold name (the mean of its seeds).
    ``checkpoints``: modality -> a local copy of the upstream model the run's store was extracted with.
    Raises :class:`~ser.errors.UserError` for an unknown, unfinished or older run directory and for an
    upstream that differs from the recorded one.
    """
    return SerModel(run_dir, members=members, device=device, checkpoints=checkpoints, batch_size=batch_size)


__all__ = ["FINAL", "Prediction", "Request", "SerModel", "load_model"]
