"""Opens and clicks of email: the cost of rewriting links at send time, and the click and
open endpoints under sustained load beside ``POST /v1/track`` measured the same way.

- ``rewrite``: µs to rewrite one realistic marketing email (about 9 KB of HTML, 32
  links, 27 of them tracked) with signed click links and the open pixel: the dispatcher's
  :class:`~journeyman.runtime.tracking.Tracker` step, as every tracked send runs it.
- ``endpoints``: a real ``journeyman serve`` on SQLite (the ``bench_server`` setup) sends
  tracked email to the file channel; the click and pixel links are read back from it, and
  the load generator follows them in a closed loop over keep-alive connections (each 302
  or 200 only after ``message_clicked`` / ``message_opened`` is committed), then sends
  ``POST /v1/track`` the same way to the same server.

Run with ``python benchmarks/bench_tracking.py [--quick] [rewrite|endpoints]``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime

from bench_server import WRITE_KEY, Closed, Row, Server, Settings, _runs_text, settings
from journeyman.domain.state import SendMessage
from journeyman.runtime.links import Links
from journeyman.runtime.tracking import Tracker
from journeyman.workspace import load_texts

# One product of a newsletter: an image link, a title link, a button; 8 of them, plus the
# header, footer and social links, unsubscribe and mailto (not tracked).
_PRODUCT = """
<tr><td style="padding:12px;border-bottom:1px solid #eee">
  <a href="https://shop.example.com/p/{n}?utm_source=news&amp;utm_medium=email&amp;utm_campaign=dec">
    <img src="https://cdn.example.com/p/{n}.jpg" width="120" alt="Product {n}"></a></td>
<td style="padding:12px;border-bottom:1px solid #eee">
  <h3 style="margin:0"><a href="https://shop.example.com/p/{n}?utm_source=news&amp;c=title"
     style="color:#222;text-decoration:none">Handmade oak product number {n}</a></h3>
  <p style="color:#555">Solid oak, oiled by hand, delivered in three days. Was $129, now $99
  for {{{{ profile.firstName }}}} and everyone on this list until Sunday.</p>
  <a href="https://shop.example.com/cart/add/{n}" style="background:#222;color:#fff;padding:8px
     16px;border-radius:4px;text-decoration:none">Add to cart</a></td></tr>"""

HTML = (
    '<!doctype html><html><head><meta charset="utf-8"><title>December picks</title>'
    "<style>body{font-family:sans-serif}</style></head>"
    '<body style="margin:0;background:#fafafa"><table width="600" align="center">'
    '<tr><td colspan="2"><a href="https://shop.example.com/?utm_source=news">'
    '<img src="https://cdn.example.com/logo.png" alt="Shop"></a>'
    '<a href="#picks">Skip to the picks</a></td></tr>'
    + "".join(_PRODUCT.format(n=n) for n in range(1, 9))
    + '<tr><td colspan="2" style="font-size:12px;color:#888">'
    '<a href="https://twitter.example.com/shop">Twitter</a> · '
    '<a href="https://instagram.example.com/shop">Instagram</a><br>'
    'Questions? <a href="mailto:help@shop.example.com">help@shop.example.com</a>, '
    '<a href="tel:+15551234567">+1 555 123 4567</a>.<br>'
    '<a href="https://go.example.com/u/abcdef">Unsubscribe</a> · '
    '<a href="https://go.example.com/p/abcdef">Preferences</a><br>'
    "Shop Example Ltd, 1 Market Street, Springfield.</td></tr></table></body></html>"
)

TEMPLATE = """
kind: event
name: signed_up
identity: userId
schema: {type: object}
---
kind: template
name: promo
channel: email
subject: December picks
html: "<p>x</p>"
---
kind: journey
name: promo
entry: {event: signed_up}
steps:
  - {id: promo, send: promo}
  - {id: done, end: done}
"""


