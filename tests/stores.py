"""The storage backends the suite runs against, chosen by one switch.

A test that takes the ``store`` fixture (or ``store_url``, or ``backend``) runs once for
each selected backend. Select them with ``pytest --backend NAME`` (repeatable) or
``JOURNEYMAN_TEST_BACKENDS=NAME,NAME``; by default every backend that can run here does.
Asking for a backend that cannot run here is an error, not a silent skip.

A backend is one entry in :data:`BACKENDS`: its name, a context manager that makes a fresh,
empty database for one test and yields its storage URL (and removes the database
afterwards), whether what it stores is still there after close and reopen, and how to
tell why it cannot run here. PostgreSQL joins as one more entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from journeyman.storage import Store, open_store, sqlite_path
from journeyman.storage.sqlite import SCHEMA_VERSION

__all__ = ["BACKENDS", "ENV", "Backend", "run"]

T = TypeVar("T")

ENV = "JOURNEYMAN_TEST_BACKENDS"


def _always() -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    database: Callable[[Path], AbstractContextManager[str]]  # a fresh database: its URL
    newer_schema: Callable[[str], None] | None = None  # mark it as written by a newer version
    durable: bool = True  # what it stores is there again after close and reopen
    # One process owns the database, so opening it releases claims a dead process left.
    single_process: bool = True
    missing: Callable[[], str | None] = _always  # why it cannot run here, or None

    def __str__(self) -> str:
        return self.name


@contextmanager
def _sqlite_file(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder / 'journeyman.db'}"


@contextmanager
def _sqlite_memory(folder: Path) -> Iterator[str]:
    yield "sqlite:///:memory:"


def _sqlite_newer_schema(url: str) -> None:
    """What a newer version might do: raise the version and rework a table."""
    path = sqlite_path(url)
    assert path is not None
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
        db.execute("DROP INDEX outbox_due")
        db.execute("ALTER TABLE outbox RENAME COLUMN due_at TO next_attempt_at")


BACKENDS = {
    backend.name: backend
    for backend in (
        Backend("sqlite-file", _sqlite_file, newer_schema=_sqlite_newer_schema),
        Backend("sqlite-memory", _sqlite_memory, durable=False),
    )
}


def run(store: Store, test: Callable[[], Awaitable[T]]) -> T:
    """Open ``store``, await ``test()``, close the store: all inside one ``asyncio.run``."""

    async def main() -> T:
        await store.open()
        try:
            return await test()
        finally:
            await store.close()

    return asyncio.run(main())


# the switch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run the storage tests against this backend ({', '.join(BACKENDS)}); "
        f"repeat for more; default: ${ENV} (comma-separated), else every available one",
    )


_SELECTED = pytest.StashKey[list[Backend]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SELECTED] = _select(config.getoption("--backend"), os.environ.get(ENV, ""))


def _select(options: list[str], env: str) -> list[Backend]:
    names = [n.strip() for option in options or [env] for n in option.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise pytest.UsageError(
            f"unknown storage backend {', '.join(unknown)}: choose from {', '.join(BACKENDS)}"
        )
    if not names:
        return [b for b in BACKENDS.values() if b.missing() is None]
    chosen = [BACKENDS[n] for n in dict.fromkeys(names)]
    for backend in chosen:
        reason = backend.missing()
        if reason is not None:
            raise pytest.UsageError(f"storage backend {backend.name} cannot run here: {reason}")
    return chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        selected = metafunc.config.stash[_SELECTED]
        # A test of what survives a reopen runs only on backends that keep anything.
        if metafunc.definition.get_closest_marker("durable"):
            selected = [b for b in selected if b.durable]
        if metafunc.definition.get_closest_marker("newer_schema"):
            selected = [b for b in selected if b.newer_schema is not None]
        metafunc.parametrize("backend", selected, ids=[b.name for b in selected])


@pytest.fixture
def store_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database of the backend under test."""
    with backend.database(tmp_path) as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Store:
    """A store on a fresh database, not open yet: open it inside the test's event loop."""
    return open_store(store_url)
