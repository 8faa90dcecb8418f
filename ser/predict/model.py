"""A trained run as a classifier of new audio and text: ``load_model(run_dir).predict("a.wav")``.

For each input the model repeats what the run was trained on, from its records only:

1. decode the audio (any length up to ``max_seconds``; resampled to the extractor's rate) and take
   the text given with it;
2. run each input's extractor, rebuilt and checked by [`ser.predict.extractors`][ser.predict.extractors];
3. read the recorded view (pooled statistic and layer, or the sequence layer), rounded to the
   dtype the store kept (float16 sequences stay float16-exact);
4. z-score with the training rows' statistics and run every selected member; the probabilities are
   the mean over members (``members``: the final model, every fold and seed, or one fold's seeds).

An input that cannot be used (a missing, unreadable, empty or silent recording, empty text) raises
[`UnusableInputError`][ser.predict.model.UnusableInputError] naming it and the cause. With ``on_error="record"`` (what
``ser predict`` uses, so one bad file does not stop a folder) it comes back as a
[`Prediction`][ser.predict.model.Prediction] with ``error`` set instead, and the other inputs are still classified.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ser.devices import resolve_device
from ser.errors import UserError
from ser.extract.audio import DEFAULT_MAX_SECONDS, AudioError, load_audio, prepare_signal
from ser.extract.base import Extractor, Features, Item, ItemRejected
from ser.fusion.data import FusionData, ModalityData
from ser.fusion.model_files import FINAL, INDEX_NAME, MODELS_DIR, ModelFileError, as_float32, load_member, read_index
from ser.options import require_float, require_int
from ser.predict import defaults
from ser.predict.extractors import rebuild_extractor
from ser.predict.samples import as_samples, check_sample_rate
from ser.views import View, store_of

logger = logging.getLogger(__name__)

AudioInput = str | Path | np.ndarray

OnError = Literal["raise", "record"]
ON_ERROR: tuple[OnError, ...] = ("raise", "record")
"""What [`SerModel.predict`][ser.predict.model.SerModel.predict] does with an input it cannot use: raise
[`UnusableInputError`][ser.predict.model.UnusableInputError] (the default) or record the reason in the
[`Prediction`][ser.predict.model.Prediction]'s ``error`` and go on."""

LISTED_FAILURES = 3
"""How many unusable inputs an [`UnusableInputError`][ser.predict.model.UnusableInputError] names before
``and N more``."""


@dataclass
class Request:
    """One thing to classify: audio (a file, a segment of one, or samples) and/or text."""

    id: str
    """What the answer is called: the path as given, a manifest row's id, ``array`` or ``text``."""
    path: Path | None = None
    """The audio file (None for samples or text alone)."""
    start: float | None = None
    """Start of the segment of ``path`` to classify, in seconds (None: from the beginning)."""
    end: float | None = None
    """End of the segment of ``path`` to classify, in seconds (None: to the end)."""
    samples: np.ndarray | None = None
    """``(samples,)`` or ``(samples, channels)`` audio given as an array, instead of ``path``."""
    sample_rate: int | None = None
    """The rate of ``samples`` in Hz."""
    text: str | None = None
    """The transcript, for models that read text."""

    def __post_init__(self) -> None:
        """Samples are read once, here, by the rules of [`ser.predict.samples`][ser.predict.samples]; text must
        be Unicode that UTF-8 can carry (bytes that were not UTF-8 reach Python as lone surrogates)."""
        if self.text is not None:
            try:
                self.text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise UserError(
                    f"input {self.id!r}: the text is not valid UTF-8 (byte {err.object[err.start]!r} at "
                    f"character {err.start}); give the transcript in UTF-8"
                ) from None
        if self.samples is not None:
            self.sample_rate = check_sample_rate(self.sample_rate, f"input {self.id!r}: sample_rate")
            self.samples = as_samples(self.samples, f"input {self.id!r}")