def rewrite(config: Settings | None = None) -> list[Row]:
    """µs per tracked email: the median of many runs of the send-time step."""
    config = config or settings()
    loaded = load_texts({"w.yaml": TEMPLATE})
    assert loaded.workspace is not None
    workspace = loaded.workspace
    step = Tracker(
        lambda: Links("https://go.example.com", b"x" * 32), lambda n, v: None, lambda: workspace
    )
    message = SendMessage(
        key="01JEXAMPLE0000000000000000:promo:2",
        instance_id="01JEXAMPLE0000000000000000",
        journey="promo",
        step="promo",
        profile_id="p-1042",
        channel="email",
        template="promo",
        to="ada@example.com",
        content={"subject": "December picks", "html": HTML},
        at=datetime(2026, 12, 1, tzinfo=UTC),
        version=1,
    )
    out = step(message).content["html"]
    tracked, links = out.count("go.example.com/c/"), HTML.count("<a ")
    rounds = 500 if config.quick else 2000
    times = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            step(message)
        times.append((time.perf_counter() - started) / rounds * 1e6)
    median = statistics.median(times)
    note = (
        f"median of 5 runs of {rounds} sends (µs: {_runs_text(times, 1)}); {len(HTML):,} bytes "
        f"of HTML, {links} links of which {tracked} tracked (the others: mailto, tel, an "
        f"anchor, unsubscribe and preferences), {tracked + 1} tokens signed"
    )
    return [("link rewriting per tracked email", median, note)]


def _post(server: Server, path: str, body: object) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {WRITE_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        # a call is 202 (stored); a batch 200, with what it kept and refused
        assert answer.status in (200, 202), answer.status
        if path == "/v1/batch":
            assert not json.loads(answer.read())["rejected"]


def _add_tracked_journey(server: Server) -> None:
    """A journey that sends the newsletter above, beside the bench workspace's."""
    text = TEMPLATE.replace("signed_up", "promo_wanted")
    text = text.replace('html: "<p>x</p>"', "to: reader@example.com\nhtml: " + json.dumps(HTML))
    (server.workspace / "tracking.yaml").write_text(text)


def _read_links(server: Server, count: int) -> tuple[list[str], list[str]]:
    """Send ``count`` tracked emails; their click paths and their pixel paths."""
    for first in range(0, count, 500):
        batch = [
            {"type": "track", "userId": f"reader-{n}", "event": "promo_wanted"}
            for n in range(first, min(count, first + 500))
        ]
        _post(server, "/v1/batch", {"batch": batch})
    clicks: list[str] = []
    pixels: list[str] = []
    until = time.monotonic() + 120
    while time.monotonic() < until:
        lines = server.messages.read_text().splitlines() if server.messages.exists() else []
        sent = [json.loads(line) for line in lines]
        promos = [m for m in sent if m.get("template") == "promo"]
        if len(promos) >= count:
            base = f"http://127.0.0.1:{server.port}"
            for message in promos:
                html = message["content"]["html"]
                for part in html.split('href="')[1:]:
                    link = part.split('"', 1)[0]
                    if link.startswith(f"{base}/c/"):
                        clicks.append(link.removeprefix(base))
                pixels += [p.split('"', 1)[0] for p in html.split('src="' + base)[1:]]
            if not clicks or len(pixels) != len(promos):
                raise RuntimeError(f"the emails sent were not tracked: {promos[0]}")
            return clicks, pixels
        time.sleep(0.2)
    raise RuntimeError("the tracked emails were not all sent in 2 minutes")


def endpoints(config: Settings | None = None) -> list[Row]:
    config = config or settings()
    server = Server()
    _add_tracked_journey(server)
    try:
        server.start()
        clicks, pixels = _read_links(server, 1000 if config.quick else 4000)
        rows = []
        for label, paths in (("GET /c/{token} (click)", clicks), ("GET /o/{token} (open)", pixels)):
            urls = server.folder / "urls.txt"
            urls.write_text("\n".join(paths))
            runs = Closed(server, "--connections", str(config.connections), "--urls", str(urls))
            runs.warm_up()
            for _ in range(config.repeats):
                runs.measure(config)
            rows.append((label, runs))
        track = Closed(server, "--connections", str(config.connections))
        track.warm_up()
        for _ in range(config.repeats):
            track.measure(config)
        rows.append(("POST /v1/track, same server", track))
    finally:
        server.remove()
    found = []
    for label, runs in rows:
        rate = statistics.median(runs.rates)
        note = (
            f"median of {config.repeats} closed-loop runs of {config.duration:g}s "
            f"(requests/s: {_runs_text(runs.rates)}), {config.connections} keep-alive "
            f"connections, each answered after its event is committed; p99 "
            f"{statistics.median(runs.p99s):.0f} ms; {runs.cpu_text()}"
        )
        found.append((f"{label} sustained", rate, note))
    return found


def run() -> list[Row]:
    config = settings()
    return [*rewrite(config), *endpoints(config)]


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--quick"]
    chosen = {"rewrite": rewrite, "endpoints": endpoints}
    config = settings()
    for name in args or list(chosen):
        for label, value, note in chosen[name](config):
            print(f"{label:<45} {value:>12,.1f}   {note}", flush=True)


if __name__ == "__main__":
    main()
