"""Numbered schema versions of each backend, and the rule for applying them.

A database records the version it was last migrated to in its ``meta`` table (key
``schema``). Opening a store applies every step above that version, in order, each in one
transaction with the new version number; ``journeyman migrate`` does the same and prints
the steps. A database whose version is above the latest step this journeyman knows was
written by a newer one and is refused, before any statement could harm it.

A step is never edited once released: a change to the schema is a new step at the end of
the list. SQLite's version 1 is the schema of the first release, unchanged, so that every
existing file opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from journeyman.storage.backfills import BACKFILLS_POSTGRES, BACKFILLS_SQLITE
from journeyman.storage.base import LEFT, NewerSchema
from journeyman.storage.drafts import DRAFTS_POSTGRES, DRAFTS_SQLITE
from journeyman.storage.runs import RUNS_POSTGRES, RUNS_SQLITE

__all__ = ["POSTGRES", "SQLITE", "Migration", "latest", "pending"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: what it does, in words and in SQL."""

    version: int
    what: str
    sql: str

    def __str__(self) -> str:
        return f"{self.version}: {self.what}"


# A publish stores the whole workspace as one version: its files as written (JSON of
# {file: text}, ``${ENV}`` references unresolved) and its journeys' versions (JSON of
# {name: version}). Processes poll max(version) and load a new one when it appears.
WORKSPACES_SQLITE = """
CREATE TABLE IF NOT EXISTS workspaces (
    version INTEGER PRIMARY KEY, digest TEXT NOT NULL, files BLOB NOT NULL,
    journeys TEXT NOT NULL, published_at INTEGER NOT NULL);
"""
WORKSPACES_POSTGRES = """
CREATE TABLE workspaces (
    version INTEGER PRIMARY KEY, digest TEXT NOT NULL, files BYTEA NOT NULL,
    journeys TEXT NOT NULL, published_at BIGINT NOT NULL);
"""

# Who is in each segment, since when (ms): a copy of each profile's `segments`, kept in
# the same commit from its segment_entered and segment_exited events, so that a segment's
# size is a count over an index and its members a page of it.
SEGMENTS_SQLITE = """
CREATE TABLE IF NOT EXISTS segment_members (
    segment TEXT NOT NULL, profile_id TEXT NOT NULL, since INTEGER NOT NULL,
    PRIMARY KEY (segment, profile_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS segment_members_profile ON segment_members (profile_id);
"""
SEGMENTS_POSTGRES = """
CREATE TABLE segment_members (
    segment TEXT COLLATE "C" NOT NULL, profile_id TEXT COLLATE "C" NOT NULL,
    since BIGINT NOT NULL, PRIMARY KEY (segment, profile_id));
CREATE INDEX segment_members_profile ON segment_members (profile_id);
"""

# Report counters (see journeyman.domain.goals): entries, arms, ends and goals of each
# journey version, added to in the commit that keeps the instance, so that a report reads
# a few rows and never scans instances.
COUNTERS_SQLITE = """
CREATE TABLE IF NOT EXISTS report_counters (
    journey TEXT NOT NULL, version INTEGER NOT NULL, arm TEXT NOT NULL, goal TEXT NOT NULL,
    metric TEXT NOT NULL, n INTEGER NOT NULL, total REAL NOT NULL,
    PRIMARY KEY (journey, version, arm, goal, metric)) WITHOUT ROWID;
"""
COUNTERS_POSTGRES = """
CREATE TABLE report_counters (
    journey TEXT COLLATE "C" NOT NULL, version INTEGER NOT NULL, arm TEXT COLLATE "C" NOT NULL,
    goal TEXT COLLATE "C" NOT NULL, metric TEXT COLLATE "C" NOT NULL, n BIGINT NOT NULL,
    total DOUBLE PRECISION NOT NULL, PRIMARY KEY (journey, version, arm, goal, metric));
"""

# Keys of report counters that count once (Tally.once: a message opened, whatever how
# often): a key is kept by the commit that first counts it, so a later one adds nothing.
ONCE_SQLITE = """
CREATE TABLE IF NOT EXISTS counted_once (key TEXT PRIMARY KEY) WITHOUT ROWID;
"""
ONCE_POSTGRES = """
CREATE TABLE counted_once (key TEXT COLLATE "C" PRIMARY KEY);
"""

