"""The schema of a run's ``models/index.json``: every field the loader and the predictor read, checked once.

[`read_index`][ser.fusion.model_files.read_index] calls [`check_index`][ser.fusion.index_schema.check_index] on load,
before any extractor or member is built, so an edited or damaged index (a member without ``engine``, ``inputs: {}``,
a ``layer`` that is no layer, an unknown head option) is refused in one line naming the file, the field and its value,
whatever the member's digests say (a tamperer can delete those). What the schema cannot know, a layer or dim the
extractor does not have, is checked against the rebuilt extractor by [`SerModel`][ser.predict.model.SerModel].
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from ser.errors import UserError

FIX = "restore the run's index.json or fit the run again"
"""The remedy every schema error names."""
VIEW_KINDS = ("pooled", "seq")
"""``view.kind`` values (see [`View`][ser.views.View])."""
POOLED_LAYERS = ("last", "avg", "weighted")
"""``view.layer`` words of a pooled view; otherwise a layer number."""
FLOAT_DTYPES = ("float16", "float32", "float64")
"""The dtypes a store keeps features in (``dtypes``)."""
LAYER_NUMBER = re.compile(r"^-?\d+$")


class IndexSchemaError(UserError):
    """Raised by [`check_index`][ser.fusion.index_schema.check_index]; the caller names it as a model file error."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad(field: str, value: Any, expected: str) -> IndexSchemaError:
    return IndexSchemaError(f"{field} is {_shown(value)}, but must be {expected}; {FIX}")


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _mapping(field: str, value: Any, *, non_empty: bool = False) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or (non_empty and not value):
        raise _bad(field, value, "a non-empty mapping" if non_empty else "a mapping")
    return value


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(field, value, "a non-empty string")
    return value


def check_index(index: Mapping[str, Any]) -> None:
    """Refuse (an [`IndexSchemaError`][ser.fusion.index_schema.IndexSchemaError] naming the field and value) an index
    whose classes, head, inputs or member records are missing, of the wrong type or out of range."""
    from ser.fusion.heads import HEADS

    classes = index.get("classes")
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise _bad("classes", classes, "a non-empty list of distinct class names")
    fusion = index.get("fusion")
    if not isinstance(fusion, str) or fusion not in HEADS:
        raise _bad("fusion", fusion, f"a known head ({', '.join(HEADS)})")
    check_inputs("inputs", index.get("inputs"), fusion)
    members = index.get("members")
    if not isinstance(members, list):
        raise _bad("members", members, "a list of member records")
    for i, member in enumerate(members):
        check_member(f"members[{i}]", member, fusion)
    if index.get("final") is not None:
        check_member("final", index.get("final"), fusion)


def check_inputs(field: str, inputs: Any, fusion: str) -> None:
    """``inputs``: the modalities head ``fusion`` reads (its ``INPUTS``), each with the view kind the head takes,
    ``dim``, ``n_layers``, ``described`` store view, extractor record and stored ``dtypes``."""
    from ser.fusion.heads import head_module

    takes: dict[str, str] = head_module(fusion).INPUTS
    inputs = _mapping(field, inputs, non_empty=True)
    needed = sorted(m for m, kind in takes.items() if not kind.endswith("?") and m not in inputs)
    if needed:
        raise _bad(field, sorted(inputs), f"modalities head {fusion} reads (it needs {', '.join(needed)})")
    for modality, record in inputs.items():
        where = f"{field}.{modality}"
        if modality not in takes:
            raise _bad(field, sorted(inputs), f"modalities head {fusion} reads ({', '.join(takes)})")
        record = _mapping(where, record)
        view = _mapping(f"{where}.view", record.get("view"))
        kind, stat, layer = view.get("kind"), view.get("stat"), view.get("layer")
        if kind not in VIEW_KINDS or kind != takes[modality].rstrip("?"):
            raise _bad(f"{where}.view.kind", kind, f"{takes[modality].rstrip('?')!r} (what head {fusion} takes)")
        if kind == "pooled":
            if stat is not None:
                _text(f"{where}.view.stat", stat)
            if not isinstance(layer, str) or not (layer in POOLED_LAYERS or LAYER_NUMBER.match(layer)):
                raise _bad(f"{where}.view.layer", layer, f"{', '.join(POOLED_LAYERS)} or a layer number (text)")
        elif not isinstance(layer, str):
            raise _bad(f"{where}.view.layer", layer, "a stored sequence layer name")
        for name in ("dim", "n_layers"):
            if not _whole(record.get(name), 1):
                raise _bad(f"{where}.{name}", record.get(name), "a whole number >= 1")
        if record["n_layers"] != 1 and not (kind == "pooled" and layer == "weighted"):
            raise _bad(f"{where}.n_layers", record["n_layers"], "1 (only a layer=weighted view keeps every layer)")
        _text(f"{where}.described", record.get("described"))
        _mapping(f"{where}.extractor", record.get("extractor"))
        dtypes = _mapping(f"{where}.dtypes", record.get("dtypes") or {})
        for part, dtype in dtypes.items():
            if dtype not in FLOAT_DTYPES:
                raise _bad(f"{where}.dtypes.{part}", dtype, " or ".join(FLOAT_DTYPES))


def check_member(field: str, member: Any, fusion: str) -> None:
    """One member record: name, fold, seed, file, the head's engine, head options the head's config declares
    (in range), training settings [`TrainConfig.check`][ser.fusion.config.TrainConfig.check] accepts, and its
    own ``inputs`` when it has them."""
    from ser.fusion.config import TrainConfig
    from ser.fusion.heads import head_info, resolve_head_config

    member = _mapping(field, member)
    for name in ("name", "fold", "file"):
        _text(f"{field}.{name}", member.get(name))
    if not _whole(member.get("seed"), 0):
        raise _bad(f"{field}.seed", member.get("seed"), "a whole number >= 0")
    engine = head_info(fusion).engine
    if member.get("engine") != engine:
        raise _bad(f"{field}.engine", member.get("engine"), f"{engine!r} (the engine of head {fusion})")
    options = _mapping(f"{field}.head_options", member.get("head_options"))
    try:
        resolve_head_config(fusion, dict(options))
    except UserError as err:
        raise IndexSchemaError(f"{field}.head_options {_shown(dict(options))}: {err}; {FIX}") from None
    train = _mapping(f"{field}.train", member.get("train"))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        config = TrainConfig(**{k: v for k, v in train.items() if k in known})
        # the device the fit ran on is not the one predict uses (predict's own option picks that)
        dataclasses.replace(config, device="cpu").check()
    except (UserError, TypeError, ValueError) as err:
        raise IndexSchemaError(f"{field}.train: {err}; {FIX}") from None
    if member.get("inputs") is not None:
        check_inputs(f"{field}.inputs", member.get("inputs"), fusion)
