"""Which PostgreSQL failures say the database cannot take work now.

One answer serves the API (a 503: the client retries the same call) and the workers (a
message that met it is tried again without counting against it, so an outage never turns
good messages into dead letters). Anything else is the work's own fault: a worker keeps
the message as a dead letter after a few tries, and the partition moves on.
"""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import pytest

from journeyman.storage import StorageUnavailable, cannot_write_now
from journeyman.storage.postgres import PostgresStore

STORE = PostgresStore("postgresql://postgres@127.0.0.1:5432/journeyman")

AWAY = [
    pytest.param(ConnectionRefusedError(111, "Connection refused"), id="refused"),
    pytest.param(ConnectionResetError(104, "Connection reset by peer"), id="reset"),
    pytest.param(TimeoutError(), id="timed out"),
    pytest.param(
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        id="connection lost",
    ),
    pytest.param(asyncpg.ConnectionFailureError("server closed the connection"), id="failure"),
    pytest.param(asyncpg.ClientCannotConnectError("cannot connect"), id="cannot connect"),
    pytest.param(asyncpg.InterfaceError("connection is closed"), id="connection closed"),
    pytest.param(asyncpg.InterfaceError("pool is closing"), id="pool closed"),
    pytest.param(asyncpg.TooManyConnectionsError("too many clients"), id="too many connections"),
    pytest.param(asyncpg.DiskFullError("no space left on device"), id="disk full"),
    pytest.param(asyncpg.OutOfMemoryError("out of memory"), id="out of memory"),
    pytest.param(asyncpg.AdminShutdownError("terminating connection"), id="admin shutdown"),
    pytest.param(asyncpg.CrashShutdownError("crash of another server process"), id="crash"),
    pytest.param(asyncpg.CannotConnectNowError("the database system is starting up"), id="start"),
    pytest.param(
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        id="read-only after a failover",
    ),
    pytest.param(asyncpg.SerializationError("could not serialize access"), id="serialization"),
    pytest.param(asyncpg.DeadlockDetectedError("deadlock detected"), id="deadlock"),
    pytest.param(asyncpg.QueryCanceledError("canceling statement"), id="statement cancelled"),
    pytest.param(asyncpg.LockNotAvailableError("could not obtain lock"), id="lock not available"),
    pytest.param(StorageUnavailable("cannot open postgresql://..."), id="pool not opened"),
]

OWN_FAULT = [
    pytest.param(asyncpg_base.DataError("invalid input for query argument $1"), id="bad argument"),
    pytest.param(asyncpg.DataError("data exception"), id="data exception"),
    pytest.param(
        asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        id="untranslatable character",
    ),
    pytest.param(asyncpg.StringDataRightTruncationError("value too long"), id="too long"),
    pytest.param(asyncpg.NumericValueOutOfRangeError("out of range"), id="out of range"),
    pytest.param(asyncpg.InvalidTextRepresentationError("invalid input syntax"), id="syntax"),
    pytest.param(asyncpg.UniqueViolationError("duplicate key value"), id="unique violation"),
    pytest.param(asyncpg.NotNullViolationError("null value in column"), id="not null"),
    pytest.param(asyncpg.CheckViolationError("violates check constraint"), id="check"),
    pytest.param(asyncpg.UndefinedTableError('relation "events" does not exist'), id="no table"),
    pytest.param(asyncpg_base.ProtocolError("unexpected message"), id="protocol"),
    pytest.param(
        asyncpg_base.UnsupportedClientFeatureError("not supported"), id="unsupported feature"
    ),
    pytest.param(ValueError("not a journeyman value"), id="value error"),
    pytest.param(KeyError("missing"), id="key error"),
]


@pytest.mark.parametrize("error", AWAY)
def test_a_database_that_is_away_or_busy_is_a_503_and_costs_a_message_no_try(
    error: BaseException,
) -> None:
    assert cannot_write_now(error)
    assert STORE.unreachable(error)


@pytest.mark.parametrize("error", OWN_FAULT)
def test_a_bad_value_or_a_broken_rule_is_the_works_own_fault(error: BaseException) -> None:
    assert not cannot_write_now(error)
    assert not STORE.unreachable(error)
