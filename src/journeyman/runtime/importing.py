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
import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
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
from journeyman.storage.base import Store

__all__ = [
    "BATCH",
    "FORMATS",
    "KINDS",
    "Checkpoint",
    "Counts",
    "ImportFailed",
    "Importer",
    "Submit",
    "format_of",
    "only_history",
    "submitter",
]

KINDS = ("events", "profiles")
FORMATS = ("csv", "ndjson")
Kind = Literal["events", "profiles"]
BATCH = 5000  # rows a batch: a commit of its own (the processor may split it)
IN_FLIGHT = 2  # batches handed to the processor at once: one runs while one commits

# What a submitter answers for each event: accepted, duplicate, or why it was not stored.
Submit = Callable[[Sequence[Event]], Awaitable[list[str | Exception]]]

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
    events: list[Event]
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

    def raw(self) -> Iterator[bytes]:
        for line in self.file:
            self.offset += len(line)
            yield line

    def text(self) -> Iterator[str]:
        for line in self.raw():
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
        self.counts = Counts()
        self.resumed_at = 0  # rows of the file done by earlier runs
        self.header: list[str] = []

    async def run(self) -> Counts:
        """Import the file; the counts of this run and the runs it resumes."""
        try:
            size_now = self.path.stat().st_size
            point = await self._start()
            self.counts = point.counts
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
        """Read batches and hand them on, a few at a time, keeping the checkpoint behind
        the last batch whose every row was answered."""
        flying: collections.deque[tuple[asyncio.Future[list[str | Exception]], _Batch]]
        flying = collections.deque()
        try:
            for batch in self._batches(point, file, rejects):
                future = asyncio.ensure_future(self.submit(batch.events))
                flying.append((future, batch))
                if len(flying) >= IN_FLIGHT:
                    await self._settled(point, *flying.popleft())
                await asyncio.sleep(0)  # let the processor take what was handed on
            while flying:
                await self._settled(point, *flying.popleft())
        finally:
            for left, _ in flying:
                left.cancel()

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

    def _batches(self, point: Checkpoint, file: BinaryIO, rejects: BinaryIO) -> Iterator[_Batch]:
        """The file's rows after the checkpoint, read into events in batches; rejected
        rows go to ``rejects`` as they are met."""
        events: list[Event] = []
        read, rejected = self.counts.read, self.counts.rejected
        row = _Row(point.rows, point.offset, b"")
        for row in self._rows(point, file):
            read += 1
            try:
                events.append(self._event(row))
            except InvalidEvent as error:
                rejected += 1
                rejects.write(_reject_line(row, [error.as_dict()]))
            if len(events) >= self.batch:
                rejects.flush()
                yield _Batch(events, row.end, row.number, rejects.tell(), read, rejected)
                events = []
        rejects.flush()
        yield _Batch(events, row.end, row.number, rejects.tell(), read, rejected)

    def _rows(self, point: Checkpoint, file: BinaryIO) -> Iterator[_Row]:
        if self.format == "ndjson":
            yield from self._ndjson(point, file)
        else:
            yield from self._csv(point, file)

    def _ndjson(self, point: Checkpoint, file: BinaryIO) -> Iterator[_Row]:
        file.seek(point.offset)
        number, offset = point.rows, point.offset
        for line in file:
            offset += len(line)
            number += 1
            if line.strip():
                yield _Row(number, offset, line)

    def _csv(self, point: Checkpoint, file: BinaryIO) -> Iterator[_Row]:
        lines = _Lines(file, 0)
        reader = csv.reader(lines.text())
        self.header = [name.strip() for name in next(reader, [])]
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

    def _event(self, row: _Row) -> Event:
        """The event a row is, read as ingest reads a call."""
        call = self._call(row)
        if call.message_id is None:
            call.message_id = self._message_id(row)
        workspace = self.workspace()
        return read_call(call, workspace.events, self.now(), workspace.views)

    def _call(self, row: _Row) -> Call:
        if isinstance(row.raw, bytes):
            if self.kind == "profiles":
                return decode_call(row.raw, "identify")
            return _ndjson_call(row.raw)
        if row.bad_text:
            raise InvalidEvent("row", "utf-8", "the row is not UTF-8 text")
        data = _csv_call(self.kind, self.header, row.raw)
        kind = "identify" if self.kind == "profiles" else str(data.get("type") or "track")
        if kind not in ("track", "identify", "page", "screen", "alias"):
            raise InvalidEvent("type", "enum", _TYPES)
        return call_of(kind, data)

    def _message_id(self, row: _Row) -> str:
        """The row's messageId when it has none: its ``key`` value, or one made from its
        content (two rows alike are one event)."""
        if self.key is not None:
            value = self._key_value(row)
            if value is None or value == "":
                raise InvalidEvent(self.key, "required", f"the key column {self.key!r} is empty")
            return str(value)
        content = row.raw if isinstance(row.raw, bytes) else "\x1f".join(row.raw).encode()
        return f"import:{self.kind}:" + hashlib.blake2b(content.strip(), digest_size=16).hexdigest()

    def _key_value(self, row: _Row) -> Any:
        if isinstance(row.raw, list):
            cells = dict(zip(self.header, row.raw, strict=False))
            return cells.get(self.key or "")
        data = msgspec.json.decode(row.raw)
        if not isinstance(data, dict):
            return None
        found = data.get(self.key or "")
        if found is None:
            inner = data.get("traits" if self.kind == "profiles" else "properties")
            found = inner.get(self.key) if isinstance(inner, dict) else None
        return found if isinstance(found, str | int) and not isinstance(found, bool) else None


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


def counts_dict(counts: Counts) -> Mapping[str, int]:
    return asdict(counts)


def submitter(processor: Processor, *, trigger: bool = False) -> Submit:
    """How an import hands a batch on: to ``processor`` through the normal accept path
    (``trigger``), or quietly. Quietly, the events that only go in history (see
    :func:`only_history`) are kept by the store in one transaction
    (:meth:`~journeyman.storage.base.Store.keep_events`), and the others go to the
    processor as quiet triggers, in the order they came."""

    async def submit(events: Sequence[Event]) -> list[str | Exception]:
        if trigger:
            return await processor.submit_each(events, force=True)
        answers: list[str | Exception] = []
        definitions = processor.workspace.events
        for plain, run in itertools.groupby(events, lambda e: only_history(e, definitions)):
            group = list(run)
            if plain:
                kept = await processor.store.keep_events(group, processor.now())
                answers += ["accepted"] * kept + ["duplicate"] * (len(group) - kept)
            else:
                answers += await processor.submit_each(group, force=True, quiet=True)
        return answers

    return submit


def only_history(event: Event, definitions: Mapping[str, EventDefinition]) -> bool:
    """Whether a quiet event changes nothing but its profile's history: a track, page or
    screen named by its userId, that sets no trait (no timezone, locale or traits in its
    context), changes no consent and reacts to no message. Any other (an identify, an
    event named by email or by an anonymous id that may have signed in) needs the core."""
    if event.type not in _HISTORY_ONLY or event.user_id is None:
        return False
    if event.name in CONSENT_EVENTS or event.name in REACTION_EVENTS:
        return False
    context = event.context
    if context and ("timezone" in context or "locale" in context or "traits" in context):
        return False
    definition = definitions.get(event.name)
    return definition is None or definition.identity != "email"


_HISTORY_ONLY = frozenset(("track", "page", "screen"))
