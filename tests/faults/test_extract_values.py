"""Bad ``ser extract`` values are refused in one line with exit 2 before a model loads or a file is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from ser.cli import app
from ser.manifests.schema import ManifestHeader, Utterance, write_manifest

BAD = [
    (["--num-workers", "-1"], "--num-workers must be a whole number >= 0"),
    (["--batch-items", "0"], "--batch-items must be a whole number >= 1"),
    (["--batch-seconds", "-1"], "--batch-seconds must be a number of seconds > 0"),
    (["--batch-seconds", "nan"], "--batch-seconds must be a number of seconds > 0"),
    (["--flush-seconds", "-1"], "--flush-seconds must be a number of seconds >= 0"),
    (["--max-total-seconds", "0"], "--max-total-seconds must be a number of seconds > 0"),
    (["--dtype", "int8"], "--dtype must be float32, float16 or bfloat16"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_extract_values_are_one_line_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    soundfile.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, ManifestHeader(corpus="x", root=str(tmp_path)), [Utterance(id="a", audio="a.wav")])
    result = CliRunner().invoke(
        app, ["extract", "--model", "egemaps", "-m", str(manifest), "-o", str(tmp_path / "f.h5"), *extra]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "m.jsonl"]
