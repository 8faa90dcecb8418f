"""Generate the documentation pages that come from the code (run by the mkdocs-gen-files plugin).

* ``heads/<name>.md``: one page per entry of the head registry ``ser.fusion.heads.HEADS`` with its
  source, a data-flow diagram and the tensor shapes built from the module's ``INPUTS``, its recipes
  and fidelity table (``HEADS[name].recipes`` / ``.fidelity``, through ``ser.fusion.recipe_text``),
  its options (the config dataclass), the module
  docstring split into description / deviations / preset, and a ``:::`` block for mkdocstrings.
* ``heads/index.md`` and ``heads/SUMMARY.md``: the table of heads and their navigation.
* ``reference/...``: one API page per module found by walking ``ser/`` (so new, moved or renamed
  modules need no edit here; a package's page lists its modules), with ``reference/SUMMARY.md`` for
  mkdocs-literate-nav. Modules named in ``INTERNAL_MODULES`` are listed under "Internals"
  (``reference/internals/``), apart from the public API; a head module's API is on its head page.
  A module without a docstring, or an ``INTERNAL_MODULES`` entry naming no module, fails the strict build.

Head modules are read with ``ast`` (never imported): building the documentation needs no torch.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import mkdocs_gen_files
from mkdocs.structure.files import InclusionLevel

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ser"

MODALITY_ORDER = ("audio", "text", "mocap")


# ---------------------------------------------------------------------------------------------
# docstrings (reStructuredText-flavoured) -> Markdown


def rst_to_markdown(text: str) -> str:
    """Turn a module docstring into Markdown: ``x`` -> `x`, roles -> code, ``::`` blocks -> fences."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            stripped = line.rstrip()[:-2].rstrip()
            if stripped:
                out.append(_inline(stripped) + ":")
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            indent = min(len(b) - len(b.lstrip()) for b in block if b.strip()) if block else 0
            out.extend(["", "```text", *(b[indent:] for b in block), "```", ""])
            continue
        out.append(_inline(line))
        i += 1
    return "\n".join(out)


def _inline(line: str) -> str:
    # Docstrings cross-reference with autorefs links (`[`Name`][ser.dotted.path]`), which pass through as they
    # are; a reST role that slipped in shows as code, as the API pages would not resolve it either
    # (tests/test_docs_site.py fails on any role left in the built site).
    line = re.sub(r":(?:class|func|meth|data|attr|mod|obj|exc|const):`~([^`]+\.)?([^`.]+)`", r"`\2`", line)
    line = re.sub(r":(?:class|func|meth|data|attr|mod|obj|exc|const):`([^`]+)`", r"`\1`", line)
    line = line.replace("``", "`")
    # Nested bullets are indented by two spaces in the docstrings; Markdown wants four.
    if re.match(r"^  [-*] ", line):
        line = "  " + line
    return line


def split_docstring(doc: str) -> dict[str, list[str]]:
    """Paragraphs of a head docstring grouped into ``overview``, ``deviations`` and ``preset``."""
    sections: dict[str, list[str]] = {"overview": [], "deviations": [], "preset": []}
    current = "overview"
    for paragraph in doc.split("\n\n"):
        head = paragraph.lstrip()
        if head.startswith(("Deviation", "Not in the head", "Not reproduced", "SpecAugment widths")):
            current = "deviations"
        elif head.startswith(("Training preset", "Training:", "Recipes (", "Training is the recipes")):
            current = "preset"
        elif current == "preset" and not head.startswith(("*", "-")):
            current = "overview" if not head.startswith("Input scaling") else current
        sections[current].append(paragraph)
    return sections


# ---------------------------------------------------------------------------------------------
# head modules, read statically


