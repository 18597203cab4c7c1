"""``journeyman serve`` end to end: a real server process, real HTTP, real SMTP, real time.

Each test runs ``python -m journeyman serve`` on a workspace of its own with a fresh
database of each backend that another process can open (a SQLite file in ``tmp_path``,
a PostgreSQL database; see :class:`tests.servers.Journeyman`), talks to it over loopback HTTP,
and receives its email with an aiosmtpd server in this process. Waits in the workspace
are a few seconds long; tests poll with deadlines rather than sleep.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

from journeyman.channels.smtp import message_id
from tests.conftest import write_workspace
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.stores import Backend
from tests.waiting import wait_until

# A server in another process needs a database that outlives it (not SQLite in memory).
pytestmark = pytest.mark.durable

SENDER = "Journeyman Tests <hello@example.com>"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}

WORKSPACE = """
kind: event
name: account_created
identity: userId
schema:
  type: object
  required: [plan]
  properties:
    plan: {type: string, enum: [free, pro, internal]}
---
kind: event
name: cart_updated
schema:
  type: object
  required: [cart_id, value]
  properties:
    cart_id: {type: string}
    value: {type: number, minimum: 0}
---
kind: event
name: order_completed
schema:
  type: object
  required: [cart_id, total]
  properties:
    cart_id: {type: string}
    total: {type: number}
---
kind: event
name: signed_up
schema:
  type: object
  properties:
    n: {type: integer}
---
kind: event
name: joined
---
kind: event
name: pinged
---
kind: template
name: welcome_email
channel: email
subject: "Hi {{ profile.firstName | default: 'there' }}, thank you for signing up!"
html: "<p>Dear {{ profile.firstName | default: 'customer' }}, welcome.</p>"
text: >-
  Dear {{ profile.firstName | default: 'customer' }},
  thank you for creating your {{ entry.plan }} account.
---
kind: template
name: cart_reminder_email
channel: email
subject: "You left something in your cart"
html: "<p>Your cart {{ entry.cart_id }} is waiting for you.</p>"
---
kind: template
name: hello_email
channel: email
subject: "Hello {{ profile.firstName | default: 'there' }}"
text: "Number {{ entry.n }}"
---
kind: journey
name: welcome
entry:
  event: account_created
  when: event.plan != "internal"
reentry: never
steps:
  - id: settle
    wait: 2s
  - id: welcome
    send: welcome_email
  - id: done
    end: welcomed
---
kind: journey
name: abandoned_cart
entry:
  event: cart_updated
  when: event.value > 0
steps:
  - id: await_order
    wait_for:
      event: order_completed
      when: event.cart_id == entry.cart_id
      timeout: 2s
    on_event: purchased
    on_timeout: reminder
  - id: reminder
    send: cart_reminder_email
    next: abandoned
  - id: purchased
    end: purchased
  - id: abandoned
    end: abandoned
---
kind: journey
name: signup
entry: {event: signed_up}
steps:
  - id: pause
    wait: 2s
  - id: hello
    send: hello_email
  - id: done
    end: greeted
---
kind: journey
name: nudge
entry: {event: pinged}
steps:
  - id: pause
    wait: 1s
  - id: done
    end: nudged
---
kind: journey
name: instant
entry: {event: joined}
steps:
  - id: hello
    send: hello_email
  - id: done
    end: greeted
"""


def smtp_channel(port: int) -> str:
    return f"""
kind: channel
name: email
type: smtp
host: 127.0.0.1
port: {port}
security: none
from: "{SENDER}"
"""


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def journeyman(tmp_path: Path, store_url: str, smtp_server: SmtpServer) -> Iterator[Journeyman]:
    """A running server whose email goes to ``smtp_server``."""
    workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp_server.port))
    with Journeyman(workspace, store_url, tmp_path) as server:
        yield server.start()


@pytest.fixture
def api(journeyman: Journeyman) -> Iterator[httpx.Client]:
    """An admin client of the running server."""
    with journeyman.client() as client:
        yield client


# ---------------------------------------------------------------- helpers


def accepted(answer: httpx.Response, count: int = 1) -> None:
    """A 202 (200 for a batch) for ``count`` calls, none rejected."""
    batch = answer.request.url.path == "/v1/batch"
    assert answer.status_code == (200 if batch else 202), answer.text
    assert answer.json() | {"rejected": []} == {"accepted": count, "rejected": []}, answer.text


def profile(api: httpx.Client, profile_id: str) -> dict[str, Any] | None:
    answer = api.get(f"/v1/profiles/{profile_id}")
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def instance(api: httpx.Client, profile_id: str, journey: str) -> dict[str, Any]:
    """The profile's one instance of ``journey``."""
    found = profile(api, profile_id)
    assert found is not None, f"no profile {profile_id}"
    (only,) = [i for i in found["instances"] if i["journey"] == journey]
    return dict(only)


