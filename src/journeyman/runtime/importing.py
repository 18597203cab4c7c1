"""Bulk loads: profiles and events from a CSV or NDJSON file, through the one core.

Each row becomes a Segment call and is read exactly as ingest reads it
(:func:`journeyman.domain.ingest.read_call`: ids, limits, the event definition's JSON
Schema); a row that breaks a rule is written, with its reasons, to the rejects file and the
import goes on. The rows that pass go to a :class:`~journeyman.runtime.processor.Processor`
in batches, *quiet* unless the import triggers journeys: they land in their profiles'
history, set traits (an identify, a profile row) and consent, resolve and merge profiles as
any event does, and enter, resume and exit no journey (see
:meth:`journeyman.domain.engine.Engine.on_record`). With ``trigger``, they go through the
normal accept path instead.

Every row has a messageId: its own, the value of the ``key`` column, or one made from the
row's content. The store keeps each messageId once, so a second run of the same file
imports nothing twice, whatever stopped the first one.

A file import keeps a :class:`Checkpoint` in the store's settings after each batch is
committed: how far into the file it got, its counts and the size of the rejects file then.
A run that finds one resumes there (the rejects file is cut back to that size); a batch
that was committed just before an interruption, but not checkpointed, is read again and
its rows are duplicates. ``restart`` reads the file from the top (and still imports
nothing twice).
"""

from __future__ import annotations

import asyncio
import collections
import csv
import functools
import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec

from journeyman.domain.consent import CONSENT_EVENTS
from journeyman.domain.ingest import (
    Call,
    InvalidEvent,
    call_of,
    decode_call,
    decode_item,
    read_call,
)
from journeyman.domain.model import EventDefinition, Workspace
from journeyman.domain.reactions import REACTION_EVENTS
from journeyman.domain.state import Event
from journeyman.errors import JourneymanError
from journeyman.runtime.processor import Processor
from journeyman.storage.base import HistoryRow, Store
from journeyman.storage.codec import encode

__all__ = [
    "BATCH",
    "FORMATS",
    "KINDS",
    "Checkpoint",
    "Counts",
    "ImportFailed",
    "Importer",
    "RowReader",
    "Submit",
    "format_of",
    "only_history",
    "start_reader",
    "submitter",
]

KINDS = ("events", "profiles")
FORMATS = ("csv", "ndjson")
Kind = Literal["events", "profiles"]
BATCH = 5000  # rows a batch: a commit of its own (the processor may split it)
IN_FLIGHT = 2  # batches handed to the processor at once: one runs while one commits
READ_AHEAD = 4  # chunks being read in a pool's processes while earlier ones commit

# What an import hands on: events for the core, and events that only go in history (see
# only_history), encoded already.
Item = Event | HistoryRow
# What a submitter answers for each: accepted, duplicate, or why it was not stored.
Submit = Callable[[Sequence[Item]], Awaitable[list[str | Exception]]]

_SUFFIXES = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}
# The CSV columns of a call's envelope; every other column is a property (a trait).
_TYPES = "'type' must be track, identify, page, screen or alias"
_ENVELOPE = ("type", "event", "name", "userId", "anonymousId", "messageId", "timestamp")


class ImportFailed(JourneymanError):
    """An import that cannot go on: the file cannot be read, or the store refused a batch.
    What was committed before stays, and a new run resumes after it."""


def format_of(path: Path, given: str | None = None) -> str:
    """The format of ``path``: ``given``, else what its name ends with."""
    if given is not None:
        if given not in FORMATS:
            raise ImportFailed(f"unknown format {given!r}: use csv or ndjson")
        return given
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ImportFailed(
            f"cannot tell the format of {path.name}: name it .csv, .ndjson or .jsonl, "
            "or give --format csv|ndjson"
        )
    return found


@dataclass(slots=True)
class Counts:
    """What an import did so far."""

    read: int = 0  # rows read
    imported: int = 0  # events kept
    duplicate: int = 0  # rows whose messageId was kept before
    rejected: int = 0  # rows refused, in the rejects file


@dataclass(slots=True)
class Checkpoint:
    """How far an import of one file got, kept in the store's settings (see the module)."""

    path: str
    fingerprint: str  # of the file's first bytes: another file at the same path starts over
    offset: int = 0  # bytes of the file read and committed
    rows: int = 0  # rows of the file read and committed (the CSV header is not one)
    counts: Counts = field(default_factory=Counts)
    rejects_size: int = 0  # bytes of the rejects file then
    done: bool = False

    @staticmethod
    def key(kind: str, path: Path) -> str:
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
        return f"import:{kind}:{digest}"

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        data["counts"] = Counts(**data["counts"])
        return cls(**data)