@dataclass(repr=False)
class Prediction:
    """The model's answer for one input."""

    id: str
    """The input: the path as given, a manifest row's id, ``array`` for samples, ``text`` for text alone."""
    label: str | None
    """The most probable class (None when the input could not be used)."""
    probabilities: dict[str, float] = field(default_factory=dict)
    """Class -> probability (mean over the selected members); empty on error."""
    error: str | None = None
    """Why the input could not be used (only with ``on_error="record"``; otherwise it raised)."""
    start: float | None = None
    """Start of the window or segment in seconds (None for a whole recording)."""
    end: float | None = None
    """End of the window or segment in seconds (None for a whole recording)."""

    def __repr__(self) -> str:
        """``Prediction(id='a.wav', label='ang', p=0.93)``: the top class and its probability, the window
        when there is one, the reason instead when the input could not be used."""
        parts = [f"id={self.id!r}"]
        if self.start is not None:
            parts.append(f"start={self.start:g}, end={self.end or 0.0:g}")
        parts.append(f"label={self.label!r}")
        if self.error is not None:
            parts.append(f"error={self.error!r}")
        elif self.label in self.probabilities:
            parts.append(f"p={self.probabilities[self.label]:.2f}")
        return f"Prediction({', '.join(parts)})"

    def row(self, classes: Sequence[str]) -> dict[str, Any]:
        """One output row: id, (start, end), pred, one ``p_<class>`` column per class, error."""
        row: dict[str, Any] = {"id": self.id}
        if self.start is not None:
            row |= {"start": round(self.start, 3), "end": round(self.end or 0.0, 3)}
        row["pred"] = self.label or ""
        row |= {f"p_{c}": (round(self.probabilities[c], 6) if self.probabilities else "") for c in classes}
        row["error"] = self.error or ""
        return row


class UnusableInputError(UserError):
    """Inputs [`SerModel.predict`][ser.predict.model.SerModel.predict] /
    [`SerModel.predict_many`][ser.predict.model.SerModel.predict_many] could not use (a missing, unreadable, empty or
    silent recording, empty text); the message names each and the cause.

    ``failures``: one [`Prediction`][ser.predict.model.Prediction] per such input (``id``, ``error``, and ``start`` /
    ``end`` for a segment). Pass ``on_error="record"`` to get them back among the answers instead."""

    def __init__(self, failures: Sequence[Prediction], total: int) -> None:
        self.failures = list(failures)
        named = [f"{_where(p)}: {p.error}" for p in self.failures[:LISTED_FAILURES]]
        more = len(self.failures) - len(named)
        if more:
            named.append(f"and {more} more")
        head = "cannot classify " + ("" if len(self.failures) == 1 else f"{len(self.failures)} inputs: ")
        message = head + "; ".join(named)
        if total > 1:
            message += "; with on_error='record' they come back as Predictions with .error set, the rest classified"
        super().__init__(message)


def _where(prediction: Prediction) -> str:
    """An input's id, with its segment when it is one (``a.wav [2-4 s]``)."""
    if prediction.start is None:
        return prediction.id
    return f"{prediction.id} [{prediction.start:g}-{prediction.end or 0.0:g} s]"


def _missing_file(request: Request) -> str | None:
    """Why a request's file cannot be read at all (no such file, a folder), or None; the path is named
    when the id is not the path (a manifest row)."""
    if request.path is None or request.path.is_file():
        return None
    named = request.id != str(request.path)
    if request.path.is_dir():
        return f"{f'{request.path} is ' if named else ''}a folder, not an audio file: pass the files in it"
    return f"no such file {request.path}" if named else "no such file"


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


