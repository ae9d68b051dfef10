"""The API reference (docs/reference/) covers the public API, and the docs hooks do their job.

The reference pages are mkdocstrings directives (``::: txgreen.Stream``); ``make docs`` builds
them strictly, so a directive naming nothing fails there.  These tests check, without building
the site, that the directives cover every public name: each name of ``txgreen.__all__`` and
``txgreen.stackless.__all__`` is the object of a directive, or a member a module directive
renders; the pytest plugin's markers and options are on its page; and every public function,
class, method and property has a docstring to render.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pytest

import txgreen
import txgreen.stackless
from test_docs import EXAMPLES, FENCE, MARKERS, PAGES, REEXPORTS

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
REFERENCE_PAGES = sorted(REFERENCE.glob("*.md"))
# A directive and its indented YAML options: ``::: txgreen.web`` / ``    options:`` / ...
DIRECTIVE = re.compile(r"^::: *(?P<path>[\w.]+)[ \t]*\n(?P<options>(?:[ \t]+\S[^\n]*\n)*)", re.M)

pytestmark = pytest.mark.single_reactor


def _resolve(path: str) -> Any:
    """The object a directive's dotted path names (a module, or an attribute of one)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def _members_option(options: str) -> list[str] | Literal[False] | None:
    """The ``members:`` option of a directive: a list, ``false``, or None when not given."""
    m = re.search(r"^\s*members:\s*(.*)$", options, re.M)
    if m is None:
        return None
    value = m.group(1).strip()
    if value.lower() == "false":
        return False
    if value.startswith("["):
        return [v.strip() for v in value.strip("[]").split(",") if v.strip()]
    # A YAML block list on the following lines.
    rest = options[m.end() :]
    return re.findall(r"^\s*-\s*(\w+)\s*$", rest, re.M)


def documented_objects() -> list[Any]:
    """Every object the reference pages render: directive targets and modules' members."""
    objects: list[Any] = []
    for page in REFERENCE_PAGES:
        for d in DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            obj = _resolve(d["path"])
            objects.append(obj)
            members = _members_option(d["options"])
            if isinstance(obj, ModuleType) and members is not False:
                names: list[str] = members if members is not None else obj.__all__
                objects.extend(getattr(obj, n) for n in names)
            elif inspect.isclass(obj) and isinstance(members, list):
                objects.extend(getattr(obj, n) for n in members)
    return objects


def test_reference_pages_are_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r"\breference/([\w-]+\.md)\s*$", nav, re.M))
    assert listed == {p.name for p in REFERENCE_PAGES}