def ended(api: httpx.Client, profile_id: str, journey: str) -> dict[str, Any] | None:
    current = instance(api, profile_id, journey)
    return current if current["status"] == "ended" else None


def messages(api: httpx.Client, **query: str) -> list[dict[str, Any]]:
    answer = api.get("/v1/messages", params={"limit": "1000", **query})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["messages"]
    return found


def mails_to(server: SmtpServer, address: str) -> list[EmailMessage]:
    return [mail.message for mail in server.received if address in mail.recipients]


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def dump(backend: Backend, url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in the order of its first column (the rowid or seq where
    it has one), read beside the running server."""
    assert backend.rows is not None
    assert backend.tables is not None
    return {
        table: backend.rows(url, f'SELECT * FROM "{table}" ORDER BY 1')
        for table in backend.tables(url)
    }


class EventStream:
    """Posts ``/v1/track`` calls from a few threads, each call numbered, until stopped.

    It keeps which numbers were acknowledged (202), which got another answer, and which
    got none because the server went away while they were in flight. A thread stops at
    the first call without an answer, and all stop after ``limit`` calls.
    """

    def __init__(
        self, url: str, body: Callable[[int], dict[str, Any]], threads: int = 4, limit: int = 400
    ) -> None:
        self.url = url
        self.body = body
        self.limit = limit
        self.acked: set[int] = set()
        self.answered: dict[int, int] = {}  # number -> status, for answers other than 202
        self.unanswered: set[int] = set()
        self.first_ack: float | None = None  # time.monotonic() of the first 202
        self._numbers = itertools.count()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post) for _ in range(threads)]

    @property
    def sent(self) -> set[int]:
        return self.acked | set(self.answered) | self.unanswered

    def _post(self) -> None:
        with httpx.Client(base_url=self.url, headers=WRITE, timeout=20, trust_env=False) as client:
            while not self._stop.is_set():
                number = next(self._numbers)
                if number >= self.limit:
                    return
                try:
                    answer = client.post("/v1/track", json=self.body(number))
                except httpx.TransportError:
                    self.unanswered.add(number)
                    return
                if answer.status_code == 202:
                    self.acked.add(number)
                    if self.first_ack is None:
                        self.first_ack = time.monotonic()
                else:
                    self.answered[number] = answer.status_code

    def running_for(self, seconds: float, acks: int) -> bool:
        """True once ``acks`` calls were acknowledged or ``seconds`` passed since the first."""
        if len(self.acked) >= acks:
            return True
        return self.first_ack is not None and time.monotonic() - self.first_ack >= seconds

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


# ---------------------------------------------------------------- journeys over HTTP


def test_the_welcome_email_arrives_once_with_the_name_the_profile_has_when_it_is_sent(
    journeyman: Journeyman, api: httpx.Client, smtp_server: SmtpServer
) -> None:
    traits = {"firstName": "Ada", "email": "ada@example.com"}
    accepted(api.post("/v1/identify", json={"userId": "ada", "traits": traits}, headers=WRITE))
    track = {"userId": "ada", "event": "account_created", "properties": {"plan": "pro"}}
    accepted(api.post("/v1/track", json=track, headers=WRITE))
    rename = {"userId": "ada", "traits": {"firstName": "Adele"}}
    accepted(api.post("/v1/identify", json=rename, headers=WRITE))
    waiting = instance(api, "ada", "welcome")
    assert (waiting["status"], waiting["step"]) == ("waiting", "settle"), "renamed too late"

    done = wait_until(lambda: ended(api, "ada", "welcome"), "the welcome journey to end")
    assert done["end_state"] == "welcomed"
    [sent] = wait_until(lambda: messages(api, profile="ada", status="sent"), "the send")
    assert (sent["step"], sent["attempts"]) == ("welcome", 1)
    # Sent once the wait was over (the log keeps milliseconds; the wake time, more).
    assert at(sent["created_at"]) >= at(waiting["wake_at"]) - timedelta(milliseconds=5)

    [mail] = mails_to(smtp_server, "ada@example.com")
    assert mail["Subject"] == "Hi Adele, thank you for signing up!"
    assert mail["To"] == "ada@example.com"
    assert mail["From"] == SENDER
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().strip() == "Dear Adele, thank you for creating your pro account."
    assert "Dear Adele, welcome." in html.get_content()
    # The Message-ID is made from the send's idempotency key, so every retry repeats it.
    assert mail["X-Journeyman-Key"] == sent["key"]
    assert mail["Message-ID"] == message_id(sent["key"], SENDER)
    assert len(smtp_server.received) == 1


def test_an_abandoned_cart_reminds_only_the_customer_who_did_not_order_in_time(
    api: httpx.Client, smtp_server: SmtpServer
) -> None:
    for who in ("c1", "c2"):
        traits = {"email": f"{who}@example.com"}
        accepted(api.post("/v1/identify", json={"userId": who, "traits": traits}, headers=WRITE))
    carts = [
        {"type": "track", "userId": who, "event": "cart_updated", "properties": props}
        for who, props in (
            ("c1", {"cart_id": "A", "value": 80}),
            ("c2", {"cart_id": "B", "value": 50}),
        )
    ]
    accepted(api.post("/v1/batch", json={"batch": carts}, headers=WRITE), 2)
    order = {
        "userId": "c1",
        "event": "order_completed",
        "properties": {"cart_id": "A", "total": 80},
    }
    accepted(api.post("/v1/track", json=order, headers=WRITE))
    # An order of another cart is not the order this journey waits for.
    other = {"userId": "c2", "event": "order_completed", "properties": {"cart_id": "Z", "total": 5}}
    accepted(api.post("/v1/track", json=other, headers=WRITE))

    purchased = instance(api, "c1", "abandoned_cart")
    assert (purchased["status"], purchased["end_state"]) == ("ended", "purchased")
    assert instance(api, "c2", "abandoned_cart")["status"] == "waiting"

    done = wait_until(lambda: ended(api, "c2", "abandoned_cart"), "c2's cart to time out")
    assert done["end_state"] == "abandoned"
    assert [r["step"] for r in done["trace"] if r["step"] == "reminder"]
    [sent] = wait_until(lambda: messages(api, profile="c2", status="sent"), "the reminder")
    assert at(sent["created_at"]) - at(done["entered_at"]) >= timedelta(seconds=1.99)
    [mail] = mails_to(smtp_server, "c2@example.com")
    assert mail["Subject"] == "You left something in your cart"
    assert "Your cart B is waiting" in str(mail.get_content())

    # c1's window has passed too by now: still no reminder for the cart that was ordered.
    assert mails_to(smtp_server, "c1@example.com") == []
    assert messages(api, profile="c1") == []
    assert "reminder" not in [r["step"] for r in instance(api, "c1", "abandoned_cart")["trace"]]


# ---------------------------------------------------------------- crashes and stops


def test_after_a_kill_and_a_restart_timers_fire_late_once_and_no_accepted_event_is_lost(
    journeyman: Journeyman, api: httpx.Client, smtp_server: SmtpServer
) -> None:
    limit = 400
    people = [
        {"type": "identify", "userId": f"k{n}", "traits": {"email": f"k{n}@example.com"}}
        for n in range(limit)
    ]
    accepted(api.post("/v1/batch", json={"batch": people}, headers=WRITE), limit)
    # Three emails go out and are recorded as sent before the kill: none may go again.
    early = [{"type": "track", "userId": f"k{n}", "event": "joined"} for n in range(3)]
    accepted(api.post("/v1/batch", json={"batch": early}, headers=WRITE), 3)
    wait_until(lambda: len(messages(api, journey="instant", status="sent")) == 3, "3 sends")

    def signed_up(n: int) -> dict[str, Any]:
        return {"userId": f"k{n}", "event": "signed_up", "properties": {"n": n}}

    # Kill well inside the 2 s wait of the first acknowledged event, with calls in flight.
    with EventStream(journeyman.url, signed_up, limit=limit) as stream:
        wait_until(lambda: stream.running_for(0.5, acks=150), "events to be acknowledged")
        journeyman.kill()
        killed = time.monotonic()
    assert stream.acked, journeyman.output
    assert len(smtp_server.received) == 3, "a wait came due before the kill: too slow a stream"
    # Stay down until every wait has come due: the timers fire late, after the restart.
    time.sleep(max(0.0, killed + 2.3 - time.monotonic()))
    journeyman.start()

    with journeyman.client() as api:  # the port may have changed
        stored = numbers_stored(api, stream.sent)
        assert stream.acked <= stored, f"acknowledged but lost: {sorted(stream.acked - stored)}"
        assert stored <= stream.acked | stream.unanswered
        wait_until(
            lambda: len(messages(api, journey="signup", status="sent")) == len(stored),
            f"{len(stored)} late sends",
        )
        for n in stored:
            assert instance(api, f"k{n}", "signup")["end_state"] == "greeted"
        assert timer_lag(api) > 0.2, "the timers should have fired late"
    keys = Counter(mail.message["X-Journeyman-Key"] for mail in smtp_server.received)
    ids = Counter(mail.message["Message-ID"] for mail in smtp_server.received)
    assert max(keys.values()) == 1, "an email went twice"
    assert max(ids.values()) == 1, "an email went twice"
    recipients = sorted(a for mail in smtp_server.received for a in mail.recipients)
    assert recipients == sorted(f"k{n}@example.com" for n in (*range(3), *stored))


def numbers_stored(api: httpx.Client, numbers: set[int]) -> set[int]:
    """Which of the numbered signed_up events of profiles k<n> are stored, each once."""
    stored = set()
    for n in sorted(numbers):
        events = (profile(api, f"k{n}") or {"events": []})["events"]
        mine = [e for e in events if e["name"] == "signed_up"]
        assert len(mine) <= 1, f"k{n} has its event {len(mine)} times"
        if mine:
            assert mine[0]["properties"] == {"n": n}
            stored.add(n)
    return stored


def timer_lag(api: httpx.Client) -> float:
    """The latest any timer fired, by /metrics, in seconds."""
    for line in api.get("/metrics").text.splitlines():
        if line.startswith('journeyman_timer_lag_seconds{quantile="1"}'):
            return float(line.split()[-1])
    raise AssertionError("no timer lag in /metrics")


def test_sigterm_while_events_stream_in_stores_every_acknowledged_event(
    journeyman: Journeyman, backend: Backend
) -> None:
    def cart(n: int) -> dict[str, Any]:
        props = {"cart_id": f"cart-{n}", "value": 10}
        return {
            "userId": f"g{n}",
            "event": "cart_updated",
            "properties": props,
            "messageId": f"m{n}",
        }

    with EventStream(journeyman.url, cart, limit=2000) as stream:
        wait_until(lambda: stream.running_for(0.5, acks=100), "events to be acknowledged")
        code = journeyman.stop()
    assert code == 0, journeyman.output
    assert "journeyman stopped" in journeyman.output
    assert "Traceback" not in journeyman.output, journeyman.output

    assert backend.rows is not None
    rows = backend.rows(journeyman.db, "SELECT message_id FROM events WHERE name = 'cart_updated'")
    stored = [int(message[1:]) for (message,) in rows]
    assert len(stored) == len(set(stored))
    assert stream.acked <= set(stored), f"lost: {sorted(stream.acked - set(stored))}"
    assert set(stored) <= stream.acked | stream.unanswered
    assert not set(stream.answered) & set(stored), "a refused event was kept"


def test_timers_keep_firing_while_bad_events_fail_to_be_stored(
    journeyman: Journeyman, api: httpx.Client
) -> None:
    for n in range(60):
        accepted(api.post("/v1/track", json={"userId": f"t{n}", "event": "pinged"}, headers=WRITE))

    # Too big for 64 bits: such an event cannot be stored, and the commit it joins fails
    # (until ingest refuses it outright). The timers that come due meanwhile must be
    # fired once it has passed, not given up on.
    def poisoned(n: int) -> dict[str, Any]:
        return {"userId": "p", "event": "unknown", "properties": {"v": 10**30 + n}}

    last_wake = at(instance(api, "t59", "nudge")["wake_at"])
    with EventStream(journeyman.url, poisoned, threads=3, limit=100_000) as stream:
        # Until every wait has come due, and a little longer.
        time.sleep(max(0.0, (last_wake - datetime.now(UTC)).total_seconds() + 0.3))
    assert stream.answered, "no bad event was sent"

    def all_nudged() -> bool:
        return all(instance(api, f"t{n}", "nudge")["end_state"] == "nudged" for n in range(60))

    wait_until(all_nudged, "every wait to end")
    assert "loop stopped" not in journeyman.output


# ---------------------------------------------------------------- bad input


def test_every_bad_input_gets_its_status_and_error_and_changes_nothing(
    journeyman: Journeyman, api: httpx.Client, backend: Backend
) -> None:
    traits = {"email": "u1@example.com", "firstName": "Ursula"}
    accepted(api.post("/v1/identify", json={"userId": "u1", "traits": traits}, headers=WRITE))
    order = {"cart_id": "A", "total": 10}
    good = {"userId": "u1", "event": "order_completed", "properties": order, "messageId": "m1"}
    accepted(api.post("/v1/track", json=good, headers=WRITE))
    before = dump(backend, journeyman.db)
    events_before = len(before["events"])

    def problem(answer: httpx.Response, status: int, field: str, rule: str) -> None:
        assert answer.status_code == status, (answer.status_code, answer.text)
        error = answer.json()["error"]
        assert (error["field"], error["rule"]) == (field, rule), error
        assert error["message"]

    def post(path: str, body: Any, headers: dict[str, str] = WRITE) -> httpx.Response:
        return api.post(path, json=body, headers=headers)

    def raw(path: str, content: Any, headers: dict[str, str] = WRITE) -> httpx.Response:
        return api.post(
            path, content=content, headers={**headers, "Content-Type": "application/json"}
        )

    signup = {"userId": "u1", "event": "account_created", "properties": {"plan": "pro"}}
    # malformed JSON, and JSON that is not an object
    for path in ("/v1/track", "/v1/identify", "/v1/batch"):
        problem(raw(path, b'{"userId": "u1", "event": '), 400, "body", "json")
    problem(post("/v1/track", [signup]), 400, "body", "type")
    problem(post("/v1/batch", {"batch": signup}), 400, "batch", "type")
    # schema failures
    problem(
        post("/v1/track", {**signup, "properties": {"plan": "gold"}}),
        400,
        "properties.plan",
        "enum",
    )
    problem(post("/v1/track", {**signup, "properties": {}}), 400, "properties.plan", "required")
    problem(
        post("/v1/track", {**good, "properties": {"cart_id": "A", "total": "ten"}}),
        400,
        "properties.total",
        "type",
    )
    problem(post("/v1/track", {**signup, "properties": [1]}), 400, "properties", "type")
    problem(post("/v1/track", {"userId": "u1"}), 400, "event", "required")
    problem(post("/v1/track", {**signup, "timestamp": "yesterday"}), 400, "timestamp", "format")
    problem(post("/v1/identify", {"userId": "u1", "traits": "Ada"}), 400, "traits", "type")
    # missing identity
    problem(
        post("/v1/track", {"event": "account_created", "properties": {"plan": "pro"}}),
        400,
        "userId",
        "identity",
    )
    problem(post("/v1/track", {**signup, "userId": "", "anonymousId": "a1"}), 400, "userId", "type")
    problem(post("/v1/identify", {"traits": {"firstName": "Nobody"}}), 400, "userId", "identity")
    # too big: with a Content-Length, and streamed without one
    padding = "x" * (33 * 1024)
    big = {**signup, "context": {"padding": padding}}
    problem(post("/v1/track", big), 413, "body", "size")
    problem(
        raw(
            "/v1/identify", iter([b'{"userId": "u1", "traits": {"p": "', padding.encode(), b'"}}'])
        ),
        413,
        "body",
        "size",
    )
    huge = {
        "batch": [
            {"type": "identify", "userId": f"b{n}", "traits": {"p": padding}} for n in range(16)
        ]
    }
    problem(post("/v1/batch", huge), 413, "body", "size")
    many = {"batch": [{"type": "identify", "userId": f"b{n}"} for n in range(501)]}
    problem(post("/v1/batch", many), 400, "batch", "size")
    # a batch in which every call is rejected
    answer = post(
        "/v1/batch",
        {"batch": [{"type": "subscribe", "userId": "u1"}, {"type": "track", "userId": "u1"}]},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["accepted"] == 0
    assert [(r["index"], r["field"], r["rule"]) for r in answer.json()["rejected"]] == [
        (0, "type", "enum"),
        (1, "event", "required"),
    ]
    # wrong, missing or misplaced keys
    basic_wrong = basic("not-the-key:")
    basic_password = basic(f":{WRITE_KEY}")  # the key goes in the user name, not the password
    for headers in (
        {"Authorization": "Bearer not-the-key"},
        {"Authorization": ""},
        {"Authorization": basic_wrong},
        {"Authorization": basic_password},
        {"Authorization": f"Token {WRITE_KEY}"},
    ):
        for path in ("/v1/track", "/v1/batch"):
            body = signup if path == "/v1/track" else {"batch": [{"type": "track", **signup}]}
            answer = post(path, body, headers)
            problem(answer, 401, "Authorization", "key")
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    problem(api.get("/v1/profiles/u1", headers=WRITE), 401, "Authorization", "key")
    # a messageId seen before: accepted, and ignored
    accepted(post("/v1/track", {**signup, "messageId": "m1"}))

    assert dump(backend, journeyman.db) == before
    u1 = profile(api, "u1")
    assert u1 is not None
    assert [e["name"] for e in u1["events"]] == ["order_completed", "identify"]
    assert profile(api, "b0") is None

    # A batch keeps its valid calls, lists the others, and stores nothing of them.
    batch = [
        {"type": "identify", "userId": "u2", "traits": {"email": "u2@example.com"}},
        {
            "type": "track",
            "userId": "u2",
            "event": "account_created",
            "properties": {"plan": "gold"},
        },
        {"type": "track", "event": "order_completed", "properties": order},
        {"type": "subscribe", "userId": "u2"},
        {"type": "track", "userId": "u2", "event": "order_completed", "properties": order},
    ]
    answer = post("/v1/batch", {"batch": batch})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2
    assert [(r["index"], r["field"], r["rule"]) for r in answer.json()["rejected"]] == [
        (1, "properties.plan", "enum"),
        (2, "userId", "identity"),
        (3, "type", "enum"),
    ]
    after = dump(backend, journeyman.db)
    added = after["events"][events_before:]
    assert after["events"][:events_before] == before["events"]
    assert [(row[2], row[3]) for row in added] == [("u2", "identify"), ("u2", "order_completed")]
    assert after["instances"] == before["instances"]
    assert after["outbox"] == before["outbox"]
    u2 = profile(api, "u2")
    assert u2 is not None
    assert u2["instances"] == []


def test_answers_on_a_kept_alive_connection_do_not_wait_for_delayed_acks(
    api: httpx.Client,
) -> None:
    # With Nagle's algorithm left on, each answer would wait some 40 ms for an ACK.
    began = time.monotonic()
    for _ in range(50):
        assert api.get("/healthz").status_code == 200
    elapsed = time.monotonic() - began
    assert elapsed < 1.0, f"50 answers took {elapsed:.2f}s"


def test_a_body_the_json_decoder_cannot_read_is_refused_with_400(api: httpx.Client) -> None:
    deep = b'{"a": ' * 1500 + b"1" + b"}" * 1500
    for body in (
        b'{"userId": "u\xff", "event": "pinged"}',
        b'{"userId": "u1", "event": "pinged", "properties": {"deep": ' + deep + b"}}",
    ):
        answer = api.post("/v1/track", content=body, headers=WRITE)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["rule"] == "json"


def test_a_number_too_big_to_store_is_refused_with_400(api: httpx.Client) -> None:
    body = {"userId": "u1", "event": "pinged", "properties": {"v": 2**64}}
    answer = api.post("/v1/track", json=body, headers=WRITE)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "properties.v"
    assert profile(api, "u1") is None
