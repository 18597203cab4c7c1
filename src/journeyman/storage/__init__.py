"""Storage backends behind one interface; :func:`open_store` picks one from a URL.

- ``sqlite:///path/to/journeyman.db`` (a relative path after the three slashes),
  ``sqlite:////absolute/path.db``, or ``sqlite:///:memory:``: the embedded default.
- ``postgresql://user:password@host:5432/database`` (or ``postgres://``), optionally with
  ``?pool=N``, the most connections to open (default 10): a PostgreSQL database, which
  several processes may share. Workers need one: :func:`open_shared_store`.
- ``memory://``: everything in this process's memory, for fast tests and for trying
  journeyman out. Nothing survives the process (or the store's close), and no other
  process can see it: ``journeyman trace`` and ``migrate``, which open the database from
  a process of their own, refuse it.

Every backend is a :class:`~journeyman.storage.base.Database`: the engine's port
(:class:`~journeyman.storage.base.Store`) and the console's reads
(:class:`~journeyman.storage.base.ReadModel`) on one database. PostgreSQL's is a
:class:`~journeyman.storage.base.ScaleOutStore` too. See ``docs/storage.md``.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from journeyman.errors import JourneymanError
from journeyman.storage.base import (
    Database,
    NewerSchema,
    ReadModel,
    ScaleOutStore,
    StorageUnavailable,
    Store,
)
from journeyman.storage.memory import MemoryStore
from journeyman.storage.sqlite import SQLiteStore

__all__ = [
    "MEMORY",
    "Database",
    "NewerSchema",
    "NotShared",
    "ReadModel",
    "ScaleOutStore",
    "StorageURLError",
    "StorageUnavailable",
    "Store",
    "cannot_write_now",
    "is_memory",
    "is_postgres",
    "open_shared_store",
    "open_store",
    "shown_url",
    "sqlite_path",
]


MEMORY = "memory://"  # the URL of an in-memory store


class StorageURLError(JourneymanError):
    exit_code = 2


class NotShared(JourneymanError):
    """A process that shares the database with others (a worker) was given one that
    cannot be shared: only PostgreSQL can."""


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for ``:memory:``)."""
    rest = url.removeprefix("sqlite:///")
    return None if rest == ":memory:" else Path(rest)


def shown_url(url: str) -> str:
    """``url`` as it may be shown: the password, if any, as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def cannot_write_now(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot take writes now (unreachable, full,
    locked, too slow, damaged), so that the same write may well succeed later."""
    if isinstance(error, StorageUnavailable | OSError | sqlite3.OperationalError):
        return True  # OSError: unreachable, refused, timed out, no space left
    if type(error) is sqlite3.DatabaseError:  # the file is damaged
        return True
    if "asyncpg" in sys.modules:  # only a PostgreSQL deployment loads its driver
        from journeyman.storage.postgres import cannot_write_now as postgres_cannot

        return postgres_cannot(error)
    return False


def is_memory(url: str) -> bool:
    return url.startswith("memory:")


def open_store(url: str) -> Database:
    """The backend for ``url``; call ``await store.open()`` before use."""
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        return SQLiteStore(path if path is not None else ":memory:")
    if is_postgres(url):
        # Imported here: a SQLite deployment never loads the PostgreSQL driver.
        from journeyman.storage.postgres import PostgresStore

        try:
            return PostgresStore(url)
        except ValueError as error:
            raise StorageURLError(str(error)) from None
    if is_memory(url):
        if url != MEMORY:
            raise StorageURLError(f"{url!r}: an in-memory store takes nothing after {MEMORY}")
        return MemoryStore()
    scheme = url.partition(":")[0] or url
    raise StorageURLError(
        f"unknown storage URL {url!r}: use sqlite:///path/to/journeyman.db, "
        f"postgresql://user@host/database or {MEMORY} "
        f"({scheme!r} is not a backend this version has)"
    )


def open_shared_store(url: str, user: str) -> ScaleOutStore:
    """The backend for ``url``, for ``user`` (such as "a worker"), one of several processes
    that share the database; :class:`NotShared` unless ``url`` is a PostgreSQL one."""
    store = open_store(url) if is_postgres(url) else None
    if not isinstance(store, ScaleOutStore):
        raise NotShared(f"{user} needs a PostgreSQL database, not {shown_url(url)}")
    return store
