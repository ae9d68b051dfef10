"""``txgreen.web.load_application``: every spec form, and every way it can fail."""

from __future__ import annotations

import itertools
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import txgreen
from txgreen.errors import AppImportError, TxgreenError
from txgreen.web import load_application

_names = itertools.count()


@pytest.fixture
def where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty directory that is the current one; sys.path, sys.modules and the cwd restored."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def module(directory: Path, code: str, package: str | None = None) -> str:
    """Write a module with a fresh name (in ``package``, made if needed); its dotted name."""
    name = f"app{next(_names)}"
    if package is not None:
        for part in package.split("."):
            directory = directory / part
            directory.mkdir(exist_ok=True)
            (directory / "__init__.py").touch()
        name = f"{package}.{name}"
    (directory / f"{name.rsplit('.', 1)[-1]}.py").write_text(textwrap.dedent(code))
    return name


APP = """
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"hi"]

    class Holder:
        class Inner:
            app = staticmethod(app)

    def factory():
        return app

    def broken_factory():
        raise RuntimeError("no database")

    def returns_number():
        return 42

    number = 42
"""


def test_the_spec_forms(where: Path) -> None:
    name = module(where, APP)
    app = load_application(f"{name}:app")
    assert app is sys.modules[name].app
    assert load_application(f"{name}:Holder.Inner.app") is app  # dotted attributes
    assert load_application(f"{name}:factory()") is app  # a factory, called without arguments
    assert load_application(f" {name}:factory( ) ") is app
    assert load_application(f"{name}.app") is app  # no colon: twisted.web's --wsgi form
    assert load_application(f"{name}.Holder.Inner.app") is app


def test_modules_in_packages(where: Path) -> None:
    name = module(where, APP, package="pkg.sub")
    app = load_application(f"{name}:app")
    assert load_application(f"{name}.app") is app
    assert load_application(f"{name}.factory") is sys.modules[name].factory


def test_chdir_changes_directory_and_puts_it_first_on_sys_path(where: Path) -> None:
    project = where / "project"
    project.mkdir()
    name = module(project, APP)
    with pytest.raises(AppImportError, match="no module named"):
        load_application(f"{name}:app")
    app = load_application(f"{name}:app", chdir="project")
    assert app is sys.modules[name].app
    assert os.getcwd() == str(project)
    assert sys.path[0] == str(project)


def test_the_current_directory_is_searched(where: Path) -> None:
    name = module(where, APP)
    sys.path[:] = [p for p in sys.path if p not in ("", str(where))]
    assert load_application(f"{name}:app") is sys.modules[name].app


def test_errors_are_exported_and_named() -> None:
    assert txgreen.AppImportError is AppImportError
    assert issubclass(AppImportError, TxgreenError)
    assert txgreen.web.load_application is load_application


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "does not name an application; use module:name"),
        ("app", "does not name an application; use module:name"),
        ("my-app:app", "'my-app' is not a module name"),
        (":app", "'' is not a module name"),
        ("os:", "'' is not an attribute name"),
        ("os:path(1)", "factory arguments are not supported"),
        ("os:a:b", "'a:b' is not an attribute name"),
    ],
)
def test_malformed_specs(spec: str, words: str) -> None:
    with pytest.raises(AppImportError) as info:
        load_application(spec)
    assert words in str(info.value)
    assert info.value.spec == spec
    assert not info.value.in_app_code


def test_a_spec_that_is_not_a_string() -> None:
    with pytest.raises(AppImportError, match="named by a string such as 'module:app', not 'int'"):
        load_application(42)  # type: ignore[arg-type]


def test_a_module_that_does_not_exist(where: Path) -> None:
    for spec in ("nosuch_txgreen_app:app", "nosuch_txgreen_app.app", "nosuch_pkg.sub:app"):
        with pytest.raises(AppImportError) as info:
            load_application(spec)
        message = str(info.value)
        assert "no module named 'nosuch_" in message
        assert str(where) in message  # where it looked
        assert "--chdir DIR" in message  # how to fix it
        assert info.value.__cause__ is None
        assert not info.value.in_app_code
    # A package that exists, a module in it that does not.
    (where / "realpkg").mkdir()
    (where / "realpkg" / "__init__.py").touch()
    with pytest.raises(AppImportError, match=r"no module named 'realpkg\.nope'"):
        load_application("realpkg.nope:app")


def test_a_module_whose_import_raises_keeps_its_traceback(where: Path) -> None:
    name = module(where, "x = 1\ny = x / 0\n")
    with pytest.raises(AppImportError) as info:
        load_application(f"{name}:app")
    error = info.value
    assert error.in_app_code
    assert isinstance(error.__cause__, ZeroDivisionError)
    assert f"importing the module {name!r} raised ZeroDivisionError: division by zero" in str(error)
    tb = error.__cause__.__traceback__
    files = []
    while tb is not None:
        files.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    assert files[-1] == str(where / f"{name}.py")  # the user's line is in it


def test_a_module_missing_a_dependency_is_the_modules_own_error(where: Path) -> None:
    name = module(where, "import nosuch_dependency_txgreen\n")
    for spec in (f"{name}:app", f"{name}.app"):
        with pytest.raises(AppImportError) as info:
            load_application(spec)
        assert info.value.in_app_code
        assert isinstance(info.value.__cause__, ModuleNotFoundError)
        assert "raised ModuleNotFoundError: No module named 'nosuch_dependency_txgreen'" in str(
            info.value
        )


def test_a_missing_attribute_lists_what_the_module_has(where: Path) -> None:
    name = module(where, APP)
    with pytest.raises(AppImportError) as info:
        load_application(f"{name}:application")
    message = str(info.value)
    assert f"{name} has no attribute 'application'" in message
    assert "(it has: Holder, app, broken_factory, factory, number, returns_number)" in message
    with pytest.raises(AppImportError, match=r"Holder has no attribute 'nope'"):
        load_application(f"{name}:Holder.nope")
    with pytest.raises(AppImportError, match="has no attribute 'nope'"):
        load_application(f"{name}.nope")


def test_objects_that_are_not_applications(where: Path) -> None:
    name = module(where, APP)
    with pytest.raises(AppImportError) as info:
        load_application(f"{name}:number")
    assert "number is a int (42), not a WSGI application" in str(info.value)
    assert "app(environ, start_response)" in str(info.value)
    with pytest.raises(AppImportError, match=r"the factory returned a int \(42\)"):
        load_application(f"{name}:returns_number()")
    with pytest.raises(AppImportError, match=r"cannot be called as a factory; drop the '\(\)'"):
        load_application(f"{name}:number()")


def test_a_factory_that_raises(where: Path) -> None:
    name = module(where, APP)
    with pytest.raises(AppImportError) as info:
        load_application(f"{name}:broken_factory()")
    assert info.value.in_app_code
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "calling the factory broken_factory() raised RuntimeError: no database" in str(
        info.value
    )


def test_a_chdir_that_does_not_exist(where: Path) -> None:
    with pytest.raises(AppImportError) as info:
        load_application("x:app", chdir="no/such/dir")
    assert "cannot change to the directory 'no/such/dir' (--chdir): No such file" in str(info.value)
    assert os.getcwd() == str(where)
