"""Messages written to a file instead of sent: the channel for development.

```yaml
kind: channel
name: email                    # any channel: email, sms, push, webhook
type: file
path: messages.jsonl           # relative to the workspace folder
```

Each message becomes one JSON line with every field of the send (``key``, ``journey``,
``step``, ``profile_id``, ``channel``, ``template``, ``to``, ``content``, ``at``, ...),
appended and flushed to disk (fsync) before the send counts as ``sent``. Sends that
arrive together share one write and one fsync. A workspace without a channel document
for a channel uses this channel in development.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

from journeyman.channels.base import Channel, ConfigReader, Delivery, error_detail
from journeyman.domain.state import SendMessage

__all__ = ["FileChannel", "LineWriter"]

KEYS = ("path",)


def append_lines(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` and wait until it is on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


class LineWriter:
    """Appends lines to one file from many tasks, with one write and fsync per batch.

    :meth:`write` returns once its line is on disk, or raises the ``OSError`` that kept
    it from getting there. Lines written while a batch is on its way to disk form the
    next batch, so a busy writer does one fsync per batch rather than one per line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, line: bytes) -> None:
        """Append one line (or several, joined: they reach the disk together)."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((line, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def close(self) -> None:
        """Wait for lines on their way to disk."""
        if self._flusher is not None:
            await self._flusher

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(
                    append_lines, self.path, b"".join(line for line, _ in batch)
                )
            except Exception as error:  # every waiter must learn why, whatever it was
                _settle(batch, error)
            else:
                _settle(batch, None)


def _settle(batch: list[tuple[bytes, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, done in batch:
        if done.done():  # its writer was cancelled; the line was written all the same
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


_encode = msgspec.json.Encoder().encode


class FileChannel(Channel):
    def __init__(self, name: str, path: str | os.PathLike[str], rate: float | None = None) -> None:
        self.name = name
        self.rate = rate
        self.path = Path(path)
        self._writer = LineWriter(self.path)

    async def send(self, message: SendMessage) -> Delivery:
        try:
            await self._writer.write(_encode(message) + b"\n")
        except OSError as error:
            # A full disk or a missing permission can be fixed while the send waits.
            return Delivery("retry", error_detail(error))
        return Delivery("sent", f"written to {self.path}")

    batches = True

    async def send_many(self, messages: Sequence[SendMessage]) -> list[Delivery]:
        """All the lines in one write: they are on disk together, or none of them is."""
        try:
            await self._writer.write(b"".join(_encode(m) + b"\n" for m in messages))
        except OSError as error:
            return [Delivery("retry", error_detail(error))] * len(messages)
        return [Delivery("sent", f"written to {self.path}")] * len(messages)

    async def close(self) -> None:
        await self._writer.close()


def from_config(reader: ConfigReader, name: str) -> FileChannel:
    path = Path(reader.text("path"))
    if not path.is_absolute() and reader.root is not None:
        path = reader.root / path
    return FileChannel(name, path, rate=reader.rate())
