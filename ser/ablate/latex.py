"""``report.tex``: the report's section tables as a LaTeX document that compiles on its own.

One ``table`` per section (protocol card), typeset with booktabs rules (``\\toprule``,
``\\midrule``, ``\\bottomrule``); the values and marks are those of ``report.md``
(``ser.ablate.tables``): the best mean per metric column in bold, means with no clear difference from
it marked ``$\\approx$``, the rule stated in each table's caption. Every text from a config or a run
directory name is escaped (``_``, ``%``, ``&``, ``#``, ``$``, braces, ...). To put a table in a
paper, copy its ``table`` environment and add ``\\usepackage{booktabs}`` and ``\\usepackage{graphicx}`` to the
paper's preamble (a table wider than the line is scaled down to it).
"""

from __future__ import annotations

from collections.abc import Sequence

from ser.ablate.tables import NOT_APPLICABLE, Matrix, Score, Table, percent

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "—": "---",
    "–": "--",
    "−": "-",
    "±": r"$\pm$",
    "≈": r"$\approx$",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
}
"""Characters with a meaning in LaTeX (or missing from its default input encoding) -> their text form."""

PREAMBLE = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage[landscape,margin=1.5cm]{geometry}
"""


def escape(text: str) -> str:
    """``text`` with every LaTeX special character written as text (``a_b`` -> ``a\\_b``)."""
    return "".join(SPECIAL.get(ch, ch) for ch in str(text))


def score_tex(score: Score) -> str:
    """``\\textbf{85.42} $\\pm$ 4.17``, ``$\\approx$\\,80.00 $\\pm$ 3.10`` or ``72.50`` (one run)."""
    number = rf"\textbf{{{score.number}}}" if score.bold else score.number
    text = number if score.spread is None else rf"{number} $\pm$ {score.spread}"
    return rf"$\approx$\,{text}" if score.tie else text


def label(section: str) -> str:
    """A ``\\label`` key for a section name (letters, digits and hyphens)."""
    parts = "".join(ch if ch.isalnum() else " " for ch in section.lower()).split()
    return "tab:ser-" + "-".join(parts)


def caption(table: Table) -> str:
    """The table's caption: what the numbers are, what ± is over, and the bold / ≈ / --- rules."""
    units = " and ".join(f"{unit}s" for unit in table.pair_units) or "folds"
    not_applicable = any(NOT_APPLICABLE in row.values for row in table.rows)
    classic = (
        "; for classic heads over folds, as their seeds repeat one deterministic fit"
        if any(row.classic for row in table.rows)
        else ""
    )
    return (
        f"{escape(table.section)}: test scores (\\%), mean $\\pm$ sample std over each cell's runs "
        f"(folds $\\times$ seeds{classic}); no $\\pm$ where a cell has a single run. "
        "UA: unweighted accuracy (macro recall); WA: accuracy. "
        f"{escape(table.protocol)} Bold: the best mean per column (and any mean equal to it at the printed "
        "precision). $\\approx$: no clear difference from the bold cell in a paired comparison over the "
        f"shared {units} (its 95\\,\\% bootstrap interval of the mean difference contains 0, or the Wilcoxon "
        "signed-rank $p \\geq 0.05$)."
        + (" ---: the setting does not apply to the cell's head." if not_applicable else "")
    )


def table_tex(table: Table) -> str:
    """One ``table`` environment: cell names, the config columns, counts and the marked scores (a
    ``#runs`` column only where some cell lacks runs of its folds x seeds). The tabular is set in a box
    and scaled down to the line width when it is wider (graphicx's ``\\resizebox``), never up."""
    runs = any(row.n_runs != row.n_folds * row.n_seeds for row in table.rows)
    header = [
        "cell",
        *(escape(column) for column in table.columns),
        r"\#folds",
        r"\#seeds",
        *([r"\#runs"] if runs else []),
        *(escape(title) for title in table.metrics.values()),
    ]
    spec = "l" * (1 + len(table.columns)) + "r" * (len(header) - 1 - len(table.columns))
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\footnotesize",
        r"\setlength{\tabcolsep}{4pt}",
        r"\setlength{\belowcaptionskip}{4pt}",
        rf"\caption{{{caption(table)}}}",
        rf"\label{{{label(table.section)}}}",
        rf"\sbox0{{\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        cells = [
            rf"\texttt{{{escape(row.name)}}}",
            *(escape(value) for value in row.values),
            str(row.n_folds),
            str(row.n_seeds),
            *([str(row.n_runs)] if runs else []),
            *(score_tex(row.scores[metric]) for metric in table.metrics),
        ]
        lines.append(" & ".join(cells) + r" \\")
    lines += [
        r"\bottomrule",
        r"\end{tabular}}%",
        "% shrunk to the line width only where it is wider",
        r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi",
        r"\end{table}",
    ]
    return "\n".join(lines)


def matrix_tex(name: str, matrix: Matrix) -> str:
    """A run's cross-corpus matrix as a LaTeX table: UA % with the test rows under it, diagonal in italics."""
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{Cross-corpus UA (\%) of {escape(name)}: rows train, columns test; test rows in "
        r"parentheses; the diagonal (italic) is within-corpus.}}",
        rf"\label{{{label('matrix ' + name)}}}",
        r"\begin{tabular}{l" + "r" * len(matrix.test) + "}",
        r"\toprule",
        r"train $\backslash$ test & " + " & ".join(escape(c) for c in matrix.test) + r" \\",
        r"\midrule",
    ]
    for row in matrix.train:
        entries = []
        for column in matrix.test:
            entry = matrix.cells.get((row, column))
            if entry is None:
                entries.append("--")
                continue
            text = f"{percent(entry.ua)} ({entry.n_rows})"
            entries.append(rf"\textit{{{text}}}" if matrix.diagonal(row, column) else text)
        lines.append(escape(row) + " & " + " & ".join(entries) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def latex_document(tables: list[Table], title: str, *, extra: Sequence[str] = ()) -> str:
    """The whole ``report.tex``: a preamble, the title, one table per section, then the ``extra`` tables
    (cross-corpus matrices)."""
    body = "\n\n".join([*(table_tex(table) for table in tables), *extra])
    return (
        "% Written by `ser report`: one table per protocol. To use a table in a paper, copy its table\n"
        "% environment and add \\usepackage{booktabs} and \\usepackage{graphicx} to the paper's preamble.\n"
        f"{PREAMBLE}\\begin{{document}}\n\\section*{{{escape(title)}}}\n\n{body}\n\n\\end{{document}}\n"
    )