@pytest.mark.parametrize(
    ("module", "name"),
    [("txgreen", n) for n in sorted(txgreen.__all__)]
    + [("txgreen.stackless", n) for n in sorted(txgreen.stackless.__all__)],
)
def test_public_name_is_in_the_reference(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    if module == "txgreen" and name in REEXPORTS:
        # Documented by its own package: the reference says where it comes from.
        text = "\n".join(p.read_text(encoding="utf-8") for p in REFERENCE_PAGES)
        assert f"{module}.{name}" in text, f"{module}.{name} is not in docs/reference/"
        return
    assert any(o is obj for o in documented_objects()), (
        f"{module}.{name} is in no ::: directive of docs/reference/*.md"
    )


def test_pytest_plugin_markers_and_options_are_documented() -> None:
    source = (ROOT / "src" / "txgreen" / "pytest_plugin.py").read_text(encoding="utf-8")
    options = re.findall(r"addoption\(\s*\"(--[\w-]+)\"", source)
    inis = re.findall(r"addini\(\s*\"(\w+)\"", source)
    markers = re.findall(r"addinivalue_line\(\s*\"markers\",\s*\"(\w+)", source)
    assert options, "the plugin's command-line options were not found"
    assert inis, "the plugin's ini options were not found"
    assert markers, "the plugin's markers were not found"
    page = (REFERENCE / "pytest.md").read_text(encoding="utf-8")
    missing = [
        n for n in [*options, *inis, *(f"@pytest.mark.{m}" for m in markers)] if f"`{n}" not in page
    ]
    assert missing == [], f"docs/reference/pytest.md does not document {missing}"


# -- docstrings: what the reference renders must exist ---------------------------------------


def _undocumented_members(cls: type) -> list[str]:
    """Public methods and properties of ``cls`` without a docstring, inherited ones included
    when txgreen defines them (a private base's public method is part of the class's API)."""
    seen: set[str] = set()
    missing = []
    for klass in cls.__mro__:
        if not (klass.__module__ or "").startswith("txgreen"):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_") or attr in seen:
                continue
            seen.add(attr)
            if isinstance(value, classmethod | staticmethod):
                value = value.__func__
            if (inspect.isfunction(value) or isinstance(value, property)) and not (
                value.__doc__ or ""
            ).strip():
                missing.append(attr if klass is cls else f"{attr} (from {klass.__name__})")
    return missing


def _public(module: ModuleType) -> list[tuple[str, Any]]:
    names = [n for n in module.__all__ if not (module is txgreen and n in REEXPORTS)]
    return [(f"{module.__name__}.{n}", getattr(module, n)) for n in sorted(names)]


PUBLIC = _public(txgreen) + _public(txgreen.stackless)


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_object_and_its_members_have_docstrings(name: str, obj: Any) -> None:
    assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
    if inspect.isclass(obj):
        assert _undocumented_members(obj) == [], f"{name}: no docstring on these members"


# -- docs/hooks.py: the rendered code blocks carry no test markers -----------------------------


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_strips_markers_from_every_page() -> None:
    hooks = _hooks()
    examples_per_page = {p: 0 for p in PAGES}
    for e in EXAMPLES:
        examples_per_page[e.page] += 1
    assert sum(examples_per_page.values()) > 0
    for page in PAGES:
        source = page.read_text(encoding="utf-8")
        rendered = hooks.on_page_markdown(source, page=None, config=None, files=None)
        blocks = [m.group(1) for m in FENCE.finditer(rendered)]
        # The same blocks, none of them starting with a marker any more...
        assert len(blocks) == len(FENCE.findall(source)), page
        firsts = [b.split("\n", 1)[0].strip() for b in blocks]
        assert not [f for f in firsts if f in MARKERS or f.startswith("# Not run")], page
        # ...while the sources still hold them, so tests/test_docs.py runs the examples.
        marked = [m for m in FENCE.findall(source) if m.split("\n", 1)[0].strip() in MARKERS]
        assert len(marked) == examples_per_page[page], page


def test_hook_keeps_other_comments_and_indented_blocks() -> None:
    hooks = _hooks()
    sample = (
        "Text.\n\n"
        "```python\n# test: run\nimport txgreen  # test: run stays here\n```\n\n"
        "- item\n\n    ```python\n    # Not run: a fragment.\n    x = 1\n    ```\n\n"
        "```python\n# an ordinary comment\ny = 2\n```\n"
    )
    out = hooks.strip_markers(sample)
    assert out == (
        "Text.\n\n"
        "```python\nimport txgreen  # test: run stays here\n```\n\n"
        "- item\n\n    ```python\n    x = 1\n    ```\n\n"
        "```python\n# an ordinary comment\ny = 2\n```\n"
    )


def test_hook_turns_roles_into_optional_references() -> None:
    hooks = _hooks()
    html = (
        "<p>Raises :class:<code>txgreen.Timeout</code>; see :meth:<code>Stream.read</code> "
        "and :class:<code>~twisted.internet.defer.Deferred</code>, like this::</p>"
    )
    assert hooks.render_roles(html) == (
        '<p>Raises <autoref identifier="txgreen.Timeout" optional><code>txgreen.Timeout'
        '</code></autoref>; see <autoref identifier="txgreen.Stream.read" optional><code>'
        'Stream.read</code></autoref> and <autoref identifier="twisted.internet.defer.Deferred"'
        " optional><code>Deferred</code></autoref>, like this:</p>"
    )
    # A relative name is looked up around the object whose docstring it is in, as Sphinx
    # does; a name that is neither there nor public stays plain code.
    page = (
        '<h3 id="txgreen.Queue">Queue</h3><h4 id="txgreen.Queue.get">get</h4>'
        '<h4 id="txgreen.Queue.put">put</h4><p>See :meth:<code>get</code>, '
        ":exc:<code>KeyboardInterrupt</code>.</p>"
    )
    assert hooks.render_roles(page).endswith(
        '<p>See <autoref identifier="txgreen.Queue.get" optional><code>get</code></autoref>, '
        "<code>KeyboardInterrupt</code>.</p>"
    )


def test_built_page_has_no_marker(tmp_path: Path) -> None:
    # One real page through MkDocs with the hook, as `make docs` renders it (without the
    # API reference, so it takes a second).
    pytest.importorskip("mkdocs")
    docs = tmp_path / "docs"
    docs.mkdir()
    page = "timeouts.md"
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert "\n# test: run\n" in text
    (docs / "index.md").write_text(text, encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\ntheme: mkdocs\nmarkdown_extensions: [pymdownx.superfences]\n"
        f"hooks: [{ROOT / 'docs' / 'hooks.py'}]\n",
        encoding="utf-8",
    )
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-q"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    built = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert built.count("<pre") >= text.count("```python"), "the code blocks were not rendered"
    assert "test: run" not in built
    assert "test: pytest" not in built


# Pages another piece of work owns for now; each gets its link there.
_NO_REFERENCE_LINK_YET: set[str] = set()


def test_every_guide_links_to_the_reference() -> None:
    missing = [
        p.name
        for p in sorted((ROOT / "docs").glob("*.md"))
        if p.name not in _NO_REFERENCE_LINK_YET
        and not re.search(
            r"^API reference: \[[^\]]+\]\(reference/[\w.#-]+\)\.$",
            p.read_text(encoding="utf-8"),
            re.M,
        )
    ]
    assert missing == [], f"no 'API reference: [...](reference/...)' line at the end of {missing}"
