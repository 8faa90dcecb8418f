"""Family options converted by the config field types: booleans that mean false, refusals that name the option."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from ser.extract.base import ExtractorError
from ser.extract.logmel import build as build_logmel
from ser.extract.mocap import build as build_mocap
from ser.extract.options import coerce_value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("false", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("0", False),
        (0, False),
        (False, False),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("1", True),
        (1, True),
        (True, True),
    ],
)
def test_booleans(value: object, expected: bool) -> None:
    assert coerce_value(value, bool) is expected


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        ("12", int, 12),
        (12, int, 12),
        (12.0, int, 12),
        (" 7 ", int, 7),
        ("0.5", float, 0.5),
        (2, float, 2.0),
        ("main", str, "main"),
        (1234, str, "1234"),  # parse_options read a numeric revision as a number
        ("none", bool | None, None),
        ("null", str | None, None),
        ("false", bool | None, False),
        ("x", str | None, "x"),
        ("slaney", Literal["htk", "slaney"], "slaney"),
        ("slaney", Literal["slaney"] | None, "slaney"),
        ("none", Literal["slaney"] | None, None),
    ],
)
def test_conversions(value: object, annotation: object, expected: object) -> None:
    got = coerce_value(value, annotation)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "annotation"),
    [
        ("maybe", bool),
        (2, bool),
        ("1.5", int),
        (1.5, int),
        (True, int),
        ("fast", float),
        (False, float),
        (True, str),
        ("mel", Literal["htk", "slaney"]),
    ],
)
def test_values_that_do_not_fit_are_refused(value: object, annotation: object) -> None:
    with pytest.raises(ValueError, match=r"^(true or false|a whole number|a number|text|one of)"):
        coerce_value(value, annotation)


def test_logmel_center_false_takes_effect() -> None:
    centred, uncentred = build_logmel("64"), build_logmel("64", center="false")
    assert centred.cfg.center is True and uncentred.cfg.center is False
    assert uncentred.config()["center"] is False
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    assert centred.frames(audio).shape[0] == 1 + 16000 // 160
    assert uncentred.frames(audio).shape[0] == 1 + (16000 - 512) // 160  # no padding: whole windows only


def test_bad_option_values_name_the_option_and_what_it_takes() -> None:
    with pytest.raises(ExtractorError, match=r"logmel: -O center=maybe is not valid: center must be true or false"):
        build_logmel("64", center="maybe")
    with pytest.raises(ExtractorError, match=r"logmel: -O n_mels=many is not valid: n_mels must be a whole number"):
        build_logmel("64", n_mels="many")
    with pytest.raises(ExtractorError, match=r"mel_scale must be one of htk, slaney, kaldi"):
        build_logmel("64", mel_scale="bark")
    with pytest.raises(ExtractorError, match=r"mocap: -O ignore_nan=sometimes is not valid"):
        build_mocap("iemocap-200", ignore_nan="sometimes")
    assert build_mocap("iemocap-200", ignore_nan="no").cfg.ignore_nan is False
    assert build_mocap("iemocap-200", ignore_nan=True).cfg.ignore_nan is True