# A profile's clock (Profile.wake_at): when its segments' answers can next change with no
# event. Kept beside its state, so that due clocks are found along an index as waits are.
CLOCKS_SQLITE = """
ALTER TABLE profiles ADD COLUMN wake_at INTEGER;
CREATE INDEX IF NOT EXISTS profiles_wake ON profiles (wake_at) WHERE wake_at IS NOT NULL;
"""
CLOCKS_POSTGRES = """
ALTER TABLE profiles ADD COLUMN wake_at BIGINT, ADD COLUMN leased_until BIGINT;
CREATE INDEX profiles_wake ON profiles (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX profiles_leased ON profiles (leased_until) WHERE leased_until IS NOT NULL;
"""

# Who paused, resumed, stopped or published what, and when (see storage.base.AuditEntry),
# read per journey ("" for the workspace), newest first.
AUDIT_SQLITE = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, via TEXT NOT NULL,
    command TEXT NOT NULL, journey TEXT NOT NULL, instances INTEGER,
    journey_version INTEGER, workspace_version INTEGER);
CREATE INDEX IF NOT EXISTS audit_journey ON audit (journey, id);
"""
AUDIT_POSTGRES = """
CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at BIGINT NOT NULL,
    actor TEXT NOT NULL, via TEXT NOT NULL, command TEXT NOT NULL,
    journey TEXT COLLATE "C" NOT NULL, instances BIGINT, journey_version INTEGER,
    workspace_version INTEGER);
CREATE INDEX audit_journey ON audit (journey, id);
"""

# The steps' numbers in the report counters (see journeyman.domain.funnel), for what was
# stored before they were counted there, from the step log and the instances: each
# journey version's lines by step and outcome, the instances that left each step (LEFT),
# those merged away, and the instances waiting at each step now. The step log is
# complete, so its counts replace the counters'. It keeps no arm: these are in arm ""
# (every instance) only. One statement each, aggregated by the database in the
# migration's transaction: nothing is read into the process.
_BY_STEP = "FROM steps s JOIN instances i ON i.id = s.instance_id WHERE s.step IS NOT NULL"
_REPLACE = "ON CONFLICT (journey, version, arm, goal, metric) DO UPDATE SET n = excluded.n;"
_INTO = "INSERT INTO report_counters (journey, version, arm, goal, metric, n, total)"
STEP_COUNTERS = f"""
{_INTO} SELECT s.journey, i.version, '', '', 'step:' || s.step || ':' || s.outcome, count(*), 0
{_BY_STEP} GROUP BY s.journey, i.version, s.step, s.outcome
{_REPLACE}
{_INTO} SELECT s.journey, i.version, '', '', 'step:' || s.step || ':left', count(*), 0
{_BY_STEP} AND ({LEFT}) GROUP BY s.journey, i.version, s.step
{_REPLACE}
{_INTO} SELECT s.journey, i.version, '', '', 'ended:merged', count(*), 0
{_BY_STEP} AND s.outcome = 'merged' AND s.detail LIKE 'ended:%' GROUP BY s.journey, i.version
{_REPLACE}
{_INTO} SELECT journey, version, '', '', 'step:' || step || ':waiting_now', count(*), 0
FROM instances WHERE status = 'waiting' GROUP BY journey, version, step
{_REPLACE}
"""
STEP_COUNTERS_WHAT = "steps' numbers in the report counters, counted from the step log"

BACKFILLS_WHAT = "segment backfills and sizes: each backfill's progress, entries and exits by hour"

# A membership row was written twice, in the table and in an index by profile that only a
# merge read (to drop the anonymous profile's rows): a merge now finds them in the stored
# profile's own segments, and each row written is one index entry fewer.
MEMBERS_BY_PROFILE_WHAT = "segment members: no index by profile, one write fewer per change"
MEMBERS_BY_PROFILE = "DROP INDEX IF EXISTS segment_members_profile;"

SQLITE = [
    Migration(
        1,
        "profiles, identities, events, instances, outbox, step log, journeys",
        """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY, state BLOB NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    kind TEXT NOT NULL, value TEXT NOT NULL, profile_id TEXT NOT NULL,
    PRIMARY KEY (kind, value)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, message_id TEXT UNIQUE, profile_id TEXT NOT NULL,
    name TEXT NOT NULL, body BLOB NOT NULL, received_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_profile ON events (profile_id, seq);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY, profile_id TEXT NOT NULL, journey TEXT NOT NULL,
    version INTEGER NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL, wake_at INTEGER,
    state BLOB NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS instances_running ON instances (profile_id)
    WHERE status != 'ended';
CREATE INDEX IF NOT EXISTS instances_wake ON instances (wake_at)
    WHERE status = 'waiting' AND wake_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,
    channel TEXT NOT NULL, journey TEXT NOT NULL, step TEXT NOT NULL,
    profile_id TEXT NOT NULL, instance_id TEXT NOT NULL, effect BLOB NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due_at INTEGER NOT NULL,
    leased_until INTEGER, detail TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due_at) WHERE status IN ('queued', 'retry');
