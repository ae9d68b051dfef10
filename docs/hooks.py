"""MkDocs hooks (``hooks:`` in mkdocs.yml): what a reader copies is what the docs test runs.

- ``on_page_markdown``: the first line of a code block that only tells tests/test_docs.py what
  to do with it (``# test: run``, ``# test: pytest``, ``# Not run: ...``) is dropped from the
  rendered page; the sources keep it, so the examples are still found and run.
- ``on_page_content``: the Sphinx roles of txgreen's docstrings (``:class:`Stream```), which
  Markdown renders as literal ``:class:`` text, become code spans that link to the API
  reference where the name is documented (through mkdocs-autorefs' optional references, so a
  name documented nowhere stays plain code, without a warning); a paragraph ending with a reST
  literal-block marker ``::`` ends with one colon.
"""

from __future__ import annotations

import bisect
import html
import re
from functools import cache
from typing import Any

# The opening fence of a Python block (indented or not, with or without attributes) followed by
# a marker line.  Only the first line of a block is a marker: tests/test_docs.py reads no other.
_MARKER_LINE = re.compile(
    r"^(?P<fence>[ \t]*```python[^\n]*\n)[ \t]*#[ \t]*"
    r"(?:test:[ \t]*(?:run|pytest)|Not run:[^\n]*)[ \t]*\n",
    re.MULTILINE,
)

_ROLE = re.compile(
    r":(?:class|meth|func|mod|attr|exc|data|obj|const):<code>(?P<tilde>~?)(?P<name>[\w.]+)"
    r"(?P<call>\(\))?</code>"
)

# Names outside txgreen that the docstrings refer to by their full path.
_FOREIGN = ("twisted.", "greenlet.", "asyncio.", "socket.", "ssl.", "threading.", "select.")

# The reference's object headings: mkdocstrings gives each the object's path as its id.
_HEADING_ID = re.compile(r'<h[1-6][^>]*\bid="(?P<id>[\w.]+)"')


def strip_markers(markdown: str) -> str:
    """Remove the test-marker line at the top of each fenced Python block."""
    return _MARKER_LINE.sub(r"\g<fence>", markdown)


@cache
def _public_names() -> frozenset[str]:
    import txgreen

    return frozenset(txgreen.__all__)


def _target(name: str, scope: str, anchors: set[str]) -> str | None:
    """The reference identifier a role's ``name`` means, seen from the object ``scope``."""
    if name == "txgreen" or name.startswith(("txgreen.", *_FOREIGN)):
        return name
    # Relative to the documented object, as Sphinx resolves it: a sibling method
    # (``:meth:`get``` in Queue.put's docstring), a member of the class, a module-level name.
    parts = scope.split(".") if scope else []
    for i in range(len(parts), 0, -1):
        candidate = ".".join([*parts[:i], name])
        if candidate in anchors:
            return candidate
    if name.split(".", 1)[0] in _public_names():
        return f"txgreen.{name}"  # documented on another page
    return None  # a builtin or a private name: plain code


def render_roles(content: str) -> str:
    """Turn rendered Sphinx roles into cross-references to the API reference."""
    headings = [(m.start(), m["id"]) for m in _HEADING_ID.finditer(content)]
    starts = [start for start, _ in headings]
    anchors = {anchor for _, anchor in headings}

    def replace(m: re.Match[str]) -> str:
        name = m["name"]
        shown = (name.rsplit(".", 1)[-1] if m["tilde"] else name) + (m["call"] or "")
        code = f"<code>{html.escape(shown, quote=False)}</code>"
        k = bisect.bisect(starts, m.start()) - 1
        target = _target(name, headings[k][1] if k >= 0 else "", anchors)
        if target is None:
            return code
        return f'<autoref identifier="{html.escape(target)}" optional>{code}</autoref>'

    return _ROLE.sub(replace, content).replace("::</p>", ":</p>")


def on_page_markdown(markdown: str, /, **kwargs: Any) -> str:
    return strip_markers(markdown)


def on_page_content(content: str, /, **kwargs: Any) -> str:
    return render_roles(content)
