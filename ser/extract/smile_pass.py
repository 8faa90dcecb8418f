"""Functionals and low-level descriptors of one signal from a single openSMILE run.

``opensmile.Smile`` returns one feature level per call, so asking for the eGeMAPS functionals and
the LLDs means running openSMILE twice over every clip, although the functionals are computed from
the very same LLDs inside one run. openSMILE's feature-set configs can feed two external sinks at
once: opensmile-python ships that sink config (``standard_external_data_output_multi.conf.inc``,
components ``extsinklld`` and ``extsinkfunc``) but exposes no call that uses it.
[`OnePass`][ser.extract.smile_pass.OnePass] drives openSMILE's own Python binding (``opensmile.core.lib.OpenSMILE``,
what ``Smile`` uses underneath) with that config: one run, both levels, about half the time.

That binding and ``Smile._options`` are not public API, so [`one_pass_or_none`][ser.extract.smile_pass.one_pass_or_none]
checks the result against two ``Smile.process_signal`` calls on a test signal, bit for bit, and returns None
(the caller keeps the two-pass path) when anything differs or fails.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SINK_COMPONENTS = {"func": "extsinkfunc", "lld": "extsinklld"}


class OnePass:
    """Both feature levels of ``functionals`` / ``lld`` (two ``opensmile.Smile`` of one feature set) at once."""

    def __init__(self, functionals: Any, lld: Any, sample_rate: int) -> None:
        from opensmile.core.config import config

        self._config_path = functionals.config_path
        self._loglevel = functionals.loglevel
        self._source = config.EXTERNAL_SOURCE_COMPONENT
        options = dict(functionals._options())
        options.pop("sinkLevel", None)
        options.update(
            {
                "source": os.path.join(functionals.default_config_root, config.EXTERNAL_INPUT_CONFIG),
                "sink": os.path.join(functionals.default_config_root, config.EXTERNAL_OUTPUT_MULTI_CONFIG),
                "sinkLevelFunc": functionals.feature_level.value,
                "sinkLevelLLD": lld.feature_level.value,
                "sampleRate": sample_rate,
                "nBits": 16,
            }
        )
        self._options = options
        self.n_functionals = len(functionals.feature_names)
        self.n_lld = len(lld.feature_names)

    def __call__(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(samples,) float32 audio -> (n_functionals,) functionals and (T, n_lld) LLDs, float32.

        Functionals are NaN when openSMILE emits none (too short a signal), as ``Smile`` does.
        """
        from opensmile.core.lib import OpenSMILE

        outputs: dict[str, list[np.ndarray]] = {level: [] for level in SINK_COMPONENTS}
        smile = OpenSMILE()
        smile.initialize(config_file=self._config_path, options=self._options, loglevel=self._loglevel)
        try:
            for level, component in SINK_COMPONENTS.items():
                smile.external_sink_set_callback_ex(component, _collector(outputs[level]))
            pcm = (np.asarray(audio, dtype=np.float32) * 32768).astype(np.int16)  # exactly as Smile converts
            smile.external_audio_source_write_data(self._source, bytes(pcm))
            smile.external_audio_source_set_eoi(self._source)
            smile.run()
        finally:
            smile.free()
        functionals = (
            np.vstack(outputs["func"]).astype(np.float32).reshape(-1)
            if outputs["func"]
            else np.full(self.n_functionals, np.nan, dtype=np.float32)
        )
        lld = (
            np.vstack(outputs["lld"]).astype(np.float32).reshape(-1, self.n_lld)
            if outputs["lld"]
            else np.zeros((0, self.n_lld), dtype=np.float32)
        )
        return functionals, lld


def _collector(out: list[np.ndarray]) -> Any:
    def callback(data: np.ndarray, meta: Any) -> None:
        out.append(np.array(data, copy=True))

    return callback


def one_pass_or_none(functionals: Any, lld: Any, sample_rate: int) -> OnePass | None:
    """An [`OnePass`][ser.extract.smile_pass.OnePass] whose output equals two ``process_signal`` calls on a test signal,
    else None."""
    try:
        one = OnePass(functionals, lld, sample_rate)
        rng = np.random.default_rng(0)
        t = np.arange(sample_rate) / sample_rate
        test = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
        got_functionals, got_lld = one(test)
        want_functionals = functionals.process_signal(test, sample_rate).to_numpy(dtype=np.float32).reshape(-1)
        want_lld = lld.process_signal(test, sample_rate).to_numpy(dtype=np.float32)
        if np.array_equal(got_functionals, want_functionals) and np.array_equal(got_lld, want_lld):
            return one
        logger.warning("openSMILE single-pass output differs from Smile.process_signal; using two passes")
    except Exception as err:  # a private API that moved: the two-pass path still works
        logger.warning("openSMILE single pass unavailable (%s: %s); using two passes", type(err).__name__, err)
    return None