def module_file(dotted: str) -> Path:
    path = ROOT.joinpath(*dotted.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def read_head(dotted: str) -> dict[str, Any]:
    tree = ast.parse(module_file(dotted).read_text(encoding="utf-8"))
    found: dict[str, Any] = {"doc": ast.get_docstring(tree) or "", "inputs": {}, "dims": {}, "fields": []}
    config_name = None
    classes: dict[str, ast.ClassDef] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = node
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "INPUTS":
                found["inputs"] = ast.literal_eval(node.value)
            elif name == "EXAMPLE_DIMS":
                found["dims"] = ast.literal_eval(node.value)
            elif name == "CONFIG" and isinstance(node.value, ast.Name):
                config_name = node.value.id
    if config_name in classes:
        found["config"] = config_name
        found["fields"] = config_fields(classes[config_name])
    return found


def config_fields(cls: ast.ClassDef) -> list[tuple[str, str, str]]:
    """``(name, default, docstring)`` of a dataclass's fields."""
    fields = []
    body = cls.body
    for index, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            default = ast.unparse(node.value) if node.value is not None else "required"
            doc = ""
            following = body[index + 1] if index + 1 < len(body) else None
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                doc = " ".join(str(following.value.value).split())
            fields.append((node.target.id, default, doc))
    return fields


def shape_of(modality: str, kind: str) -> str:
    if kind == "seq":
        return f"`{modality}` (B, T, D) float, zero-padded + `{modality}_lengths` (B,) int64"
    return f"`{modality}` (B, D) float"


def flow_diagram(name: str, inputs: dict[str, str], engine: str) -> str:
    lines = ["```mermaid", "flowchart LR"]
    for modality in sorted(inputs, key=lambda m: MODALITY_ORDER.index(m) if m in MODALITY_ORDER else 9):
        kind = inputs[modality].rstrip("?")
        optional = inputs[modality].endswith("?")
        shape = "B, T, D + lengths" if kind == "seq" else "B, D"
        label = f"{modality} {kind}<br/>({shape})" + ("<br/>optional" if optional else "")
        lines.append(f'    {modality}["{label}"] --> head')
    inner = "scikit-learn estimator" if engine == "sklearn" else "nn.Module"
    lines.append(f'    head(["{name}<br/>{inner}"]) --> logits["logits / class scores<br/>(B, C)"]')
    lines.append("```")
    return "\n".join(lines)


def recipe_section(name: str, info: Any) -> list[str]:
    """The head's recipes (every value each sets) and its fidelity table, rendered from the registry."""
    from ser.fusion.recipe_text import fidelity_page, recipe_lines

    parts = ["## Recipes", ""]
    parts += [
        "`ser fit --recipe ser|paper` (`ser fusion show " + name + "` prints the same). A value given on the command "
        "line, in YAML or with `--set` overrides the recipe and is logged as a departure; everything a recipe does "
        "not name keeps the `TrainConfig` default.",
        "",
    ]
    for recipe in info.recipes:
        lines = recipe_lines(name, recipe)
        parts += [f"**{lines[0]}**", "", "```text", *(line.strip() for line in lines[1:]), "```", ""]
    if info.fidelity:
        parts += ["## Fidelity", ""]
        parts += [
            "How the original experiment ran, and what each recipe does about it (features come from a cache "
            "written with every encoder in eval mode: dropout noise that the originals put on their frozen "
            "encoders' features, fresh every epoch, cannot be reproduced).",
            "",
            *fidelity_page(name),
            "",
        ]
    return parts


def head_page(name: str, info: Any) -> str:
    head = read_head(info.target)
    sections = split_docstring(head["doc"])
    first, *rest_overview = sections["overview"] or [""]
    parts = [
        f"# `{name}`",
        "",
        f"{rst_to_markdown(first)}",
        "",
        "| | |",
        "|---|---|",
        f"| source | {info.source} |",
        f"| what | {info.description} |",
        f"| module | `{info.target}` |",
        f"| trained by | {'`ser.fusion.classic`' if info.engine == 'sklearn' else '`ser.fusion.train` / the engine'} |",
        "",
        "## Data flow",
        "",
        flow_diagram(name, head["inputs"], info.engine),
        "",
    ]
    if rest_overview:
        parts += [rst_to_markdown("\n\n".join(rest_overview)), ""]
    parts += ["## Tensor shapes", "", "| modality | required | input | example D (contract tests) |"]
    parts.append("|---|---|---|---|")
    for modality, kind in head["inputs"].items():
        required = "no" if kind.endswith("?") else "yes"
        shape = shape_of(modality, kind.rstrip("?"))
        parts.append(f"| {modality} | {required} | {shape} | {head['dims'].get(modality, '-')} |")
    out = "`(B, C)` logits" if info.engine == "torch" else "class probabilities `(N, C)` from the fitted estimator"
    parts += ["", f"Output: {out}; B = batch, T = frames or tokens, D = feature width, C = classes.", ""]
    parts += ["## Deviations from the source", ""]
    if sections["deviations"]:
        parts += [rst_to_markdown("\n\n".join(sections["deviations"])), ""]
    else:
        if "baseline" in info.source:
            parts += ["A baseline of this project: there is no source implementation to deviate from.", ""]
        else:
            parts += [
                "No paragraph of the module docstring is marked as a deviation; where a single option differs"
                " from the source, the option's description below says so.",
                "",
            ]
    parts += recipe_section(name, info)
    if sections["preset"]:
        parts += [rst_to_markdown("\n\n".join(sections["preset"])), ""]
    if head["fields"]:
        parts += [
            f"## Options (`--set head.NAME=VALUE`, class `{head['config']}`)",
            "",
            "| option | default | meaning |",
            "|---|---|---|",
        ]
        for field, default, doc in head["fields"]:
            parts.append(f"| `{field}` | `{default}` | {doc.replace('|', '&#124;')} |")
        parts.append("")
    parts += ["## API", "", f"::: {info.target}", "    options:", "      show_root_heading: false", ""]
    return "\n".join(parts)


def write_heads(nav: mkdocs_gen_files.Nav, heads: dict[str, Any]) -> None:
    rows = ["| head | inputs | what | source |", "|---|---|---|---|"]
    nav["Overview"] = "index.md"
    for name, info in heads.items():
        inputs = read_head(info.target)["inputs"]
        described = ", ".join(f"{m} {k}" for m, k in inputs.items())
        rows.append(f"| [`{name}`]({name}.md) | {described} | {info.description} | {info.source} |")
        with mkdocs_gen_files.open(f"heads/{name}.md", "w") as page:
            page.write(head_page(name, info))
        nav[name] = f"{name}.md"
    index = [
        "# Fusion heads",
        "",
        f"{len(heads)} entries of the registry `ser.fusion.heads.HEADS` (`ser fusion list`): "
        f"{sum(info.engine == 'torch' for info in heads.values())} neural heads and the classic "
        "`logreg` / `svm` baselines. Each page is generated from the head's module when the site is built.",
        "",
        "Inputs: `pooled` = one vector per utterance `(B, D)`; `seq` = padded frames `(B, T, D)` with lengths;",
        "a `?` marks an optional modality.",
        "",
        *rows,
        "",
        "## The contract every head follows",
        "",
        rst_to_markdown(read_head("ser.fusion.heads")["doc"]),
        "",
    ]
    with mkdocs_gen_files.open("heads/index.md", "w") as page:
        page.write("\n".join(index))


# Modules left out of the public reference: plumbing that neither a user of the Python API nor someone
# adding a head, extractor or corpus calls. Their pages are listed under "Internals" (for whoever changes
# them); a name here that matches no module fails the build, so a rename cannot leave a stale entry.
INTERNAL_MODULES = {
    "ser.atomic_files": "crash-safe file writes",
    "ser.yaml_files": "reading users' YAML files with located errors",
    "ser.processes": "process plumbing",
    "ser.options": "option text to typed values (``-O``, ``--set``, YAML)",
    "ser.devices": "checking ``--device`` / ``train.device``",
    "ser.threads": "BLAS thread counts of the fits",
    "ser.early_stopping": "the early-stopping counter of the training loops",
    "ser.cli": "the ``ser`` command line (see the command-line reference)",
    "ser.commands": "the command bodies behind the command line",
    "ser.ablate.devices": "GPU memory probing of the local grid runner",
    "ser.ablate.job": "one grid job, as the runners call it",
    "ser.ablate.state": "run-directory states and locks",
    "ser.ablate.worker": "the local runner's worker processes",
    "ser.cache.assemble": "streaming rows into a finished store",
    "ser.cache.backends": "the HDF5 / Zarr storage backends",
    "ser.cache.checksums": "per-block CRC-32 checksums",
    "ser.cache.provenance": "library and code versions recorded in a store",
    "ser.extract.decode": "decoding batches in worker processes",
    "ser.extract.ecapa_net": "the ECAPA-TDNN network behind ``ser.extract.ecapa``",
    "ser.extract.fill": "filling one store in one pass",
    "ser.extract.hf": "loading Hugging Face models, failing fast offline",
    "ser.extract.lifecycle": "resuming, extending or refusing a run's store",
    "ser.extract.options": "``-O KEY=VALUE`` family options",
    "ser.extract.plan": "batch planning",
    "ser.extract.sink": "batches into the store writer",
    "ser.extract.smile_pass": "one openSMILE run per signal",
    "ser.extract.store_config": "layout and provenance of the store a run writes",
    "ser.extract.torchrun": "multi-GPU extraction under torchrun",
    "ser.extract.update": "bringing a finished store up to date with its manifest",
    "ser.fusion.checkpoints": "the checkpoint rule of the training loops",
    "ser.fusion.departures": "departures of a fit from its recipe",
    "ser.fusion.recipe_text": "recipes and fidelity tables as text",
    "ser.manifests.audio_info": "audio durations from file headers",
    "ser.manifests.fingerprints": "row fingerprints of stores",
    "ser.predict.defaults": "prediction defaults shown by the command line",
    "ser.predict.extractors": "rebuilding a run's extractor for prediction",
}

log = logging.getLogger("mkdocs.plugins.gen_pages")


def is_internal(dotted: str) -> bool:
    return any(dotted == name or dotted.startswith(name + ".") for name in INTERNAL_MODULES)


def find_modules() -> dict[str, Path]:
    """Dotted name -> source file of every module of the package (private ``_x`` modules left out)."""
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        elif any(part.startswith("_") for part in parts):
            continue
        modules[".".join(parts)] = path
    return modules


def first_line(path: Path) -> str:
    """The summary line of a module's docstring (its first sentence line), in Markdown."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    summary = doc.split("\n\n")[0].replace("\n", " ").strip().removesuffix("::").rstrip(":")
    return _inline(summary).replace("|", "&#124;")


def page_of(dotted: str, modules: dict[str, Path]) -> str:
    """The reference page of a module, relative to ``reference/``."""
    parts = dotted.split(".")
    if modules[dotted].name == "__init__.py":
        return "/".join([*parts, "index.md"])
    return "/".join(parts) + ".md"


def relative(target: str, start: str) -> str:
    """The link from page ``start`` to page ``target`` (both relative to the docs folder)."""
    return Path(os.path.relpath(target, Path(start).parent)).as_posix()


def module_list(package: str, modules: dict[str, Path], head_pages: dict[str, str]) -> list[str]:
    """A package page's list of its direct submodules: public ones with their summary line, internal ones
    after them."""
    here = "reference/" + page_of(package, modules)
    listed, internals = [], []
    for name in (n for n in modules if n.rpartition(".")[0] == package):
        target = head_pages.get(name) or "reference/" + page_of(name, modules)
        link = f"[`{name.rpartition('.')[2]}`]({relative(target, here)})"
        if is_internal(name) and not is_internal(package):
            internals.append(link)
        else:
            listed.append(f"- {link}: {first_line(modules[name])}")
    lines = ["## Modules", "", *listed, ""] if listed else []
    if internals:
        index = relative("reference/internals/index.md", here)
        lines += [f"Internal modules (see [Internals]({index})): {', '.join(internals)}.", ""]
    return lines


def write_reference(head_pages: dict[str, str]) -> None:
    """One page per module (``reference/<dotted path>.md``), the public ones in the API reference's
    navigation, the internal ones under Internals. Head modules with a page of their own under ``heads/``
    (which carries their API) get none here; their package page links to it."""
    modules = find_modules()
    for name in INTERNAL_MODULES:
        if name not in modules:
            log.warning("docs/gen_pages.py: INTERNAL_MODULES names %s, which is no module of the package", name)
    public_nav: list[str] = []
    internal_nav: list[str] = []
    for name, path in modules.items():
        if name in head_pages:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not doc:
            log.warning("%s has no module docstring: its API page would start empty; add one", name)
        page = page_of(name, modules)
        lines = [f"::: {name}", "    options:", "      heading_level: 1", ""]
        if path.name == "__init__.py":
            lines += module_list(name, modules, head_pages)
        with mkdocs_gen_files.open(f"reference/{page}", "w") as out:
            out.write("\n".join(lines))
        mkdocs_gen_files.set_edit_path(f"reference/{page}", path.relative_to(ROOT))
        if is_internal(name):
            internal_nav.append(f"    * [{name}]({page})\n")
        else:
            depth = name.count(".")
            public_nav.append("    " * depth + f"* [{name.rpartition('.')[2]}]({page})\n")
    internals = [
        "# Internals",
        "",
        "Modules that are not part of the public API: plumbing behind the commands and the stages, which a user "
        "of the Python API, or someone adding a head, an extractor or a corpus, does not call. They are "
        "documented here for whoever changes them; their names and signatures may change without notice.",
        "",
    ]
    for name in (n for n in modules if is_internal(n)):
        link = relative("reference/" + page_of(name, modules), "reference/internals/index.md")
        internals.append(f"- [`{name}`]({link}): {first_line(modules[name])}")
    with mkdocs_gen_files.open("reference/internals/index.md", "w") as out:
        out.write("\n".join([*internals, ""]))
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as summary:
        summary.writelines([*public_nav, "* [Internals](internals/index.md)\n", *internal_nav])


def main() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from ser.fusion.heads import HEADS  # the registry and the recipes are torch-free

    heads_nav = mkdocs_gen_files.Nav()
    write_heads(heads_nav, HEADS)
    with mkdocs_gen_files.open("heads/SUMMARY.md", "w") as summary:
        summary.writelines(heads_nav.build_literate_nav())
    write_reference({info.target: f"heads/{name}.md" for name, info in HEADS.items()})
    # The navigation files feed mkdocs-literate-nav only; like docs/SUMMARY.md (exclude_docs), they are no pages.
    files = mkdocs_gen_files.FilesEditor.current().files
    for name in ("heads/SUMMARY.md", "reference/SUMMARY.md"):
        files.get_file_from_path(name).inclusion = InclusionLevel.EXCLUDED


main()
