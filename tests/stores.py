"""The storage backends the suite runs against, chosen by one switch.

A test that takes the ``store`` fixture (or ``store_url``, or ``backend``) runs once for
each selected backend. Select them with ``pytest --backend NAME`` (repeatable) or
``JOURNEYMAN_TEST_BACKENDS=NAME,NAME``; by default every backend that can run here does.
Asking for a backend that cannot run here is an error, not a silent skip.

A backend is one entry in :data:`BACKENDS`: its name, a context manager that makes a fresh,
empty database for one test and yields its storage URL (and removes the database
afterwards), whether what it stores is still there after close and reopen, how to read
its rows directly, and how to tell why it cannot run here. Markers narrow a test to the
backends it makes sense on: ``durable`` (the data outlives the store, so a reopen or
another process finds it), ``newer_schema``, ``shared`` (several processes at once),
``move_target`` (``journeyman migrate --from`` moves SQLite into it) and ``latency`` (its
calls take time, on a thread or a server, so the runtime's work overlaps them: tests of
that overlap).

``memory`` is journeyman's own in-memory store (``memory://``): one process, nothing kept,
and every call done before the caller's task gives the event loop up.

PostgreSQL runs on the server that ``JOURNEYMAN_TEST_POSTGRES`` names (default
``postgresql://postgres@127.0.0.1:5432/test``): each test gets a database of its own,
``jm_test_<random>``, dropped afterwards even when the test fails. Where no server
answers, the default run leaves PostgreSQL out, and asking for it is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from journeyman.storage import Database, open_store, sqlite_path
from journeyman.storage.migrations import POSTGRES, latest
from journeyman.storage.sqlite import SCHEMA_VERSION
from tests.waiting import eventually

__all__ = ["BACKENDS", "ENV", "Backend", "run"]

T = TypeVar("T")

ENV = "JOURNEYMAN_TEST_BACKENDS"
POSTGRES_ENV = "JOURNEYMAN_TEST_POSTGRES"
POSTGRES_SERVER = os.environ.get(POSTGRES_ENV, "postgresql://postgres@127.0.0.1:5432/test")

Rows = list[tuple[Any, ...]]


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
    # the rows a query gives, read beside whatever has the database open
    rows: Callable[[str, str], Rows] | None = None
    tables: Callable[[str], list[str]] | None = None  # the names of the database's tables
    move_target: bool = False  # `journeyman migrate --from sqlite:///...` moves into it
    # Its calls take time (a thread, a disk, a server): a commit is still under way while
    # the runtime reads and runs the next batch.
    latency: bool = True

    def __str__(self) -> str:
        return self.name


@contextmanager
def _sqlite_file(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder / 'journeyman.db'}"


@contextmanager
def _sqlite_memory(folder: Path) -> Iterator[str]:
    yield "sqlite:///:memory:"


@contextmanager
def _memory(folder: Path) -> Iterator[str]:
    yield "memory://"


def _sqlite_newer_schema(url: str) -> None:
    """What a newer version might do: raise the version and rework a table."""
    path = sqlite_path(url)
    assert path is not None
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
        db.execute("DROP INDEX outbox_due")
        db.execute("ALTER TABLE outbox RENAME COLUMN due_at TO next_attempt_at")


def _sqlite_rows(url: str, query: str) -> Rows:
    """Read-only, beside a running server (WAL allows it)."""
    path = sqlite_path(url)
    assert path is not None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(query).fetchall()


def _sqlite_tables(url: str) -> list[str]:
    query = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    return [name for (name,) in _sqlite_rows(url, query)]


# PostgreSQL


def _on(server: str, database: str) -> str:
    """The URL of ``database`` on the server of the URL ``server``."""
    return urlunsplit(urlsplit(server)._replace(path=f"/{database}"))


async def _admin(statement: str) -> None:
    db = await asyncpg.connect(POSTGRES_SERVER, timeout=10)
    try:
        await db.execute(statement)
    finally:
        await db.close()


async def _create(name: str) -> None:
    """CREATE DATABASE, which fails while anyone else is connected to its template (the
    server is shared): try again for a few seconds."""

    async def created() -> bool:
        try:
            await _admin(f'CREATE DATABASE "{name}"')
        except asyncpg.ObjectInUseError:
            return False
        return True

    await eventually(created, f"the template to be free to create {name}", timeout=10)


@contextmanager
def _postgres_database(folder: Path) -> Iterator[str]:
    """A database of its own for one test, dropped afterwards whatever happened."""
    name = f"jm_test_{secrets.token_hex(6)}"
    asyncio.run(_create(name))
    try:
        yield _on(POSTGRES_SERVER, name)
    finally:
        # FORCE: a connection the test left open (a killed server's) must not keep it.
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _postgres_rows(url: str, query: str) -> Rows:
    async def fetch() -> Rows:
        db = await asyncpg.connect(url, timeout=10)
        try:
            return [tuple(row) for row in await db.fetch(query)]
        finally:
            await db.close()

    return asyncio.run(fetch())


def _postgres_tables(url: str) -> list[str]:
    query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    return [name for (name,) in _postgres_rows(url, query)]


def _postgres_newer_schema(url: str) -> None:
    """What a newer version might do: raise the version and rework a table."""
    newer = latest(POSTGRES) + 1
    for statement in (
        f"UPDATE meta SET value = '{newer}' WHERE key = 'schema'",
        "DROP INDEX outbox_due",
        "ALTER TABLE outbox RENAME COLUMN due_at TO next_attempt_at",
    ):
        _postgres_rows(url, statement)


@functools.cache
def _postgres_missing() -> str | None:
    async def probe() -> None:
        db = await asyncpg.connect(POSTGRES_SERVER, timeout=5)
        await db.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return f"no PostgreSQL server at {POSTGRES_SERVER} (${POSTGRES_ENV}): {error}"
    return None


BACKENDS = {
    backend.name: backend
    for backend in (
        Backend(
            "sqlite-file",
            _sqlite_file,
            newer_schema=_sqlite_newer_schema,
            rows=_sqlite_rows,
            tables=_sqlite_tables,
        ),
        Backend("sqlite-memory", _sqlite_memory, durable=False),
        # journeyman's own in-memory store (memory://): one process, nothing kept
        Backend("memory", _memory, durable=False, latency=False),
        Backend(
            "postgresql",
            _postgres_database,
            newer_schema=_postgres_newer_schema,
            # Other processes may share the database: opening it leaves their claims alone.
            single_process=False,
            move_target=True,
            missing=_postgres_missing,
            rows=_postgres_rows,
            tables=_postgres_tables,
        ),
    )
}


def run(store: Database, test: Callable[[], Awaitable[T]]) -> T:
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
        if metafunc.definition.get_closest_marker("shared"):
            selected = [b for b in selected if not b.single_process]
        if metafunc.definition.get_closest_marker("move_target"):
            selected = [b for b in selected if b.move_target]
        if metafunc.definition.get_closest_marker("latency"):
            selected = [b for b in selected if b.latency]
        metafunc.parametrize("backend", selected, ids=[b.name for b in selected])


@pytest.fixture
def store_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database of the backend under test."""
    with backend.database(tmp_path) as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Database:
    """A store on a fresh database, not open yet: open it inside the test's event loop."""
    return open_store(store_url)