CREATE INDEX IF NOT EXISTS outbox_profile ON outbox (profile_id, id);
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY, profile_id TEXT NOT NULL, instance_id TEXT,
    journey TEXT NOT NULL, step TEXT, outcome TEXT NOT NULL, detail TEXT NOT NULL,
    at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS steps_profile ON steps (profile_id, seq);
CREATE INDEX IF NOT EXISTS steps_journey ON steps (journey, step);
CREATE TABLE IF NOT EXISTS journeys (
    name TEXT NOT NULL, version INTEGER NOT NULL, digest TEXT NOT NULL,
    document BLOB NOT NULL, published_at INTEGER NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS journey_states (name TEXT PRIMARY KEY, state TEXT NOT NULL);
""",
    ),
    # A bus message that a worker could not apply after several tries: kept as it came, to
    # be replayed (see journeyman.scaleout.worker). SQLite keeps the same table so that the
    # schema, the admin API and a move into PostgreSQL are the same on both.
    Migration(
        2,
        "dead letters: messages a worker could not apply",
        """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, partition_no INTEGER NOT NULL, headers TEXT NOT NULL,
    body BLOB NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL, last_failed_at INTEGER NOT NULL);
""",
    ),
    Migration(3, "workspace versions: every document of each publish", WORKSPACES_SQLITE),
    Migration(4, "segment members: who is in each segment, and since when", SEGMENTS_SQLITE),
    Migration(
        5,
        "accounts: the traits of each account (group) that profiles belong to",
        """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, state BLOB NOT NULL, updated_at INTEGER NOT NULL);
""",
    ),
    Migration(6, "report counters: entries, arms, ends and goals of each journey", COUNTERS_SQLITE),
    Migration(7, "profile clocks: when segments move with time alone", CLOCKS_SQLITE),
    Migration(8, "audit: who paused, resumed, stopped or published what, and when", AUDIT_SQLITE),
    Migration(9, "scheduled runs: each run's progress through its audience", RUNS_SQLITE),
    Migration(10, "counted once: reactions counted once per message in the report", ONCE_SQLITE),
    Migration(11, BACKFILLS_WHAT, BACKFILLS_SQLITE),
    Migration(
        12, "drafts: each journey's draft from the editor, who saved it and when", DRAFTS_SQLITE
    ),
    Migration(13, STEP_COUNTERS_WHAT, STEP_COUNTERS),
    Migration(14, MEMBERS_BY_PROFILE_WHAT, MEMBERS_BY_PROFILE),
]

# The same tables and the same encoding (msgpack documents, times in whole milliseconds),
# so that a SQLite database moves over row for row. What PostgreSQL adds is for many
# workers sharing one database: ``instances.leased_until`` lets a worker claim due timers
# as the outbox's ``leased_until`` lets it claim deliveries (both with FOR UPDATE SKIP
# LOCKED), and ``instances.seq`` keeps the order instances were first stored in, which
# SQLite has as its rowid. Text sorts byte for byte (COLLATE "C") as in SQLite.
POSTGRES = [
    Migration(
        1,
        "profiles, identities, events, instances, outbox, step log, journeys",
        """
CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE profiles (
    id TEXT COLLATE "C" PRIMARY KEY, state BYTEA NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE identities (
    kind TEXT COLLATE "C" NOT NULL, value TEXT COLLATE "C" NOT NULL,
    profile_id TEXT COLLATE "C" NOT NULL, PRIMARY KEY (kind, value));
CREATE INDEX identities_profile ON identities (profile_id);
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id TEXT COLLATE "C" UNIQUE,
    profile_id TEXT COLLATE "C" NOT NULL, name TEXT NOT NULL, body BYTEA NOT NULL,
    received_at BIGINT NOT NULL);
CREATE INDEX events_profile ON events (profile_id, seq);
CREATE TABLE instances (
    id TEXT COLLATE "C" PRIMARY KEY, seq BIGINT GENERATED ALWAYS AS IDENTITY,
    profile_id TEXT COLLATE "C" NOT NULL, journey TEXT COLLATE "C" NOT NULL,
    version INTEGER NOT NULL, step TEXT COLLATE "C" NOT NULL, status TEXT NOT NULL,
    wake_at BIGINT, leased_until BIGINT, state BYTEA NOT NULL, updated_at BIGINT NOT NULL);
CREATE INDEX instances_profile ON instances (profile_id, seq);
CREATE INDEX instances_journey ON instances (journey) WHERE status <> 'ended';
CREATE INDEX instances_wake ON instances (wake_at)
    WHERE status = 'waiting' AND wake_at IS NOT NULL;
