"""The documentation's examples run, and every public name is documented.

Every fenced ```python block in README.md and docs/*.md whose first line is ``# test: run`` is
run as a program in a subprocess; a ``# test: pytest`` block is run as a test module with
pytest.  Each must exit with status 0 without logging an unhandled error.  The examples assert
their own results, so a changed behaviour fails here instead of silently making the docs wrong.

The subprocesses are started a few ahead of the test that checks them (one per CPU), so the
examples' interpreter start-ups overlap; each is still bounded by ``SUBPROCESS_TIMEOUT``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import txgreen

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
MARKERS = {"# test: run": "run", "# test: pytest": "pytest"}
SUBPROCESS_TIMEOUT = 30

# Nothing here depends on the reactor under test: run once, not once per reactor.
pytestmark = pytest.mark.single_reactor


@dataclass(frozen=True)
class Example:
    page: Path
    line: int  # 1-based line of the opening fence
    kind: str  # "run" or "pytest"
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def collect_examples() -> list[Example]:
    examples = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            code = m.group(1)
            first = code.split("\n", 1)[0].strip()
            if first in MARKERS:
                line = text.count("\n", 0, m.start()) + 1
                examples.append(Example(page, line, MARKERS[first], code))
    return examples


EXAMPLES = collect_examples()


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


class ExampleRunner:
    """Runs examples in subprocesses, starting the next few before their tests ask."""

    def __init__(self, order: list[Example], workdir: Path, ahead: int) -> None:
        self.order = order
        self.workdir = workdir
        self.ahead = ahead
        self.procs: dict[Example, subprocess.Popen[str]] = {}

    def _start(self, example: Example) -> None:
        if example in self.procs:
            return
        where = self.workdir / f"example{len(self.procs)}"
        where.mkdir()
        if example.kind == "run":
            script = where / "example.py"
            cmd = [sys.executable, str(script)]
        else:
            script = where / "test_example.py"
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
        script.write_text(example.code, encoding="utf-8")
        # The example must not inherit this run's pytest settings (PYTEST_ADDOPTS and friends).
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        self.procs[example] = subprocess.Popen(
            cmd,
            cwd=where,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def outcome(self, example: Example) -> Outcome:
        self._start(example)
        if example in self.order:
            i = self.order.index(example)
            for upcoming in self.order[i + 1 : i + 1 + self.ahead]:
                self._start(upcoming)
        proc = self.procs[example]
        try:
            out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(
                f"{example.id} did not finish within {SUBPROCESS_TIMEOUT} s\n"
                f"--- stdout\n{out}\n--- stderr\n{err}"
            )
        return Outcome(proc.returncode, out, err)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def runner(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExampleRunner]:
    # Only the examples whose tests were selected, in the order they will run.
    order: list[Example] = []
    for item in request.session.items:
        if isinstance(item, pytest.Function) and item.originalname == "test_doc_example":
            example = item.callspec.params["example"]
            assert isinstance(example, Example)
            order.append(example)
    r = ExampleRunner(order, tmp_path_factory.mktemp("doc_examples"), ahead=os.cpu_count() or 2)
    yield r
    r.close()


def test_examples_were_found() -> None:
    # Guard against a broken extractor passing vacuously: every page has a runnable example.
    pages_with_examples = {e.page for e in EXAMPLES}
    assert pages_with_examples == set(PAGES), sorted(
        str(p.relative_to(ROOT)) for p in set(PAGES) - pages_with_examples
    )
    assert {e.kind for e in EXAMPLES} == {"run", "pytest"}


@pytest.mark.in_hub  # it only waits for a subprocess: nothing here needs a green thread
@pytest.mark.timeout(SUBPROCESS_TIMEOUT + 30)  # the subprocess timeout must fire first
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_doc_example(example: Example, runner: ExampleRunner) -> None:
    got = runner.outcome(example)
    report = f"{example.id} ({example.kind})\n--- stdout\n{got.stdout}\n--- stderr\n{got.stderr}"
    assert got.returncode == 0, report
    assert "Unhandled error" not in got.stdout + got.stderr, report
    if example.kind == "run":
        assert "Traceback" not in got.stderr, report
    else:
        assert re.search(r"\b\d+ passed\b", got.stdout), report


# Names in txgreen.__all__ that are re-exported from another package, so their docstring is
# that package's business; each must be the very object it claims to be.
REEXPORTS = {"GreenletExit": "greenlet"}


def test_reexports_are_the_original_objects() -> None:
    import greenlet

    assert txgreen.GreenletExit is greenlet.GreenletExit
    assert set(REEXPORTS) <= set(txgreen.__all__)


def _mentions() -> list[str]:
    """The docs' code spans and headings: where a public name counts as documented."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    spans = re.findall(r"`([^`\n]+)`", text)
    headings = re.findall(r"^#+ (.*)$", text, re.MULTILINE)
    return spans + headings


@pytest.mark.parametrize("name", sorted(txgreen.__all__))
def test_public_name_has_docstring_and_docs(name: str) -> None:
    obj = getattr(txgreen, name)
    if name not in REEXPORTS:
        assert obj.__module__.startswith("txgreen"), f"{name} comes from {obj.__module__}"
        assert (obj.__doc__ or "").strip(), f"txgreen.{name} has no docstring"
    word = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
    assert any(word.search(m) for m in _mentions()), f"txgreen.{name} is not in the docs"


# Every public method and property (of txgreen.__all__ and txgreen.stackless.__all__, inherited
# ones included) has a docstring: tests/test_reference.py, next to the API reference's checks.


def test_every_docs_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w-]+\.md)\s*$", nav, re.MULTILINE))
    assert listed == {p.name for p in DOCS.glob("*.md")}
