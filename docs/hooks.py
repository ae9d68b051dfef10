"""MkDocs hooks (``hooks:`` in mkdocs.yml): what a reader copies is what the docs test runs.

- ``on_page_markdown``: the first line of a code block that only tells tests/test_docs.py what
  to do with it (``# test: run``, ``# test: pytest``, ``# Not run: ...``) is dropped from the
  rendered page; the sources keep it, so the examples are still found and run.
- ``on_page_content``: the Sphinx roles of txgreen's docstrings (``:class:`Stream```), which
  Markdown renders as literal ``:class:`` text, become code spans that link to the API
  reference when the name is documented there (through mkdocs-autorefs' optional references,
  so a name documented nowhere stays plain code, without a warning); a paragraph ending with a
  reST literal-block marker ``::`` ends with one colon.
"""

from __future__ import annotations

import html
import re
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

# Names outside txgreen that the docstrings refer to; everything else is looked up in txgreen.
_FOREIGN = ("twisted.", "greenlet.", "asyncio.", "socket.", "ssl.", "threading.", "select.")


def strip_markers(markdown: str) -> str:
    """Remove the test-marker line at the top of each fenced Python block."""
    return _MARKER_LINE.sub(r"\g<fence>", markdown)


def _role_to_ref(m: re.Match[str]) -> str:
    name = m["name"]
    shown = name.rsplit(".", 1)[-1] if m["tilde"] else name
    shown += m["call"] or ""
    ident = name if name.startswith(("txgreen", *_FOREIGN)) else f"txgreen.{name}"
    return (
        f'<autoref identifier="{html.escape(ident)}" optional>'
        f"<code>{html.escape(shown, quote=False)}</code></autoref>"
    )


def render_roles(content: str) -> str:
    """Turn rendered Sphinx roles into (optional) cross-references to the API reference."""
    content = _ROLE.sub(_role_to_ref, content)
    return content.replace("::</p>", ":</p>")


def on_page_markdown(markdown: str, /, **kwargs: Any) -> str:
    return strip_markers(markdown)


def on_page_content(content: str, /, **kwargs: Any) -> str:
    return render_roles(content)
