"""What web pages may send, in-process: the ``browser:`` settings as written, the client
key's rules on events already read, the origins ``serve`` is given, and the token bucket
each client address gets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from journeyman.browsers import Buckets, Cors, body_key, parse_origins, query_key
from journeyman.domain.browser import NotForBrowsers, check_browser_call, from_browser
from journeyman.domain.ingest import InvalidEvent, decode_call, read_call
from journeyman.domain.model import BrowserPolicy, Workspace
from journeyman.server import SettingError, cors_origins
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVENTS = """
kind: event
name: viewed
identity: anonymousId
---
kind: event
name: by_mail
identity: email
"""


def load(tmp_path: Path, *documents: str) -> tuple[Workspace | None, list[str]]:
    loaded = load_workspace(write_workspace(tmp_path / "ws", BASE, EVENTS, *documents))
    return loaded.workspace, [str(problem) for problem in loaded.problems]


def test_browser_settings_default_to_no_traits_anonymous_ids_and_a_sane_rate(
    tmp_path: Path,
) -> None:
    workspace, _ = load(tmp_path)
    assert workspace is not None
    assert workspace.settings.browser == BrowserPolicy(frozenset(), False, 10.0, 50)


def test_browser_settings_are_read_from_the_settings_document(tmp_path: Path) -> None:
    text = "kind: settings\nbrowser: {traits: [plan], user_id: trusted, rate: 2.5, burst: 5}\n"
    workspace, problems = load(tmp_path, text)
    assert problems == []
    assert workspace is not None
    assert workspace.settings.browser == BrowserPolicy(frozenset({"plan"}), True, 2.5, 5)


@pytest.mark.parametrize(
    ("browser", "says"),
    [
        ("{user_id: yes}", "must be one of anonymous, trusted"),
        ("{rate: 0}", "above 0 calls a second"),
        ("{rate: -1}", "must be a number of at least 0"),
        ("{burst: 0}", "must be a whole number of at least 1"),
        ("{traits: plan}", "must be a list"),
        ("{traits: [1]}", "'traits' must be a list of trait names"),
        ("{origins: [x]}", "unknown key 'origins'"),
        ("[plan]", "must be a mapping"),
    ],
)
def test_bad_browser_settings_are_problems_naming_the_key(
    tmp_path: Path, browser: str, says: str
) -> None:
    workspace, problems = load(tmp_path, f"kind: settings\nbrowser: {browser}\n")
    assert workspace is None
    assert len(problems) == 1
    assert says in problems[0]


def read(workspace: Workspace, kind: str, body: bytes) -> None:
    """A call sent with the client key, read and checked as ingest does."""
    call = from_browser(decode_call(body, kind), workspace.events)
    event = read_call(call, workspace.events, NOW, workspace.views)
    check_browser_call(event, workspace.events, workspace.settings.browser)


def test_rudderstacks_empty_user_id_is_no_user_id_from_a_browser(tmp_path: Path) -> None:
    workspace, _ = load(tmp_path)
    assert workspace is not None
    read(workspace, "track", b'{"event": "viewed", "userId": "", "anonymousId": "a"}')
    with pytest.raises(InvalidEvent) as refused:  # only "" is no user id; " " is no id
        read(workspace, "track", b'{"event": "viewed", "userId": " ", "anonymousId": "a"}')
    assert (refused.value.field, refused.value.rule) == ("userId", "type")


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("track", b'{"event": "nope", "anonymousId": "a"}', "event"),
        ("track", b'{"event": "message_clicked", "anonymousId": "a"}', "event"),
        ("track", b'{"event": "by_mail", "anonymousId": "a", "properties": {"email": "a@b.c"}}',
         "properties.email"),
        ("page", b'{"name": "Home", "anonymousId": "a"}', "name"),
        ("identify", b'{"anonymousId": "a", "traits": {"email": "a@b.c"}}', "traits.email"),
        ("identify", b'{"anonymousId": "a", "context": {"traits": {"x": 1}}}', "traits.x"),
        ("alias", b'{"userId": "u", "previousId": "a"}', "type"),
        ("group", b'{"anonymousId": "a", "groupId": "g", "traits": {"plan": "x"}}', "type"),
    ],
)  # fmt: skip
def test_the_client_key_is_refused_what_the_settings_do_not_allow(
    tmp_path: Path, kind: str, body: bytes, field: str
) -> None:
    workspace, _ = load(tmp_path)
    assert workspace is not None
    with pytest.raises(NotForBrowsers) as refused:
        read(workspace, kind, body)
    assert (refused.value.field, refused.value.rule) == (field, "browser")
    assert refused.value.message


def test_parse_origins_keeps_scheme_host_and_port_only() -> None:
    given = ["https://Shop.Example.com, http://127.0.0.1:8080", "https://a.test:443/"]
    assert parse_origins(given) == {
        "https://shop.example.com",
        "http://127.0.0.1:8080",
        "https://a.test",
    }
    for bad in ("*", "shop.example.com", "https://a.test/path", "ftp://a.test", "http://a:x"):
        with pytest.raises(ValueError, match=r"origin|port"):
            parse_origins([bad])


def test_a_bad_cors_origin_stops_serve_naming_where_it_came_from() -> None:
    assert cors_origins([], {"JOURNEYMAN_CORS_ORIGINS": "http://a.test"}) == {"http://a.test"}
    assert cors_origins(["http://b.test"], {"JOURNEYMAN_CORS_ORIGINS": "x"}) == {"http://b.test"}
    with pytest.raises(SettingError, match="JOURNEYMAN_CORS_ORIGINS"):
        cors_origins([], {"JOURNEYMAN_CORS_ORIGINS": "*"})
    with pytest.raises(SettingError, match="--cors-origin"):
        cors_origins(["https://a.test/x"], {})


def test_cors_headers_are_given_to_the_listed_origins_only() -> None:
    cors = Cors(["http://a.test"])
    assert cors.headers("http://b.test") is None
    assert cors.preflight("http://A.test") is None  # browsers send origins as they are
    headers = dict(cors.preflight("http://a.test") or [])
    assert headers[b"access-control-allow-origin"] == b"http://a.test"
    assert headers[b"vary"] == b"Origin"


def test_a_bucket_gives_the_burst_then_the_rate_and_says_how_long_to_wait() -> None:
    now = [100.0]
    buckets = Buckets(clock=lambda: now[0])
    assert [buckets.take("1.2.3.4", 1, 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("1.2.3.4", 1, 2.0, 3) == pytest.approx(0.5)
    assert buckets.take("5.6.7.8", 1, 2.0, 3) == 0.0  # each address has its own
    now[0] += 0.5
    assert buckets.take("1.2.3.4", 1, 2.0, 3) == 0.0
    assert buckets.take("1.2.3.4", 10, 2.0, 3) > 0  # a batch over the burst waits for a full one
    now[0] += 10
    assert buckets.take("1.2.3.4", 10, 2.0, 3) == 0.0


def test_buckets_forget_quiet_addresses_rather_than_grow_without_end() -> None:
    now = [0.0]
    buckets = Buckets(clock=lambda: now[0])
    buckets.ADDRESSES = 100
    for n in range(100):
        buckets.take(f"10.0.0.{n}", 1, 1.0, 5)
    now[0] += 10  # all full again
    buckets.take("10.0.1.1", 1, 1.0, 5)
    assert len(buckets.buckets) == 1


def test_keys_in_a_body_or_a_query_are_found_and_nothing_else() -> None:
    assert body_key(b'{"writeKey": "k", "batch": []}') == "k"
    assert body_key(b'{"writeKey": 5}') == ""
    assert body_key(b"not json") == ""
    assert query_key(b"writeKey=k&x=1") == "k"
    assert query_key(b"writeKey=a&writeKey=b") == ""
    assert query_key(b"") == ""