def fingerprint(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.sha256(file.read(65536)).hexdigest()


@dataclass(slots=True)
class _Row:
    number: int  # 1-based: the line of an NDJSON file, the record of a CSV after its header
    end: int  # the offset in the file just after it
    raw: bytes | list[str]
    bad_text: bool = False  # a CSV record that is not UTF-8


@dataclass(slots=True)
class _Batch:
    events: list[Item]
    end: int
    rows: int
    rejects_size: int
    read: int
    rejected: int


class _Lines:
    """The lines of a binary file from ``offset`` on, counting the bytes read."""

    def __init__(self, file: BinaryIO, offset: int) -> None:
        self.file = file
        self.offset = offset
        self.bad = False  # a line since the last reset was not UTF-8

    def text(self) -> Iterator[str]:
        for line in self.file:
            self.offset += len(line)
            try:
                yield line.decode()
            except UnicodeDecodeError:
                self.bad = True
                yield line.decode(errors="replace")


class Importer:
    """One import of profiles or events from a file (or an uploaded stream, spooled to one).

    ``submit`` hands a batch of events to a processor (quiet, unless journeys are to be
    triggered) and answers for each; ``workspace`` gives the event definitions rows are
    read against (the current one: a publish during an import counts from the next row).
    """

    def __init__(
        self,
        kind: Kind,
        path: Path,
        fmt: str,
        *,
        workspace: Callable[[], Workspace],
        submit: Submit,
        now: Callable[[], Any],
        rejects: Path,
        key: str | None = None,
        store: Store | None = None,
        checkpoint_key: str | None = None,
        restart: bool = False,
        batch: int = BATCH,
        progress: Callable[[Counts, int], None] | None = None,
        pool: Executor | None = None,
        trigger: bool = False,
    ) -> None:
        self.kind = kind
        self.path = path
        self.format = fmt
        self.workspace = workspace
        self.submit = submit
        self.now = now
        self.rejects_path = rejects
        self.key = key
        self.store = store  # where the checkpoint is kept; None: no checkpoint
        self.checkpoint_key = checkpoint_key
        self.restart = restart
        self.batch = batch
        self.progress = progress
        self.pool = pool  # processes that read rows; None: this one
        self.trigger = trigger  # every event goes through journeys
        self.read_ahead = 2 if pool is None else READ_AHEAD
        self.counts = Counts()
        self._read_so_far = self._rejected_so_far = 0
        self.resumed_at = 0  # rows of the file done by earlier runs
        self.header: list[str] = []

    async def run(self) -> Counts:
        """Import the file; the counts of this run and the runs it resumes."""
        try:
            size_now = self.path.stat().st_size
            point = await self._start()
            self.counts = point.counts
            self._read_so_far, self._rejected_so_far = point.counts.read, point.counts.rejected
            with self.path.open("rb") as file, self._rejects(point) as rejects:
                await self._pipeline(point, file, rejects)
        except OSError as error:
            raise ImportFailed(f"cannot read {self.path}: {error.strerror or error}") from None
        point.done = True
        await self._keep(point)
        self._report(max(size_now, point.offset))
        return self.counts

    async def _start(self) -> Checkpoint:
        """Where to begin: the checkpoint of an earlier run of this file, or the top."""
        fresh = Checkpoint(str(self.path.resolve()), fingerprint(self.path))
        if self.store is None or self.checkpoint_key is None or self.restart:
            return fresh
        text = await self.store.get_setting(self.checkpoint_key)
        if text is None:
            return fresh
        try:
            point = Checkpoint.loads(text)
        except (ValueError, TypeError, KeyError):
            return fresh
        if point.fingerprint != fresh.fingerprint or not self.rejects_path.exists():
            return fresh
        point.done = False
        self.resumed_at = point.rows
        return point

    def _rejects(self, point: Checkpoint) -> Any:
        """The rejects file, cut back to what the checkpointed rows wrote."""
        rejects = self.rejects_path.open("ab")
        rejects.truncate(point.rejects_size)
        rejects.seek(point.rejects_size)
        return rejects

    async def _pipeline(self, point: Checkpoint, file: BinaryIO, rejects: BinaryIO) -> None:
        """Read the file in chunks and hand their events on, a few at a time, keeping the
        checkpoint behind the last batch whose every row was answered. Chunks are read
        ahead (in other processes, with a ``pool``) while earlier ones commit."""
        reading: collections.deque[tuple[list[_Row], asyncio.Future[_Read]]]
        reading = collections.deque()
        flying: collections.deque[tuple[asyncio.Future[list[str | Exception]], _Batch]]
        flying = collections.deque()
        try:
            for chunk in self._chunks(point, file):
                reading.append((chunk, asyncio.ensure_future(self._read(chunk))))
                if len(reading) > self.read_ahead:
                    await self._hand_on(point, rejects, *reading.popleft(), flying)
            while reading:
                await self._hand_on(point, rejects, *reading.popleft(), flying)
            while flying:
                await self._settled(point, *flying.popleft())
        finally:
            for _, reading_left in reading:
                reading_left.cancel()
            for flying_left, _ in flying:
                flying_left.cancel()

    async def _hand_on(
        self,
        point: Checkpoint,
        rejects: BinaryIO,
        chunk: list[_Row],
        reading: asyncio.Future[_Read],
        flying: collections.deque[tuple[asyncio.Future[list[str | Exception]], _Batch]],
    ) -> None:
        events, problems = await reading
        for index, found in problems:
            rejects.write(_reject_line(chunk[index], found))
        rejects.flush()
        self._read_so_far += len(chunk)
        self._rejected_so_far += len(problems)
        last = chunk[-1]
        batch = _Batch(
            events,
            last.end,
            last.number,
            rejects.tell(),
            self._read_so_far,
            self._rejected_so_far,
        )
        future = asyncio.ensure_future(self.submit(events))
        flying.append((future, batch))
        if len(flying) >= IN_FLIGHT:
            await self._settled(point, *flying.popleft())
        await asyncio.sleep(0)  # let the processor take what was handed on

    async def _read(self, chunk: list[_Row]) -> _Read:
        """The events of a chunk's rows, and the problems of the rows rejected (by index)."""
        rows = [(row.raw, row.bad_text) for row in chunk]
        now = self.now()
        if self.pool is None:
            reader = RowReader(self.kind, self.header, self.key, self.workspace(), self.trigger)
            return reader.read_all(rows, now)
        loop = asyncio.get_running_loop()
        reading = (self.kind, self.header, self.key, self.trigger)
        call = functools.partial(_read_elsewhere, reading, rows, now)
        plain, history, encoded, problems = await loop.run_in_executor(self.pool, call)
        return _unpacked(plain, history, _EVENTS(encoded)), problems

    async def _settled(
        self, point: Checkpoint, future: asyncio.Future[list[str | Exception]], batch: _Batch
    ) -> None:
        answers = await future if batch.events else []
        counts = self.counts
        for answer in answers:
            if isinstance(answer, Exception):
                raise ImportFailed(
                    f"the store refused a batch ({answer}); what was committed before stays, "
                    "and a new run resumes after it"
                )
            if answer == "duplicate":
                counts.duplicate += 1
            else:
                counts.imported += 1
        counts.read, counts.rejected = batch.read, batch.rejected
        point.offset, point.rows, point.rejects_size = batch.end, batch.rows, batch.rejects_size
        point.counts = counts
        await self._keep(point)
        self._report(batch.end)

    async def _keep(self, point: Checkpoint) -> None:
        if self.store is not None and self.checkpoint_key is not None:
            await self.store.set_setting(self.checkpoint_key, point.dumps())

    def _report(self, offset: int) -> None:
        if self.progress is not None:
            self.progress(self.counts, offset)

    def _chunks(self, point: Checkpoint, file: BinaryIO) -> Iterator[list[_Row]]:
        """The file's rows after the checkpoint, in chunks of ``batch``."""
        chunk: list[_Row] = []
        for row in self._rows(point, file):
            chunk.append(row)
            if len(chunk) >= self.batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _rows(self, point: Checkpoint, file: BinaryIO) -> Iterator[_Row]:
        if self.format == "ndjson":
            yield from self._ndjson(point, file)
        else:
            yield from self._csv(point, file)

    def _ndjson(self, point: Checkpoint, file: BinaryIO) -> Iterator[_Row]:
        file.seek(point.offset)
        number, offset = point.rows, point.offset
        while lines := file.readlines(1 << 20):  # a MiB at a time: fewer calls than a line
            for line in lines:
                offset += len(line)
                number += 1
                if line.strip():
                    yield _Row(number, offset, line)

    def _csv(self, point: Checkpoint, file: BinaryIO) -> Iterator[_Row]:
        lines = _Lines(file, 0)
        reader = csv.reader(lines.text())
        # Spreadsheets often begin a CSV file with a byte order mark: it names no column.
        self.header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
        if point.offset > lines.offset:
            file.seek(point.offset)
            lines.offset = point.offset
            reader = csv.reader(lines.text())
        number = point.rows
        for record in reader:
            number += 1
            bad, lines.bad = lines.bad, False
            if any(cell for cell in record):
                yield _Row(number, lines.offset, record, bad)


# What reading a chunk gives: its events, and (index in the chunk, problems) of the rest.
_Read = tuple[list[Item], list[tuple[int, list[dict[str, str]]]]]


@dataclass(slots=True)
class RowReader:
    """How the rows of one import become events, as ingest reads a call."""

    kind: str
    header: list[str]
    key: str | None
    workspace: Workspace
    trigger: bool = False  # every event goes through journeys: none is only history

    def read_all(self, rows: Sequence[tuple[bytes | list[str], bool]], now: datetime) -> _Read:
        """The rows' events (those that only go in history as :class:`HistoryRow` s,
        unless ``trigger``), and the problems of the others by index."""
        events: list[Item] = []
        problems = []
        definitions = self.workspace.events
        for index, (raw, bad_text) in enumerate(rows):
            try:
                event = self.read(raw, bad_text, now)
            except InvalidEvent as error:
                problems.append((index, [error.as_dict()]))
                continue
            if not self.trigger and only_history(event, definitions, self.workspace.needs):
                events.append(
                    HistoryRow(event.message_id, event.profile_id, event.name, encode(event))
                )
            else:
                events.append(event)
        return events, problems

    def read(self, raw: bytes | list[str], bad_text: bool, now: datetime) -> Event:
        """The event a row is."""
        call = self._call(raw, bad_text)
        if call.message_id is None:
            call.message_id = self._message_id(raw)
        workspace = self.workspace
        return read_call(call, workspace.events, now, workspace.views)

    def _call(self, raw: bytes | list[str], bad_text: bool) -> Call:
        if isinstance(raw, bytes):
            if self.kind == "profiles":
                return decode_call(raw, "identify")
            return _ndjson_call(raw)
        if bad_text:
            raise InvalidEvent("row", "utf-8", "the row is not UTF-8 text")
        data = _csv_call(self.kind, self.header, raw)
        kind = "identify" if self.kind == "profiles" else str(data.get("type") or "track")
        if kind not in ("track", "identify", "page", "screen", "alias"):
            raise InvalidEvent("type", "enum", _TYPES)
        return call_of(kind, data)

    def _message_id(self, raw: bytes | list[str]) -> str:
        """The row's messageId when it has none: its ``key`` value, or one made from its
        content (two rows alike are one event)."""
        if self.key is not None:
            value = self._key_value(raw)
            if value is None or value == "":
                raise InvalidEvent(self.key, "required", f"the key column {self.key!r} is empty")
            return str(value)
        content = raw if isinstance(raw, bytes) else "\x1f".join(raw).encode()
        return f"import:{self.kind}:" + hashlib.blake2b(content.strip(), digest_size=16).hexdigest()

    def _key_value(self, raw: bytes | list[str]) -> Any:
        if isinstance(raw, list):
            cells = dict(zip(self.header, raw, strict=False))
            return cells.get(self.key or "")
        data = msgspec.json.decode(raw)
        if not isinstance(data, dict):
            return None
        found = data.get(self.key or "")
        if found is None:
            inner = data.get("traits" if self.kind == "profiles" else "properties")
            found = inner.get(self.key) if isinstance(inner, dict) else None
        return found if isinstance(found, str | int) and not isinstance(found, bool) else None


# Reading rows in other processes (journeyman import's pool): each loads the workspace once.

_ELSEWHERE: dict[str, Workspace] = {}
_EVENTS = msgspec.msgpack.Decoder(list[Event]).decode
_ENCODE = msgspec.msgpack.Encoder().encode


def start_reader(load: Callable[[], Workspace]) -> None:
    """A pool process's initializer: the workspace its rows are read against."""
    _ELSEWHERE["workspace"] = load()


def _read_elsewhere(
    reading: tuple[str, list[str], str | None, bool],
    rows: list[tuple[bytes | list[str], bool]],
    now: datetime,
) -> tuple[bytes, list[HistoryRow], bytes, list[tuple[int, list[dict[str, str]]]]]:
    """In a pool process: what :meth:`RowReader.read_all` gives, packed to travel back
    cheaply: which items are history rows (a byte each), those rows, and the other
    events, encoded."""
    kind, header, key, trigger = reading
    reader = RowReader(kind, header, key, _ELSEWHERE["workspace"], trigger)
    items, problems = reader.read_all(rows, now)
    plain = bytes(isinstance(item, HistoryRow) for item in items)
    history = [item for item in items if isinstance(item, HistoryRow)]
    events = [item for item in items if not isinstance(item, HistoryRow)]
    return plain, history, _ENCODE(events), problems


def _unpacked(plain: bytes, history: list[HistoryRow], events: list[Event]) -> list[Item]:
    rows, others = iter(history), iter(events)
    return [next(rows) if flag else next(others) for flag in plain]


def _ndjson_call(line: bytes) -> Call:
    """An NDJSON line as a call: its ``type`` says which (``track`` without one)."""
    try:
        return decode_item(msgspec.Raw(line))
    except InvalidEvent as error:
        if error.field != "type" or b'"type"' in line:
            raise
    return decode_call(line, "track")


def _csv_call(kind: str, header: Sequence[str], record: Sequence[str]) -> dict[str, Any]:
    """A CSV record as a call: the envelope's columns, and every other one a property (a
    trait for profiles; ``properties.`` or ``traits.`` before a name is dropped). Empty
    cells are left out; a cell that is a JSON number, true, false, a list or an object is
    that value, any other is text."""
    call: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for name, cell in zip(header, record, strict=False):
        if cell == "" or not name:
            continue
        if name in _ENVELOPE:
            call["event" if name == "name" and kind == "events" else name] = cell
            continue
        for prefix in ("properties.", "traits."):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        values[name] = _cell(cell)
    call["traits" if kind == "profiles" else "properties"] = values
    return call


def _cell(text: str) -> Any:
    first = text[:1]
    if first in "-0123456789[{tf" and first:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _reject_line(row: _Row, problems: list[dict[str, str]]) -> bytes:
    if isinstance(row.raw, bytes):
        given: Any = row.raw.decode(errors="replace").rstrip("\r\n")
    else:
        given = row.raw
    line = {"row": row.number, "errors": problems, "input": given}
    return json.dumps(line, ensure_ascii=False).encode() + b"\n"


def submitter(processor: Processor, *, trigger: bool = False) -> Submit:
    """How an import hands a batch on: to ``processor`` through the normal accept path
    (``trigger``), or quietly. Quietly, the events that only go in history (see
    :func:`only_history`) are kept by the store in one transaction
    (:meth:`~journeyman.storage.base.Store.keep_history`), and the others go to the
    processor as quiet triggers, in the order they came."""

    async def submit(items: Sequence[Item]) -> list[str | Exception]:
        answers: list[str | Exception] = []
        for plain, run in itertools.groupby(items, lambda item: isinstance(item, HistoryRow)):
            if plain:
                rows = [item for item in run if isinstance(item, HistoryRow)]
                kept = await processor.store.keep_history(rows, processor.now())
                answers += ["accepted"] * kept + ["duplicate"] * (len(rows) - kept)
            else:
                events = [item for item in run if isinstance(item, Event)]
                answers += await processor.submit_each(events, force=True, quiet=not trigger)
        return answers

    return submit


def only_history(
    event: Event, definitions: Mapping[str, EventDefinition], needs: Collection[str] = ()
) -> bool:
    """Whether a quiet event changes nothing but its profile's history: a track, page or
    screen named by its userId, that sets no trait (no timezone, locale or traits in its
    context), changes no consent, reacts to no message, and that no history function of
    the workspace reads (``needs``: those events' names), so no segment can move on it.
    Any other (an identify, an event named by email or by an anonymous id that may have
    signed in, an order a segment counts) needs the core."""
    if event.type not in _HISTORY_ONLY or event.user_id is None or event.name in needs:
        return False
    if event.name in CONSENT_EVENTS or event.name in REACTION_EVENTS:
        return False
    context = event.context
    if context and ("timezone" in context or "locale" in context or "traits" in context):
        return False
    definition = definitions.get(event.name)
    return definition is None or definition.identity != "email"


_HISTORY_ONLY = frozenset(("track", "page", "screen"))
