"""One option grammar: the same text gives the same value through every path that reads option values
(``-O``, ``--set``, ``--search``, YAML, ``head.*``, loss and protocol options), and a value that does not
fit is refused naming the option, the value and what it takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest
import yaml

from ser.commands.common import UNTYPED, default_of, parse_options  # noqa: TID251 (a path under test)
from ser.errors import UserError
from ser.extract.base import ExtractorError
from ser.extract.options import coerce_options
from ser.fusion.config import FitConfig, TrainConfig, apply_overrides, config_from_dict, parse_search
from ser.fusion.heads import resolve_head_config
from ser.manifests.protocols import protocol_options
from ser.options import OptionError, coerce, coerce_fields, coerce_like, expected_text, field_types, read_value


@dataclass(kw_only=True)
class Sample:
    flag: bool = False
    rate: float = 0.5
    count: int = 1
    maybe: float | None = None
    name: str = "x"
    pool: Literal["none", "mean"] = "mean"
    sizes: tuple[int, ...] = (1,)


CASES = [
    ("flag", "yes", True),
    ("flag", "OFF", False),
    ("flag", "1", True),
    ("flag", "False", False),
    ("rate", "1e-3", 1e-3),
    ("rate", "3", 3.0),
    ("count", "3", 3),
    ("count", "1e3", 1000),
    ("maybe", "none", None),
    ("maybe", "NULL", None),
    ("maybe", "1e-3", 1e-3),
    ("name", "none", "none"),
    ("name", "1e-3", "1e-3"),
    ("pool", "none", "none"),
    ("sizes", "64,32", (64, 32)),
    ("sizes", "[64, 32]", (64, 32)),
]
IDS = [f"{key}={text}" for key, text, _ in CASES]


def _same(got: Any, expected: Any) -> bool:
    return got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("key", "text", "expected"), CASES, ids=IDS)
def test_the_same_text_gives_the_same_value_through_every_generic_path(key: str, text: str, expected: Any) -> None:
    annotation = field_types(Sample)[key]
    through = {
        "coerce": coerce(text, annotation, key),
        "coerce_fields": coerce_fields(Sample, {key: text})[key],
        "-O (extract)": coerce_options("sample", Sample, {key: text})[key],
        "parse_options typed": parse_options([f"{key}={text}"], {key: annotation})[key],
        "parse_options then coerce": coerce(parse_options([f"{key}={text}"])[key], annotation),
    }
    if key in ("flag", "rate", "count", "maybe", "name"):  # the types a dict of defaults can describe
        through["coerce_like"] = coerce_like({key: text}, {key: default_of(Sample, key)}, "s")[key]
    for path, got in through.items():
        assert _same(got, expected), f"{path}: {got!r}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", 3), ("1e-3", 1e-3), ("yes", True), ("off", False), ("none", None), ("Null", None), ("gmu", "gmu")],
)
def test_untyped_text_is_read_as_numbers_booleans_none_or_text(text: str, expected: Any) -> None:
    assert _same(read_value(text), expected)
    assert _same(parse_options([f"k={text}"], UNTYPED)["k"], expected)


@pytest.mark.parametrize("text", ["yes", "1e-3", "none", "3", "true", "0.25"])
def test_untyped_reading_then_coercion_equals_coercion_of_the_text(text: str) -> None:
    for annotation in (bool, int, float, float | None, int | None, Literal["none", "mean"]):
        try:
            direct = coerce(text, annotation)
        except OptionError:
            with pytest.raises(OptionError):
                coerce(read_value(text), annotation)
            continue
        assert _same(coerce(read_value(text), annotation), direct), annotation


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("train.normalize", "yes", True),
        ("train.lr", "1e-3", 1e-3),
        ("train.epochs", "3", 3),
        ("label_set", "none", None),
        ("val_fraction", "0.25", 0.25),
    ],
)
def test_set_yaml_and_search_agree_on_fit_fields(key: str, text: str, expected: Any) -> None:
    base = {"fusion": "mlp", "manifest": "m", "protocol": "speaker-loso"}
    section, _, name = key.rpartition(".")

    def read(cfg: FitConfig) -> Any:
        return getattr(cfg.train if section else cfg, name)

    by_set = config_from_dict(apply_overrides(base, [f"{key}={text}"]))
    document = f"train: {{{name}: {text}}}" if section else f"{name}: {text}"
    by_yaml = config_from_dict({**base, **yaml.safe_load(document)})
    assert _same(read(by_set), expected) and _same(read(by_yaml), expected)
    if section == "train":
        assert _same(parse_search([f"{key}={text},{text}"])[key][0], expected)


def test_head_and_loss_and_protocol_options_read_text_by_their_types() -> None:
    options, _ = resolve_head_config("mlp", {"dropout": "1e-1", "input_dropout": "none"})
    assert _same(options["dropout"], 0.1) and options["input_dropout"] is None
    record = apply_overrides({"head": {}}, ["head.dropout=1e-1", "head.input_dropout=none"])
    assert resolve_head_config("mlp", record["head"])[0] == options
    assert coerce_like(
        {"paper_form": "yes", "lam": "none", "lambda_c": "3"}, {"paper_form": False, "lam": None, "lambda_c": 1.0}, "l"
    ) == {
        "paper_form": True,
        "lam": None,
        "lambda_c": 3.0,
    }
    assert protocol_options("speaker-kfold", {"k": "3"}) == {"k": 3}
    assert protocol_options("session-loso", {"exclude_scripts": "yes"}) == {"exclude_scripts": True}
    assert protocol_options("official", {}) == {"test_split": "test"}


@pytest.mark.parametrize(
    ("call", "pieces"),
    [
        (lambda: coerce("maybe", bool, "train.normalize"), ["train.normalize must be true or false", "'maybe'"]),
        (lambda: coerce("2.5", int, "train.epochs"), ["train.epochs must be a whole number", "'2.5'"]),
        (lambda: coerce("fast", float | None, "head.x"), ["head.x must be a number or none", "'fast'"]),
        (lambda: coerce("max", Literal["none", "mean"], "head.pool"), ["head.pool must be one of none, mean"]),
        (
            lambda: coerce("a,b", tuple[int, ...], "head.hidden"),
            ["head.hidden must be a tuple of values (e.g. 1,2,3), each a whole number"],
        ),
        (lambda: apply_overrides({}, ["train.epochs=many"]), ["train.epochs must be a whole number", "'many'"]),
        (lambda: config_from_dict({"fusion": "mlp", "manifest": "m", "protocol": "p", "seeds": "a"}), ["seeds"]),
        (lambda: parse_options(["count=many"], {"count": int}), ["-O count must be a whole number", "'many'"]),
        (lambda: resolve_head_config("mlp", {"dropout": "lots"}), ["head.dropout must be a number", "'lots'"]),
        (lambda: protocol_options("speaker-kfold", {"k": "ten"}), ["option k must be a whole number", "'ten'"]),
        (lambda: parse_search(["train.lr=fast"]), ["train.lr must be a number", "'fast'"]),
    ],
)
def test_errors_name_the_option_the_value_and_the_type(call: Any, pieces: list[str]) -> None:
    with pytest.raises(UserError) as caught:
        call()
    for piece in pieces:
        assert piece in str(caught.value)


def test_extract_option_errors_name_the_family_and_option() -> None:
    with pytest.raises(ExtractorError, match=r"sample: -O flag=maybe is not valid: flag must be true or false"):
        coerce_options("sample", Sample, {"flag": "maybe"})
    with pytest.raises(ExtractorError, match=r"sample: unknown options \['colour'\]"):
        coerce_options("sample", Sample, {"colour": "red"})


def test_unknown_typed_options_name_the_accepted_ones() -> None:
    with pytest.raises(UserError, match=r"unknown -O option 'colour'; choose one of count"):
        parse_options(["colour=red"], {"count": int})


def test_option_error_is_a_user_error_and_a_value_error_with_its_parts() -> None:
    with pytest.raises(OptionError) as caught:
        coerce("x", int, "n")
    err = caught.value
    assert isinstance(err, UserError) and isinstance(err, ValueError)
    assert (err.option, err.value, err.expected) == ("n", "x", "a whole number")
    assert expected_text(bool | None) == "true or false (also yes/no, on/off, 1/0) or none"


def test_containers_and_defaults() -> None:
    assert coerce(["1", 2], list[int]) == [1, 2]
    assert coerce("", list[int]) == []
    assert coerce({"a": "1"}, dict[str, int]) == {"a": 1}
    assert coerce("1,2", tuple[int, int]) == (1, 2)
    with pytest.raises(OptionError):
        coerce("1,2,3", tuple[int, int])
    with pytest.raises(OptionError, match="a mapping"):
        coerce("a=1", dict[str, Any])
    assert default_of(TrainConfig, "lr") == TrainConfig().lr
    assert default_of(FitConfig, "seeds") == [0] and default_of(FitConfig, "seeds") is not default_of(
        FitConfig, "seeds"
    )
    assert default_of(coerce, "name") == "value"
    with pytest.raises(TypeError):
        default_of(TrainConfig, "nope")