def _check_view(index_path: Path, modality: str, record: dict[str, Any], view: View, extractor: Extractor) -> None:
    """An input's recorded view and width against what its rebuilt extractor gives (``spec.pooled``:
    statistic -> (layers, dim); ``spec.seq_layers``: layer -> dim), so a layer or dim the extractor has not is
    refused at load, in one line, instead of failing inside the first prediction."""
    spec = extractor.spec
    where = f"{index_path}: inputs.{modality}"
    fix = "restore the run's index.json or fit the run again"
    if view.kind == "seq":
        layers = dict(spec.seq_layers)
        layer = view.layer or (list(layers)[-1] if layers else "")
        if layer not in layers:
            raise ModelFileError(
                f"{where}.view.layer is {view.layer!r}, but extractor {spec.name} gives sequences for "
                f"{', '.join(layers) or 'no layer'}; {fix}"
            )
        width = layers[layer]
    else:
        stats = dict(spec.pooled)
        stat = view.stat if view.stat is not None else next(iter(stats), None)
        if stat not in stats:
            raise ModelFileError(
                f"{where}.view.stat is {view.stat!r}, but extractor {spec.name} pools {', '.join(stats) or 'nothing'}; "
                f"{fix}"
            )
        n_layers, width = stats[stat]
        if view.layer not in ("last", "avg", "weighted") and not -n_layers <= int(view.layer) < n_layers:
            raise ModelFileError(
                f"{where}.view.layer is {view.layer!r}, but extractor {spec.name} gives {n_layers} layer(s) "
                f"(0..{n_layers - 1}); {fix}"
            )
        if view.layer == "weighted" and int(record["n_layers"]) != n_layers:
            raise ModelFileError(
                f"{where}.n_layers is {record['n_layers']}, but extractor {spec.name} gives {n_layers} layers; {fix}"
            )
    if int(record["dim"]) != width:
        raise ModelFileError(
            f"{where}.dim is {record['dim']}, but extractor {spec.name} gives {width}-dim features; {fix}"
        )


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
        """The run directory the model was loaded from."""
        index = read_index(self.run_dir)
        self.index = index
        """The run's ``models/index.json``: classes, inputs and one record per trained member."""
        self.classes: tuple[str, ...] = tuple(index["classes"])
        """The class names, in the order of each [`Prediction`][ser.predict.model.Prediction]'s probabilities."""
        self.fusion: str = index["fusion"]
        """The head the run trained (``ser fusion list``)."""
        require_int("batch_size", batch_size, 1)
        require_float("max_seconds", max_seconds, low=0.0, strict=True)
        self.batch_size = batch_size
        """Inputs per forward pass of the members."""
        self.max_seconds = max_seconds
        """The longest audio input (or segment) accepted, in seconds; a longer one is unusable."""
        self.member_choice: str = members or ("final" if index.get("final") else "all")
        """``final``, ``all`` or the fold name whose seeds answer."""
        self.member_records = _members(index, self.member_choice)
        """The index records of the members that answer (``member_choice``)."""
        self.recipe: str | None = _recipe(self.run_dir)
        """The training recipe (``ser`` or ``paper``) from the run's ``metrics.json``; None when it does not say."""
        unknown = sorted(set(checkpoints or {}) - set(index["inputs"]))
        if unknown:
            raise UserError(
                f"--checkpoint {', '.join(unknown)}: this run has no such input; it reads {', '.join(index['inputs'])}"
            )
        device_name = resolve_device(device)
        self.device = torch.device(device_name)
        """Where the extractors and members run."""
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
                    _check_view(self.run_dir / MODELS_DIR / INDEX_NAME, modality, record, view, extractor)
                    built[key] = _Input(modality, record, view, extractor)
                self._inputs[member["name"]][modality] = built[key]
        self._predictors = [
            load_member(self.run_dir / MODELS_DIR, {**index, "inputs": self._member_inputs(m)}, m, self.device)
            for m in self.member_records
        ]
        self.modalities = tuple(index["inputs"])
        """The inputs the run reads (``audio``, ``text``, ``mocap``)."""
        self.needs_text = "text" in self.modalities
        """Whether every input must come with its text."""
        self.needs_audio = "audio" in self.modalities
        """Whether every input must come with audio."""

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

    def __repr__(self) -> str:
        """``SerModel(fusion='mlp', recipe='ser', classes=(...), members=4 (all), inputs=audio: egemaps
        functionals, run='runs/mlp-...')``: what answers, on which inputs, from which run."""
        chosen = self.member_choice if self.member_choice in ("final", "all") else f"fold {self.member_choice}"
        recipe = f", recipe={self.recipe!r}" if self.recipe else ""
        return (
            f"SerModel(fusion={self.fusion!r}{recipe}, classes={self.classes!r}, "
            f"members={len(self.member_records)} ({chosen}), inputs={_describe_inputs(self.index['inputs'])}, "
            f"run={str(self.run_dir)!r})"
        )

    # ------------------------------------------------------------------ public API

    def predict(
        self,
        audio: AudioInput | None = None,
        *,
        sample_rate: int | None = None,
        text: str | None = None,
        on_error: OnError = "raise",
    ) -> Prediction:
        """Classify one recording (a path, or samples with ``sample_rate``) and/or its ``text``.

        Raises [`UnusableInputError`][ser.predict.model.UnusableInputError] (naming the file and the cause) for a
        missing, unreadable, empty or silent recording or empty text; ``on_error="record"`` returns a
        [`Prediction`][ser.predict.model.Prediction] with ``label=None`` and the reason in ``error`` instead."""
        return self.predict_many([self.request(audio, sample_rate=sample_rate, text=text)], on_error=on_error)[0]

    def request(
        self,
        audio: AudioInput | None = None,
        *,
        sample_rate: int | None = None,
        text: str | None = None,
        id: str | None = None,
    ) -> Request:
        """A [`Request`][ser.predict.model.Request] from a path or samples (``sample_rate`` required with samples)."""
        if isinstance(audio, np.ndarray):
            if sample_rate is None:
                raise UserError("predict(array): pass sample_rate= (the rate of the samples)")
            return Request(id=id or "array", samples=audio, sample_rate=sample_rate, text=text)
        if audio is None:
            return Request(id=id or "text", text=text)
        return Request(id=id or str(audio), path=Path(audio), text=text)

    def predict_many(
        self,
        inputs: Sequence[AudioInput | Request],
        *,
        texts: Sequence[str | None] | None = None,
        progress: bool = False,
        on_error: OnError = "raise",
    ) -> list[Prediction]:
        """Classify many inputs (paths, arrays at 16 kHz, or [`Request`][ser.predict.model.Request]s), in batches; one
        [`Prediction`][ser.predict.model.Prediction] per input, in order.

        ``on_error="raise"`` (the default): an input that cannot be used raises
        [`UnusableInputError`][ser.predict.model.UnusableInputError] naming it and the cause (missing files are found
        before any extraction starts). ``on_error="record"``: it gets a [`Prediction`][ser.predict.model.Prediction]
        with ``label=None`` and the reason in ``error``, and the other inputs are still classified."""
        if on_error not in ON_ERROR:
            raise UserError(f"on_error must be one of {', '.join(map(repr, ON_ERROR))}, not {on_error!r}")
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
        if on_error == "raise":
            missing = [
                Prediction(r.id, None, error=reason, start=r.start, end=r.end)
                for r in requests
                if (reason := _missing_file(r)) is not None
            ]
            if missing:
                raise UnusableInputError(missing, len(requests))
        out: list[Prediction] = []
        from tqdm import tqdm

        with tqdm(
            total=len(requests),
            unit="input",
            disable=not progress or len(requests) <= self.batch_size,
            dynamic_ncols=True,
        ) as bar:
            for batch in _chunks(requests, self.batch_size):
                answers = self._predict_batch(batch)
                failed = [p for p in answers if p.error is not None]
                if failed and on_error == "raise":
                    raise UnusableInputError(failed, len(requests))
                out += answers
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
            assert request.sample_rate is not None  # Request checked it
            return prepare_signal(
                request.samples,
                request.sample_rate,
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
            if not np.isfinite(probs).all():
                logger.warning("%s: the members' probabilities are not finite (%s)", request.id, probs)
                message = (
                    "the model's probabilities are not finite (NaN or infinity): its model files are damaged; "
                    "restore the run directory or fit it again"
                )
                out.append(Prediction(request.id, None, error=message, start=request.start, end=request.end))
                continue
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


def _recipe(run_dir: Path) -> str | None:
    """The run's training recipe as ``metrics.json`` records it (None when unreadable or absent)."""
    import json

    try:
        recipe = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("recipe")
    except (OSError, ValueError, AttributeError):
        return None
    return recipe if isinstance(recipe, str) else None


def _describe_inputs(inputs: dict[str, dict[str, Any]]) -> str:
    """``audio: egemaps functionals + text: minilm mean``: per modality its extractor and view (the layer
    when the store has several, ``seq=LAYER`` for sequences)."""
    described = []
    for modality, record in inputs.items():
        view = record.get("view") or {}
        if view.get("kind") == "seq":
            how = f"seq={view.get('layer')}"
        else:
            how = str(view.get("stat"))
            if int(record.get("n_layers") or 1) > 1:
                how += f" layer={view.get('layer')}"
        described.append(f"{modality}: {(record.get('extractor') or {}).get('name', '?')} {how}")
    return " + ".join(described)


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
    Raises [`UserError`][ser.errors.UserError] for an unknown, unfinished or older run directory and for an
    upstream that differs from the recorded one.
    """
    return SerModel(run_dir, members=members, device=device, checkpoints=checkpoints, batch_size=batch_size)


__all__ = ["FINAL", "ON_ERROR", "Prediction", "Request", "SerModel", "UnusableInputError", "load_model"]
