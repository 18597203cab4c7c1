"""The layers keep to their ports: read from the source, so a new import that crosses a
boundary fails here, not in a deployment that lacks the driver it pulls in.

- only the storage backends talk to PostgreSQL's driver (asyncpg);
- only the scale-out package talks to NATS;
- nothing outside storage asks which backend it holds (an ``isinstance`` on a backend
  class): it asks for the port it needs (``open_shared_store``);
- the domain and the runtime never reach up into the scale-out package or the web UI.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import journeyman

PACKAGE = Path(journeyman.__file__).parent
BACKENDS = {"PostgresStore", "SQLiteStore"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    """Every module of the package: its path below the package (``storage/sqlite.py``)
    and its syntax tree."""
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> set[str]:
    """The full names of the modules a module imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def backend_checks(tree: ast.Module) -> list[int]:
    """The lines of ``isinstance(x, PostgresStore)`` and the like (tuples too)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            classes = node.args[1:] if len(node.args) == 2 else []
            for arg in classes:
                parts = arg.elts if isinstance(arg, ast.Tuple) else [arg]
                names = {getattr(p, "id", None) or getattr(p, "attr", None) for p in parts}
                if names & BACKENDS:
                    lines.append(node.lineno)
    return lines


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def test_the_boundary_checks_see_what_they_look_for() -> None:
    tree = ast.parse(
        "import asyncpg\nfrom nats.aio.msg import Msg\n"
        "def f(s):\n    from journeyman.web import views\n"
        "    return isinstance(s, (int, storage.PostgresStore))\n"
    )
    assert {"asyncpg", "nats.aio.msg", "journeyman.web.views"} <= imported(tree)
    assert backend_checks(tree) == [5]


def test_only_the_storage_backends_import_the_postgresql_driver() -> None:
    found = [
        path
        for path, tree in modules()
        if not path.startswith("storage/")
        and any(under(name, "asyncpg") for name in imported(tree))
    ]
    assert found == []


def test_only_the_scale_out_package_imports_nats() -> None:
    found = [
        path
        for path, tree in modules()
        if not path.startswith("scaleout/") and any(under(name, "nats") for name in imported(tree))
    ]
    assert found == []


def test_nothing_outside_storage_asks_which_backend_it_holds() -> None:
    found = {
        path: lines
        for path, tree in modules()
        if not path.startswith("storage/") and (lines := backend_checks(tree))
    }
    assert found == {}


def test_the_domain_and_the_runtime_never_import_the_scale_out_package_or_the_web_ui() -> None:
    upward = ("journeyman.scaleout", "journeyman.web")
    found = {
        path: sorted(name for name in imported(tree) if any(under(name, up) for up in upward))
        for path, tree in modules()
        if path.startswith(("domain/", "runtime/"))
    }
    assert {path: names for path, names in found.items() if names} == {}
