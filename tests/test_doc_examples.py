"""The runnable examples of README.md and docs/*.md, executed as written.

A fenced ``bash`` or ``python`` block runs when the line before it (blank lines allowed) is a marker
comment ``<!-- test: run ... -->``; the convention is documented in docs/contributing.md:

* ``run``: execute the block (bash with ``-euo pipefail``, python with ``python -c``) in a fresh
  folder, with ``ser`` on PATH, ``../shared/data`` pointing at the real data and ``examples/`` at
  the repository's; it must exit with status 0;
* ``expect="TEXT"`` (repeatable): the block's output (stdout and stderr) must contain TEXT;
* ``slow``: marks the example ``slow`` (left out of the default run);
* ``id=NAME`` / ``needs=NAME``: a block that needs another one's files runs it first in its folder.

A block that mentions ``shared/data`` reads the real data: it is marked ``integration`` and skipped
when the data is absent.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, shared_data_dir

DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"<!--\s*test:(?P<attrs>.*?)-->\s*\n(?:\s*\n)*```(?P<lang>[a-z]+)[^\n]*\n(?P<body>.*?)\n```", re.S)
LOOSE_MARKER = re.compile(r"<!--\s*test:")
QUADRUPLE_FENCE = re.compile(r"^````.*?^````[^\n]*$", re.S | re.M)
KNOWN_FLAGS = {"run", "slow"}
KNOWN_KEYS = {"expect", "id", "needs"}
TIMEOUT_S = 1800


@dataclass
class DocExample:
    """One marked block of a Markdown file."""

    path: Path
    line: int
    lang: str
    body: str
    slow: bool = False
    expect: list[str] = field(default_factory=list)
    name: str | None = None
    needs: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT).as_posix()}:{self.line}"

    @property
    def uses_real_data(self) -> bool:
        return "shared/data" in self.body


def _blank_quadruple_fences(text: str) -> str:
    """``text`` with every ````-fenced region (examples of the markup itself) blanked, newlines kept."""
    return QUADRUPLE_FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def parse_examples(path: Path) -> list[DocExample]:
    """Every marked block of ``path``; a malformed marker is a ``ValueError`` naming file:line."""
    text = _blank_quadruple_fences(path.read_text(encoding="utf-8"))
    examples = []
    matched_starts = set()
    for match in MARKER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        matched_starts.add(match.start())
        where = f"{path.relative_to(REPO_ROOT)}:{line}"
        if match["lang"] not in ("bash", "python"):
            raise ValueError(f"{where}: a test marker must precede a bash or python block, not {match['lang']!r}")
        example = DocExample(path, line, match["lang"], match["body"])
        tokens = shlex.split(match["attrs"])
        if "run" not in tokens:
            raise ValueError(f"{where}: a test marker needs the word 'run'")
        for token in tokens:
            key, sep, value = token.partition("=")
            if not sep and key in KNOWN_FLAGS:
                example.slow = example.slow or key == "slow"
            elif sep and key == "expect":
                example.expect.append(value)
            elif sep and key == "id":
                example.name = value
            elif sep and key == "needs":
                example.needs.append(value)
            else:
                known = ", ".join(sorted(KNOWN_FLAGS | {f"{k}=..." for k in KNOWN_KEYS}))
                raise ValueError(f"{where}: unknown test marker attribute {token!r} (known: {known})")
        examples.append(example)
    for loose in LOOSE_MARKER.finditer(text):
        if loose.start() not in matched_starts:
            line = text.count("\n", 0, loose.start()) + 1
            raise ValueError(f"{path.relative_to(REPO_ROOT)}:{line}: test marker not followed by a fenced block")
    return examples


def all_examples() -> list[DocExample]:
    return [example for path in DOC_FILES for example in parse_examples(path)]


EXAMPLES = all_examples()
BY_NAME = {example.name: example for example in EXAMPLES if example.name}


def _param(example: DocExample) -> object:
    marks = []
    if example.slow or any(BY_NAME[n].slow for n in example.needs if n in BY_NAME):
        marks.append(pytest.mark.slow)
    if example.uses_real_data or any(BY_NAME[n].uses_real_data for n in example.needs if n in BY_NAME):
        marks.append(pytest.mark.integration)
    return pytest.param(example, id=example.label, marks=marks)


def _sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder with ``../shared/data`` and ``examples/`` in place, and an environment with
    this checkout's ``ser`` first on PATH."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(REPO_ROOT / "examples", target_is_directory=True)
    data = shared_data_dir()
    if data.is_dir():
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "data").symlink_to(data.resolve(), target_is_directory=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "ser"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ser.cli "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    env.update({"MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1", "COLUMNS": "120", "PYTHONUNBUFFERED": "1"})
    return work, env


def _run(example: DocExample, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if example.lang == "bash":
        command = ["bash", "-euo", "pipefail", "-c", example.body]
    else:
        command = [sys.executable, "-c", example.body]
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def _with_dependencies(example: DocExample) -> list[DocExample]:
    order: list[DocExample] = []
    for name in example.needs:
        order.extend(_with_dependencies(BY_NAME[name]))
    return [*order, example]


def test_the_docs_hold_runnable_examples() -> None:
    assert len(EXAMPLES) >= 5, [e.label for e in EXAMPLES]
    assert any(e.path.name == "README.md" for e in EXAMPLES), "the README's worked example is not marked"
    for example in EXAMPLES:
        missing = [name for name in example.needs if name not in BY_NAME]
        assert not missing, f"{example.label}: needs={missing} names no block (ids: {sorted(BY_NAME)})"


def test_a_malformed_marker_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("<!-- test: run sometimes -->\n```bash\ntrue\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape("page.md:1: unknown test marker attribute 'sometimes'")):
        parse_examples(page)
    page.write_text("<!-- test: run -->\n\nsome prose\n```bash\ntrue\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape("page.md:1: test marker not followed by a fenced block")):
        parse_examples(page)
    page.write_text("````markdown\n<!-- test: run -->\n```bash\nfalse\n```\n````\n", encoding="utf-8")
    assert parse_examples(page) == []
    page.write_text('<!-- test: run slow expect="a b" id=x -->\n```bash\necho "a b"\n```\n', encoding="utf-8")
    (example,) = parse_examples(page)
    assert (example.slow, example.expect, example.name, example.body) == (True, ["a b"], "x", 'echo "a b"')


@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_doc_example_runs(example: DocExample, tmp_path: Path) -> None:
    if example.uses_real_data and not shared_data_dir().is_dir():
        pytest.skip(f"real data not found at {shared_data_dir()}")
    work, env = _sandbox(tmp_path)
    for step in _with_dependencies(example):
        result = _run(step, work, env)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{step.label} exited with {result.returncode}:\n{output[-4000:]}"
        for text in step.expect:
            assert text in output, f"{step.label}: {text!r} not in its output:\n{output[-4000:]}"
