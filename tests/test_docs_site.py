"""The documentation site: built with ``mkdocs build --strict`` into a temporary folder, then read back.

* no raw reStructuredText role (``:class:`X```, ``:func:``, ...) shows on any page: docstrings
  cross-reference with autorefs links (``[`X`][ser.module.X]``) or plain code;
* the diagrams render with no network: every page with a Mermaid block loads the bundled Mermaid, and
  the theme takes a global ``mermaid`` instead of fetching its own;
* no generated API page is empty; internal modules are listed under "Internals", not beside the public
  API (``INTERNAL_MODULES`` in ``docs/gen_pages.py``);
* every field of a public dataclass has a docstring, so the API pages show all of them (static check).

Building the site takes 10-30 s on 2 CPU cores: the tests that read it are ``slow``.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):(?:<code>|`)")
MERMAID_JS = "javascripts/mermaid/mermaid.min.js"
PACKAGE = REPO_ROOT / "ser"


def internal_modules() -> dict[str, str]:
    """``INTERNAL_MODULES`` of docs/gen_pages.py, read without running the generator."""
    tree = ast.parse((REPO_ROOT / "docs" / "gen_pages.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "INTERNAL_MODULES" for t in node.targets):
            value: dict[str, str] = ast.literal_eval(node.value)
            return value
    raise AssertionError("docs/gen_pages.py defines no INTERNAL_MODULES")


def is_internal(module: str, internal: dict[str, str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in internal)


def article_text(html: str) -> str:
    match = re.search(r"<article[^>]*>(.*?)</article>", html, re.S)
    assert match, "no <article> in the page"
    text = re.sub(r"<[^>]+>", " ", match.group(1))
    return re.sub(r"\s+", " ", text.replace("&para;", " ")).strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    # No --quiet: it drops warnings before --strict counts them, and the build would pass with them.
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("INFO")]
    assert done.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(warnings)
    return out


def pages(site: Path) -> list[Path]:
    found = sorted(site.rglob("*.html"))
    assert len(found) > 100, f"only {len(found)} pages built"
    return found


@pytest.mark.slow
def test_no_page_shows_a_raw_rest_role(site: Path) -> None:
    shown = {}
    for page in pages(site):
        count = len(ROLE.findall(page.read_text(encoding="utf-8")))
        if count:
            shown[page.relative_to(site).as_posix()] = count
    assert not shown, (
        f"{sum(shown.values())} raw reST roles on {len(shown)} pages (write [`Name`][ser.dotted.path] or `Name` "
        f"in the docstring instead): {shown}"
    )


@pytest.mark.slow
def test_cross_references_resolve_to_links(site: Path) -> None:
    """Docstring cross-references became links (autorefs), not left as bracketed text."""
    html = (site / "reference" / "ser" / "predict" / "model" / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'<a class="autorefs autorefs-internal"[^>]*href="([^"]+)"', html)
    assert "#ser.predict.model.Prediction" in links, links
    assert "../extractors/#ser.predict.extractors" in links, links
    unresolved = [p.relative_to(site).as_posix() for p in pages(site) if "][ser." in p.read_text(encoding="utf-8")]
    assert not unresolved, f"unresolved autorefs links shown as text on {unresolved}"


@pytest.mark.slow
def test_every_diagram_page_loads_the_bundled_mermaid(site: Path) -> None:
    diagram_pages = [p for p in pages(site) if 'class="mermaid"' in p.read_text(encoding="utf-8")]
    names = {p.relative_to(site).as_posix() for p in diagram_pages}
    assert "index.html" in names, "the home page has no Mermaid diagram"
    assert "heads/fleser/index.html" in names, "a head page has no Mermaid diagram"
    for page in diagram_pages:
        html = page.read_text(encoding="utf-8")
        sources = re.findall(r'<script src="([^"]*mermaid[^"]*)"', html)
        assert sources, f"{page.relative_to(site)} has a diagram but loads no Mermaid script"
        for source in sources:
            assert not source.startswith(("http:", "https:", "//")), f"{page.relative_to(site)} loads {source}"
            assert (page.parent / source).resolve() == (site / MERMAID_JS).resolve(), source
    bundled = (site / MERMAID_JS).read_text(encoding="utf-8")
    assert 'globalThis["mermaid"]' in bundled, "the bundled file does not define a global mermaid"
    assert (site / "javascripts" / "mermaid" / "LICENSE").is_file(), "Mermaid's licence is not shipped beside it"


def test_theme_uses_a_global_mermaid_before_its_cdn() -> None:
    """The bundled copy is only used because the theme checks for a global ``mermaid`` first; an upgrade of
    mkdocs-material that stops doing so would bring the CDN back."""
    import material

    bundles = list((Path(material.__file__).parent / "templates" / "assets" / "javascripts").glob("bundle.*.min.js"))
    assert len(bundles) == 1, bundles
    script = bundles[0].read_text(encoding="utf-8")
    assert re.search(r'typeof mermaid\s*==\s*"undefined"\|\|mermaid instanceof Element\?\w+\("https://', script), (
        "mkdocs-material no longer checks for a global mermaid before loading it from a CDN"
    )


@pytest.mark.slow
def test_no_reference_page_is_empty(site: Path) -> None:
    thin = {}
    for page in sorted((site / "reference").rglob("index.html")):
        text = article_text(page.read_text(encoding="utf-8"))
        if len(text.split()) < 12:
            thin[page.relative_to(site).as_posix()] = text
    assert not thin, f"near-empty API pages: {thin}"
    package = article_text((site / "reference" / "ser" / "manifests" / "index.html").read_text(encoding="utf-8"))
    for module in ("schema", "protocols", "labels", "corpora"):
        assert module in package, f"ser.manifests' page does not list {module}"


VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class NavLinks(HTMLParser):
    """The site navigation's links (``md-nav__link``), each with the titles of the sections around it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[list[str]] = []  # one entry per open <li class="md-nav__item">: its title text
        self.depths: list[int] = []
        self.depth = 0
        self.links: list[tuple[str, tuple[str, ...]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_TAGS:
            return
        self.depth += 1
        classes = (dict(attrs).get("class") or "").split()
        if tag == "li" and "md-nav__item" in classes:
            self.stack.append([])
            self.depths.append(self.depth)
        elif tag == "a" and "md-nav__link" in classes and self.stack:
            sections = tuple(" ".join(words).strip() for words in self.stack[:-1])
            self.links.append((dict(attrs).get("href") or "", sections))
        elif tag == "nav" and self.stack:
            self.stack[-1].append("\0")  # the title ends where the nested navigation starts

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:
            return
        if tag == "li" and self.depths and self.depths[-1] == self.depth:
            self.stack.pop()
            self.depths.pop()
        self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.stack and "\0" not in self.stack[-1] and data.strip():
            self.stack[-1].append(data.strip())


@pytest.mark.slow
def test_internal_modules_are_listed_apart_from_the_public_api(site: Path) -> None:
    internal = internal_modules()
    assert {"ser.atomic_files", "ser.yaml_files"} <= set(internal)
    html = (site / "reference" / "ser" / "predict" / "model" / "index.html").read_text(encoding="utf-8")
    parser = NavLinks()
    parser.feed(html)
    placed: dict[str, tuple[str, ...]] = {}
    for href, sections in parser.links:
        if "#" in href:
            continue  # the page's table of contents
        target = (site / "reference" / "ser" / "predict" / "model" / href).resolve()
        try:
            parts = target.relative_to((site / "reference").resolve()).parts
        except ValueError:
            continue
        if parts and parts[0] == "ser":
            placed[".".join(parts)] = tuple(s.replace("\0", "").strip() for s in sections)
    assert "ser.atomic_files" in placed and "ser.predict.model" in placed, sorted(placed)
    for module, sections in placed.items():
        under_internals = "Internals" in sections
        assert under_internals == is_internal(module, internal), (module, sections)
    listing = article_text((site / "reference" / "internals" / "index.html").read_text(encoding="utf-8"))
    for module in internal:
        assert module in listing, f"{module} is missing from the Internals page"


def public_dataclasses() -> list[tuple[str, ast.ClassDef]]:
    internal = internal_modules()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if is_internal(module, internal) or any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            decorators = [ast.unparse(d) for d in getattr(node, "decorator_list", [])]
            dataclass = any(d == "dataclass" or d.startswith("dataclass(") for d in decorators)
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and dataclass:
                found.append((f"{module}.{node.name}", node))
    return found


def test_every_public_dataclass_field_has_a_docstring() -> None:
    """mkdocstrings shows only documented members: an undocumented field is missing from its class's page."""
    classes = public_dataclasses()
    names = {name for name, _ in classes}
    assert {"ser.predict.model.Prediction", "ser.predict.model.Request", "ser.fusion.config.FitConfig"} <= names
    missing = []
    for name, node in classes:
        for index, statement in enumerate(node.body):
            if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
                continue
            if statement.target.id.startswith("_") or "ClassVar" in ast.unparse(statement.annotation):
                continue
            following = node.body[index + 1] if index + 1 < len(node.body) else None
            documented = (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            )
            if not documented:
                missing.append(f"{name}.{statement.target.id}")
    assert not missing, f"{len(missing)} dataclass fields without a docstring (add one after the field): {missing}"
