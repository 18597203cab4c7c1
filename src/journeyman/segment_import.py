"""``journeyman import segment NAME FILE``: upload a static list to a running server.

FILE is CSV with a header row naming a ``userId`` or an ``email`` column (or both: a row's
userId wins, its email serves when it has none), or NDJSON, one ``{"userId": ...}`` or
``{"email": ...}`` object a line (``.ndjson``, ``.jsonl``; any other file is read as CSV
unless its first character is ``{``). The whole file is read first: a bad line stops the
import before anything is sent, naming the line and what is wrong. Then the members go to
``POST /v1/segments/NAME/members`` (see :mod:`journeyman.segment_lists`) in batches, with
the progress shown; adding a member twice changes nothing, so an import cut short can be
run again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

__all__ = ["BATCH", "read_file", "segment"]

BATCH = 1000  # members a request carries (the API's limit)


@click.command("segment")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The journeyman server to send the members to.",
)
@click.option(
    "--key", envvar="JOURNEYMAN_ADMIN_KEY", help="The admin key (default: JOURNEYMAN_ADMIN_KEY)."
)
def segment(name: str, file: Path, url: str, key: str | None) -> None:
    """Add the profiles listed in FILE to the list segment NAME (one written `list: true`).

    FILE is CSV with a header naming a `userId` or `email` column, or NDJSON of
    {"userId": ...} or {"email": ...} objects. Each profile that joins gets
    `segment_entered`, and journeys with `entry: {segment: NAME}` start. The file is checked
    whole before anything is sent; running the same import again changes nothing.
    """
    import httpx

    if not key:
        raise click.ClickException("an admin key is needed: --key or JOURNEYMAN_ADMIN_KEY")
    members = read_file(file)
    total = len(members)
    endpoint = f"{url.rstrip('/')}/v1/segments/{name}/members"
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=60) as client:
        for start in range(0, total, BATCH):
            chunk = members[start : start + BATCH]
            try:
                answer = client.post(endpoint, json={"members": chunk}, headers=headers)
            except httpx.HTTPError as error:
                raise click.ClickException(
                    f"cannot reach {url}: {error} ({start} of {total} members sent)"
                ) from None
            if answer.status_code != 202:
                raise click.ClickException(
                    f"{url} answered {answer.status_code}: {_reason(answer)} "
                    f"({start} of {total} members sent; run the import again to finish)"
                )
            click.echo(f"{start + len(chunk)} of {total} members sent", err=True)
    click.echo(f"imported {total} members into segment {name}")


def _reason(answer: Any) -> str:
    try:
        return str(answer.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return answer.text[:200] or "no reason given"


def read_file(file: Path) -> list[dict[str, str]]:
    """Every member of the file, as ``{"userId": ...}`` or ``{"email": ...}``; raises
    :class:`click.ClickException` naming the first bad line."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"cannot read {file}: {error}") from None
    ndjson = file.suffix.lower() in (".ndjson", ".jsonl") or text.lstrip().startswith("{")
    members = list((_ndjson if ndjson else _csv)(text, file))
    if not members:
        raise click.ClickException(f"{file} lists no member")
    return members


def _ndjson(text: str, file: Path) -> Iterator[dict[str, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise click.ClickException(f"{file} line {number}: not JSON") from None
        if not isinstance(item, dict):
            raise click.ClickException(f"{file} line {number}: not a JSON object")
        yield _member(item.get("userId"), item.get("email"), file, number)


def _csv(text: str, file: Path) -> Iterator[dict[str, str]]:
    rows = csv.reader(text.splitlines())
    header = [cell.strip() for cell in next(rows, [])]
    if "userId" not in header and "email" not in header:
        raise click.ClickException(
            f"{file} line 1: the header must name a userId or an email column, "
            f"not {', '.join(header) or 'nothing'}"
        )
    user = header.index("userId") if "userId" in header else None
    email = header.index("email") if "email" in header else None
    for number, row in enumerate(rows, 2):
        if not any(cell.strip() for cell in row):
            continue
        yield _member(_cell(row, user), _cell(row, email), file, number)


def _cell(row: list[str], index: int | None) -> str | None:
    return row[index].strip() if index is not None and index < len(row) else None


def _member(user: Any, email: Any, file: Path, number: int) -> dict[str, str]:
    if isinstance(user, str) and user.strip():
        return {"userId": user}
    if isinstance(email, str) and "@" in email:
        return {"email": email.strip()}
    if isinstance(email, str) and email.strip():
        raise click.ClickException(f"{file} line {number}: {email!r} is no email address")
    raise click.ClickException(f"{file} line {number}: no userId and no email")
