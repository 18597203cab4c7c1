"""``journeyman segments backfill NAME``: backfill a segment on a running server, with a
progress bar.

It asks the server (``POST /v1/segments/NAME/backfill``) to compute the segment again for
every stored profile from the events and traits it holds, then follows the backfill
(``GET /v1/segments/NAME``) until it is done, with done of total, the rate and the time
left on stderr. The server does the work (each profile through its partition's owner, on
a bus), so stopping the command stops only the watching: the backfill goes on, and
``--no-wait`` starts it without watching.
"""

from __future__ import annotations

import time
from typing import Any

import click

from journeyman.segment_import import _reason

__all__ = ["POLL", "segments_group"]

POLL = 0.5  # seconds between looks at the backfill's progress


@click.group("segments")
def segments_group() -> None:
    """Work with the segments of a running server."""


@segments_group.command("backfill")
@click.argument("name")
@click.option(
    "--url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The journeyman server whose segment to backfill.",
)
@click.option(
    "--key", envvar="JOURNEYMAN_ADMIN_KEY", help="The admin key (default: JOURNEYMAN_ADMIN_KEY)."
)
@click.option("--no-wait", is_flag=True, help="Start the backfill and return at once.")
def backfill(name: str, url: str, key: str | None, no_wait: bool) -> None:
    """Compute segment NAME again for every stored profile, from their stored events and
    traits, and show the progress until it is done.

    A publish that adds a segment, or changes its `when`, backfills it by itself; run this
    after importing old events, for instance. Members who join through a backfill get
    `segment_entered`, but no journey is entered by it (see docs/workspace.md).
    """
    import httpx

    if not key:
        raise click.ClickException("an admin key is needed: --key or JOURNEYMAN_ADMIN_KEY")
    base = f"{url.rstrip('/')}/v1/segments/{name}"
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=30, headers=headers) as client:
        started = _ask(client, "POST", f"{base}/backfill", url, 202)
        click.echo(f"backfill {started['id']} of {started['total']:,} profiles started", err=True)
        if no_wait:
            return
        done = _follow(client, base, url, started)
    click.echo(
        f"backfilled segment {name}: {done['backfill']['done']:,} profiles, "
        f"{done['size']:,} members now"
    )


def _ask(client: Any, method: str, endpoint: str, url: str, status: int) -> dict[str, Any]:
    import httpx

    try:
        answer = client.request(method, endpoint)
    except httpx.HTTPError as error:
        raise click.ClickException(f"cannot reach {url}: {error}") from None
    if answer.status_code != status:
        raise click.ClickException(f"{url} answered {answer.status_code}: {_reason(answer)}")
    found: dict[str, Any] = answer.json()
    return found


def _follow(client: Any, base: str, url: str, started: dict[str, Any]) -> dict[str, Any]:
    """Watch the backfill until it is over; the segment as it is then."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("backfilling"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("backfill", total=started["total"] or 1, rate="")
        while True:
            segment = _ask(client, "GET", base, url, 200)
            shown = segment["backfill"] or started
            if shown["id"] != started["id"]:
                raise click.ClickException(
                    f"the segment's `when` changed meanwhile: backfill {shown['id']} replaced it"
                )
            eta = f", {shown['eta']:.0f} s left" if shown["eta"] is not None else ""
            rate = f"{shown['rate']:,} profiles/s{eta}"
            progress.update(task, total=shown["total"] or 1, completed=shown["done"], rate=rate)
            if shown["state"] != "running":
                return segment
            time.sleep(POLL)