CREATE INDEX instances_leased ON instances (leased_until) WHERE leased_until IS NOT NULL;
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key TEXT COLLATE "C" UNIQUE NOT NULL,
    kind TEXT NOT NULL, channel TEXT NOT NULL, journey TEXT COLLATE "C" NOT NULL,
    step TEXT NOT NULL, profile_id TEXT COLLATE "C" NOT NULL, instance_id TEXT NOT NULL,
    effect BYTEA NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    due_at BIGINT NOT NULL, leased_until BIGINT, detail TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE INDEX outbox_due ON outbox (due_at, id) WHERE status IN ('queued', 'retry');
CREATE INDEX outbox_profile ON outbox (profile_id, id);
CREATE INDEX outbox_journey ON outbox (journey, id);
CREATE TABLE steps (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, profile_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT, journey TEXT COLLATE "C" NOT NULL, step TEXT COLLATE "C",
    outcome TEXT NOT NULL, detail TEXT NOT NULL, at BIGINT NOT NULL);
CREATE INDEX steps_profile ON steps (profile_id, seq);
CREATE INDEX steps_journey ON steps (journey, step);
CREATE TABLE journeys (
    name TEXT COLLATE "C" NOT NULL, version INTEGER NOT NULL, digest TEXT NOT NULL,
    document BYTEA NOT NULL, published_at BIGINT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE journey_states (name TEXT COLLATE "C" PRIMARY KEY, state TEXT NOT NULL);
""",
    ),
    # A delivery outcome the engine must learn is settled by the worker that delivered it
    # and applied by the worker that owns its profile's partition: ``outbox.tell_at`` keeps
    # it until then (see journeyman.scaleout.worker). Stop and resume page through a
    # journey's running instances in id order.
    Migration(
        2,
        "delivery outcomes waiting for their profile's worker; running instances by journey",
        """
ALTER TABLE outbox ADD COLUMN tell_at BIGINT;
CREATE INDEX outbox_tell ON outbox (tell_at) WHERE tell_at IS NOT NULL;
DROP INDEX instances_journey;
CREATE INDEX instances_journey ON instances (journey, id) WHERE status <> 'ended';
""",
    ),
    Migration(
        3,
        "dead letters: messages a worker could not apply",
        """
CREATE TABLE dead_letters (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, partition_no INTEGER NOT NULL,
    headers TEXT NOT NULL, body BYTEA NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL,
    first_failed_at BIGINT NOT NULL, last_failed_at BIGINT NOT NULL);
""",
    ),
    Migration(4, "workspace versions: every document of each publish", WORKSPACES_POSTGRES),
    Migration(5, "segment members: who is in each segment, and since when", SEGMENTS_POSTGRES),
    Migration(
        6,
        "accounts: the traits of each account (group) that profiles belong to",
        """
CREATE TABLE accounts (
    id TEXT COLLATE "C" PRIMARY KEY, state BYTEA NOT NULL, updated_at BIGINT NOT NULL);
""",
    ),
    Migration(
        7, "report counters: entries, arms, ends and goals of each journey", COUNTERS_POSTGRES
    ),
    Migration(8, "profile clocks: when segments move with time alone", CLOCKS_POSTGRES),
    Migration(9, "audit: who paused, resumed, stopped or published what, and when", AUDIT_POSTGRES),
    Migration(10, "scheduled runs: each run's progress through its audience", RUNS_POSTGRES),
    Migration(11, "counted once: reactions counted once per message in the report", ONCE_POSTGRES),
    Migration(12, BACKFILLS_WHAT, BACKFILLS_POSTGRES),
    Migration(
        13, "drafts: each journey's draft from the editor, who saved it and when", DRAFTS_POSTGRES
    ),
    Migration(14, STEP_COUNTERS_WHAT, STEP_COUNTERS),
    Migration(15, MEMBERS_BY_PROFILE_WHAT, MEMBERS_BY_PROFILE),
]


def latest(steps: Sequence[Migration]) -> int:
    return steps[-1].version


def pending(found: int | None, steps: Sequence[Migration], where: str) -> list[Migration]:
    """The steps a database at version ``found`` (None: empty) still needs, in order.

    Raises :class:`NewerSchema` for a database a newer journeyman has migrated.
    """
    if found is not None and found > latest(steps):
        raise NewerSchema(
            f"{where} has schema version {found}, newer than this journeyman "
            f"({latest(steps)}): upgrade journeyman"
        )
    return [step for step in steps if step.version > (found or 0)]
