"""report.tex: booktabs tables whose text is escaped, marks as in report.md, and a document that compiles
(checked with pdflatex where it is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ser.ablate.latex import caption, escape, label, latex_document, score_tex, table_tex
from ser.ablate.tables import NOT_APPLICABLE, Row, Score, Table

METRICS = {"ua": "UA", "wa": "WA"}


def table(n_runs: int = 4) -> Table:
    rows = [
        Row(
            name="mlp-ser-speaker-loso-ravdess_8-0123456789",
            values=["mlp", "0.01"],
            n_folds=2,
            n_seeds=2,
            n_runs=4,
            scores={"ua": Score(0.8542, 0.0417, bold=True), "wa": Score(0.85, 0.04, tie=True)},
        ),
        Row(
            name="sub/logreg-ser-speaker-loso-ravdess_8-abcdef0123",
            values=["logreg", NOT_APPLICABLE],
            n_folds=2,
            n_seeds=2,
            n_runs=n_runs,
            classic=True,
            scores={"ua": Score(0.70), "wa": Score(0.8612, 0.01, bold=True)},
        ),
    ]
    return Table(
        section="ravdess / speaker-loso / ravdess_8",
        protocol="Protocol: speaker-loso (4 folds), 20% held out & more.",
        columns=["fusion", "train.lr"],
        metrics=METRICS,
        rows=rows,
        pair_units=["fold"],
    )


def test_escape_writes_every_special_character_as_text() -> None:
    assert escape("a_b") == r"a\_b"
    assert escape(r"50% & #1 $x$ {y} ~ ^ \ <|>") == (
        r"50\% \& \#1 \$x\$ \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{} "
        r"\textless{}\textbar{}\textgreater{}"
    )
    assert escape("— ± ≈ ×") == r"--- $\pm$ $\approx$ $\times$"


def test_scores_bold_tie_and_no_spread() -> None:
    assert score_tex(Score(0.8542, 0.0417, bold=True)) == r"\textbf{85.42} $\pm$ 4.17"
    assert score_tex(Score(0.8, 0.031, tie=True)) == r"$\approx$\,80.00 $\pm$ 3.10"
    assert score_tex(Score(0.725)) == "72.50"


def test_a_table_is_booktabs_with_one_line_per_cell() -> None:
    text = table_tex(table())
    lines = text.splitlines()
    assert [line for line in lines if line in (r"\toprule", r"\midrule", r"\bottomrule")] == [
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
    ]
    assert r"\sbox0{\begin{tabular}{lllrrrr}" in lines  # cell, 2 config columns; #folds, #seeds, UA, WA
    assert lines[-4:] == [
        r"\end{tabular}}%",
        "% shrunk to the line width only where it is wider",
        r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi",
        r"\end{table}",
    ]
    body = lines[lines.index(r"\toprule") + 1 : lines.index(r"\bottomrule")]
    rows = [line for line in body if line != r"\midrule"]
    assert rows[0] == r"cell & fusion & train.lr & \#folds & \#seeds & UA & WA \\"
    assert all(row.count(" & ") == 6 and row.endswith(r" \\") for row in rows)
    assert rows[1] == (
        r"\texttt{mlp-ser-speaker-loso-ravdess\_8-0123456789} & mlp & 0.01 & 2 & 2 & "
        r"\textbf{85.42} $\pm$ 4.17 & $\approx$\,85.00 $\pm$ 4.00 \\"
    )
    assert rows[2] == (
        r"\texttt{sub/logreg-ser-speaker-loso-ravdess\_8-abcdef0123} & logreg & --- & 2 & 2 & 70.00 & "
        r"\textbf{86.12} $\pm$ 1.00 \\"
    )
    assert r"\label{tab:ser-ravdess-speaker-loso-ravdess-8}" in lines
    assert label("IEMOCAP / iemocap-loso / 4 classes") == "tab:ser-iemocap-iemocap-loso-4-classes"


def test_a_runs_column_only_where_a_cell_lacks_runs() -> None:
    incomplete = table_tex(table(n_runs=3))
    assert r"cell & fusion & train.lr & \#folds & \#seeds & \#runs & UA & WA \\" in incomplete
    assert "& 2 & 2 & 3 & 70.00 &" in incomplete


def test_the_caption_says_what_the_numbers_and_marks_mean() -> None:
    text = caption(table())
    assert text.startswith(r"ravdess / speaker-loso / ravdess\_8: test scores (\%), mean $\pm$ sample std")
    assert "for classic heads over folds" in text and "no $\\pm$ where a cell has a single run" in text
    assert r"20\% held out \& more." in text
    assert "paired comparison over the shared folds" in text and r"Wilcoxon signed-rank $p \geq 0.05$" in text
    assert "---: the setting does not apply" in text


def unescaped(text: str) -> list[str]:
    """Special characters of ``text`` that are neither escaped nor part of a command or math (a ``%`` that
    ends a line is the comment that joins it to the next)."""
    stripped = re.sub(r"\\[A-Za-z]+|\\[#$%&_{}\\,]|\$[^$]*\$|%$", "", text, flags=re.M)
    return [ch for ch in "_#%&" if ch in stripped.replace(" & ", " ")]


def test_the_document_is_balanced_and_fully_escaped() -> None:
    document = latex_document([table(), table(n_runs=3)], title="Grid_1: 100% of it")
    assert document.count(r"\begin{table}") == document.count(r"\end{table}") == 2
    assert document.count("{") == document.count("}") - document.count(r"\}") + document.count(r"\{")
    assert r"\section*{Grid\_1: 100\% of it}" in document
    assert r"\usepackage{booktabs}" in document and r"\usepackage{graphicx}" in document
    assert document.startswith("%") and document.rstrip().endswith(r"\end{document}")
    body = [line for line in document.splitlines() if not line.startswith("%")]
    assert unescaped("\n".join(body)) == []


def wide() -> Table:
    """A table far wider than a landscape page: eight long config columns."""
    base = table()
    columns = [f"train.option_{i}" for i in range(8)]
    rows = [
        Row(r.name, [f"ser-demo/store_{i}.h5:stat=functionals" for i in range(8)], 4, 2, 8, scores=r.scores)
        for r in base.rows
    ]
    return Table(base.section, base.protocol, columns, base.metrics, rows, ["fold"])


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_the_document_compiles_and_wide_tables_fit_the_page(tmp_path: Path) -> None:
    document = latex_document([table(), table(n_runs=3), wide()], "Grid_1 & 2")
    (tmp_path / "report.tex").write_text(document, encoding="utf-8")
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "report.pdf").stat().st_size > 1000
    log = (tmp_path / "report.log").read_text(encoding="utf-8", errors="replace")
    assert "Overfull" not in log and "Undefined control sequence" not in log
