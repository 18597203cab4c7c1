"""Customer data cannot steer a call: no secrets leaked, no path or host taken over, and
no call to loopback, private or link-local addresses unless the document allows it.

The attacks run end to end: a runtime in this process ingests hostile events through the
API, the engine renders the action, the dispatcher makes the call to a real HTTP server
on 127.0.0.1, and the test reads what that server received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from journeyman.api import Keys, create_app
from journeyman.channels import channel_from_config, make_call
from journeyman.channels.base import ChannelConfigError, substitute
from journeyman.cli import main
from journeyman.domain.actions import Allow
from journeyman.domain.state import CallAction, SendMessage
from journeyman.domain.templates import compile_template
from journeyman.runtime.service import Runtime
from journeyman.simulator import Simulator
from journeyman.storage import open_store
from journeyman.workspace import load_workspace
from tests.conftest import write_workspace
from tests.servers import HttpServer, Reply
from tests.waiting import eventually

SECRET = "s3cret-crm-token"
ENV = {"CRM_TOKEN": SECRET}
KEYS = Keys(write="w-key", admin="a-key")
WRITE = {"Authorization": "Bearer w-key"}
ADMIN = {"Authorization": "Bearer a-key"}
LOOPBACK = Allow.parse(["127.0.0.1"])
AT = datetime(2026, 1, 5, tzinfo=UTC)

EVENT = """
kind: event
name: signed_up
"""

ACTION = """
kind: action
name: hook
url: "URL/hook/{{ profile.id }}?ref={{ profile.id }}"
headers:
  Authorization: "Bearer ${CRM_TOKEN}"
  X-Profile: "{{ profile.id }}"
body: '{"id": "{{ profile.id }}", "price": "${{ profile.price }}"}'
ALLOW
"""

JOURNEY = """
kind: journey
name: sync
entry: {event: signed_up}
steps:
  - id: call
    call: hook
    on_error: refused
  - id: done
    end: synced
  - id: refused
    end: refused
"""


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    with HttpServer() as server:
        yield server


def action(url: str, allow: str = "allow: [127.0.0.1]") -> str:
    return ACTION.replace("URL", url).replace("ALLOW", allow)


def run_journey(
    tmp_path: Path,
    store_url: str,
    documents: str,
    users: list[tuple[str, dict[str, Any]]],
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Identify and sign up each (userId, traits); the calls' outbox rows once settled."""
    loaded = load_workspace(write_workspace(tmp_path / "ws", EVENT, documents, JOURNEY))
    assert loaded.workspace is not None, [str(p) for p in loaded.errors]
    workspace = loaded.workspace

    async def main() -> list[dict[str, Any]]:
        runtime = Runtime(workspace, open_store(store_url), {}, env=env or ENV, idle=0.05)
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url="http://j") as client:
                for user, traits in users:
                    body = {"userId": user, "traits": traits}
                    answer = await client.post("/v1/identify", json=body, headers=WRITE)
                    assert answer.status_code == 202, answer.text
                    body = {"userId": user, "event": "signed_up"}
                    answer = await client.post("/v1/track", json=body, headers=WRITE)
                    assert answer.status_code == 202, answer.text
                return await _settled(client, len(users))
        finally:
            await runtime.stop()

    return asyncio.run(main())


async def _settled(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    async def rows() -> list[dict[str, Any]] | None:
        answer = await client.get("/v1/messages", headers=ADMIN)
        found: list[dict[str, Any]] = answer.json()["messages"]
        done = len(found) == count and all(r["status"] in ("sent", "failed") for r in found)
        return found if done else None

    return await eventually(rows, f"the {count} calls to settle")


def leaked(request: Any) -> bool:
    """Whether the secret is anywhere in the request but the action's own header."""
    headers = {k: v for k, v in request.headers.items() if k != "authorization"}
    return SECRET in request.path or SECRET in str(headers) or SECRET.encode() in request.body


# placeholders come from the document only


def test_a_placeholder_in_a_user_id_never_reaches_the_environment(
    tmp_path: Path, store_url: str, http_server: HttpServer
) -> None:
    user = "sx-${CRM_TOKEN}"
    run_journey(tmp_path, store_url, action(http_server.url), [(user, {"price": "${CRM_TOKEN}"})])

    [request] = http_server.requests
    assert not leaked(request)
    assert request.path == "/hook/sx-%24%7BCRM_TOKEN%7D?ref=sx-%24%7BCRM_TOKEN%7D"
    assert request.headers["x-profile"] == user
    assert json.loads(request.body) == {"id": user, "price": "$${CRM_TOKEN}"}
    assert request.headers["authorization"] == f"Bearer {SECRET}"  # the document's own


def test_the_outbox_holds_the_placeholder_and_never_the_secret(
    tmp_path: Path, store_url: str, http_server: HttpServer
) -> None:
    [row] = run_journey(tmp_path, store_url, action(http_server.url), [("u1", {"price": 5})])

    assert SECRET not in json.dumps(row)
    [request] = http_server.requests
    assert json.loads(request.body) == {"id": "u1", "price": "$5"}


def test_a_value_in_a_json_body_cannot_close_its_string_and_add_keys(
    tmp_path: Path, store_url: str, http_server: HttpServer
) -> None:
    json_action = action(http_server.url).replace(
        "X-Profile:", "Content-Type: application/json\n  X-Profile:"
    )
    email = 'x", "role": "admin\\'
    run_journey(tmp_path, store_url, json_action, [("u1", {"price": email})])

    [request] = http_server.requests
    assert json.loads(request.body) == {"id": "u1", "price": "$" + email}


def test_a_body_that_is_not_json_keeps_values_as_they_are(
    tmp_path: Path, store_url: str, http_server: HttpServer
) -> None:
    text_action = action(http_server.url).replace(
        "X-Profile:", "Content-Type: text/plain\n  X-Profile:"
    )
    run_journey(tmp_path, store_url, text_action, [("u1", {"price": 'a"b'})])

    [request] = http_server.requests
    assert request.body == b'{"id": "u1", "price": "$a"b"}'


# values are percent-encoded in a url


def test_a_path_in_a_user_id_stays_one_encoded_path_segment(
    tmp_path: Path, store_url: str, http_server: HttpServer
) -> None:
    user = "victim/../../admin?x=1#"
    run_journey(tmp_path, store_url, action(http_server.url), [(user, {})])

    [request] = http_server.requests
    assert not request.path.startswith("/admin")
    assert request.path == (
        "/hook/victim%2F%2E%2E%2F%2E%2E%2Fadmin%3Fx%3D1%23?ref=victim%2F..%2F..%2Fadmin%3Fx%3D1%23"
    )
    assert request.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("..", "/hook/%2E%2E"),
        (".", "/hook/%2E"),
        (".env", "/hook/%2Eenv"),
        ("ada.lovelace", "/hook/ada.lovelace"),
        ("a b+c&d=e%f", "/hook/a%20b%2Bc%26d%3De%25f"),
    ],
)
def test_a_value_in_a_path_is_encoded_for_a_path_segment(
    tmp_path: Path, store_url: str, http_server: HttpServer, value: str, path: str
) -> None:
    run_journey(tmp_path, store_url, action(http_server.url), [(value, {})])

    [request] = http_server.requests
    assert request.path.split("?")[0] == path


def test_a_value_in_a_query_cannot_add_parameters(
    tmp_path: Path, store_url: str, http_server: HttpServer
) -> None:
    run_journey(tmp_path, store_url, action(http_server.url), [("a&admin=1#x+y", {})])

    [request] = http_server.requests
    assert request.path.split("?")[1] == "ref=a%26admin%3D1%23x%2By"


# the scheme and host come from the document


@pytest.mark.parametrize(
    "url",
    [
        "http://{{ profile.crm_host }}/x",
        "https://crm.example.com{{ profile.path }}",
        "https://crm.example.com:{{ profile.port }}/x",
        "{% if profile.vip %}https://vip.example.com{% endif %}/x",
        "{{ profile.url }}",
    ],
)
def test_a_url_whose_scheme_or_host_is_rendered_is_refused(tmp_path: Path, url: str) -> None:
    document = f"kind: action\nname: crm\nurl: '{url}'\n"
    loaded = load_workspace(write_workspace(tmp_path / "ws", EVENT, document))

    [error] = loaded.errors
    assert (error.kind, error.name) == ("action", "crm")
    assert "'url'" in error.message
    assert "must" in error.message


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://crm.example.com/x", "http:// or https://"),
        ("${CRM_URL}{{ profile.id }}", "write a '/' after ${CRM_URL}"),
    ],
)
def test_a_url_with_another_scheme_or_a_bare_placeholder_is_refused(
    tmp_path: Path, url: str, rule: str
) -> None:
    document = f"kind: action\nname: crm\nurl: '{url}'\n"
    loaded = load_workspace(write_workspace(tmp_path / "ws", EVENT, document))

    [error] = loaded.errors
    assert rule in error.message


def test_a_url_may_start_with_a_placeholder_the_environment_fills_in(tmp_path: Path) -> None:
    document = "kind: action\nname: crm\nurl: '${CRM_URL}/contacts/{{ profile.id }}'\n"
    loaded = load_workspace(write_workspace(tmp_path / "ws", EVENT, document))

    assert loaded.problems == []


# where calls may go


def test_a_call_to_loopback_without_allow_fails_and_sends_nothing(
    tmp_path: Path, store_url: str, http_server: HttpServer
) -> None:
    documents = action("${CRM_URL}", allow="")
    env = ENV | {"CRM_URL": http_server.url}
    [row] = run_journey(tmp_path, store_url, documents, [("u1", {})], env)

    assert http_server.requests == []
    assert row["status"] == "failed"
    assert row["attempts"] == 1  # refused for good, not retried
    assert "refused to connect to 127.0.0.1, a loopback address" in row["detail"]
    assert "'allow'" in row["detail"]


def test_a_call_to_loopback_that_allow_names_goes_through(
    tmp_path: Path, store_url: str, http_server: HttpServer
) -> None:
    documents = action("${CRM_URL}", allow="allow: ['127.0.0.0/8']")
    env = ENV | {"CRM_URL": http_server.url}
    [row] = run_journey(tmp_path, store_url, documents, [("u1", {})], env)

    assert row["status"] == "sent"
    assert len(http_server.requests) == 1


def call_to(url: str) -> CallAction:
    return CallAction(
        key="i:crm:1",
        instance_id="i",
        journey="j",
        step="crm",
        profile_id="u1",
        action="crm",
        method="POST",
        url=url,
        headers={},
        body="{}",
        timeout=5.0,
        at=AT,
    )


def test_a_name_that_resolves_to_loopback_is_refused_without_allow(
    http_server: HttpServer,
) -> None:
    port = http_server.url.rsplit(":", 1)[1]
    delivery = asyncio.run(make_call(call_to(f"http://localhost:{port}/x"), {}))

    assert delivery.status == "failed"
    assert "refused to connect to localhost (" in delivery.detail
    assert http_server.requests == []


def test_a_name_allow_names_may_resolve_to_loopback(http_server: HttpServer) -> None:
    port = http_server.url.rsplit(":", 1)[1]
    call = call_to(f"http://localhost:{port}/x")

    delivery = asyncio.run(make_call(call, {}, allow=Allow.parse(["localhost"])))

    assert delivery.status == "sent", delivery.detail
    assert len(http_server.requests) == 1


@pytest.mark.parametrize(
    "host",
    ["10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "[::1]",
     "[fe80::1]", "[fd00::1]", "[::ffff:127.0.0.1]", "[::ffff:169.254.169.254]"],
)  # fmt: skip
def test_calls_to_non_public_addresses_are_refused_before_connecting(host: str) -> None:
    delivery = asyncio.run(make_call(call_to(f"http://{host}:9/x"), {}))

    assert delivery.status == "failed"
    assert delivery.detail.startswith("refused to connect to ")


def test_a_redirect_is_not_followed(http_server: HttpServer) -> None:
    http_server.reply(Reply(302, b"", content_type="text/plain"))
    delivery = asyncio.run(make_call(call_to(f"{http_server.url}/x"), {}, allow=LOOPBACK))

    assert delivery.status == "failed"
    assert delivery.detail.startswith("302")
    assert len(http_server.requests) == 1


@pytest.mark.parametrize(
    ("url", "allow", "problem"),
    [
        ("http://127.0.0.1:8080/x", "", "error"),
        ("http://localhost/x", "", "error"),
        ("http://[::1]/x", "", "error"),
        ("http://10.0.0.7/x", "", "error"),
        ("http://127.0.0.1:8080/x", "allow: [127.0.0.1]", "warning"),
        ("http://localhost/x", "allow: [localhost]", "warning"),
        ("http://10.0.0.7/x", "allow: ['10.0.0.0/8']", "warning"),
        ("https://crm.example.com/x", "", None),
    ],
)
def test_validate_checks_the_targets_written_in_actions(
    tmp_path: Path, url: str, allow: str, problem: str | None
) -> None:
    document = f"kind: action\nname: crm\nurl: '{url}'\n{allow}\n"
    loaded = load_workspace(write_workspace(tmp_path / "ws", EVENT, document))

    assert [p.severity for p in loaded.problems] == ([problem] if problem else [])
    if problem == "error":
        assert "unless 'allow' names them" in loaded.problems[0].message
    if problem is not None:
        assert loaded.problems[0].name == "crm"


def test_an_allow_entry_that_is_no_address_network_or_name_is_an_error(tmp_path: Path) -> None:
    document = "kind: action\nname: crm\nurl: 'https://x.example'\nallow: ['10.0.0.0/33']\n"
    loaded = load_workspace(write_workspace(tmp_path / "ws", EVENT, document))

    [error] = loaded.errors
    assert error.message.startswith("'allow' '10.0.0.0/33' is not an address")


# channels


WEBHOOK = """
kind: channel
name: webhook
type: webhook
url: "URL/hooks"
secret: "${WEBHOOK_SECRET}"
"""


def test_validate_refuses_a_webhook_to_loopback_unless_allowed(tmp_path: Path) -> None:
    refused = WEBHOOK.replace("URL", "http://127.0.0.1:9")
    allowed = refused + "allow: [127.0.0.1]\n"

    [error] = load_workspace(write_workspace(tmp_path / "a", EVENT, refused)).problems
    [warning] = load_workspace(write_workspace(tmp_path / "b", EVENT, allowed)).problems

    assert (error.severity, error.kind, error.name) == ("error", "channel", "webhook")
    assert "'url' calls 127.0.0.1, a loopback address" in error.message
    assert warning.severity == "warning"


def message() -> SendMessage:
    return SendMessage(
        key="i:hi:1",
        instance_id="i",
        journey="j",
        step="hi",
        profile_id="u1",
        channel="webhook",
        template="t",
        to=None,
        content={"body": "hi"},
        at=AT,
    )


def test_a_webhook_refuses_loopback_at_send_time_unless_allowed(http_server: HttpServer) -> None:
    config = {"name": "webhook", "type": "webhook", "url": "${HOOK_URL}", "secret": "${S}"}
    env = {"HOOK_URL": f"{http_server.url}/hooks", "S": "x"}

    async def send(config: dict[str, Any]) -> str:
        channel = channel_from_config(config, env)
        try:
            return (await channel.send(message())).status
        finally:
            await channel.close()

    assert asyncio.run(send(config)) == "failed"
    assert http_server.requests == []
    assert asyncio.run(send(config | {"allow": ["127.0.0.1"]})) == "sent"
    assert len(http_server.requests) == 1


def test_a_webhook_does_not_follow_a_redirect(http_server: HttpServer) -> None:
    http_server.reply(Reply(307, b"", content_type="text/plain"))
    config = {"name": "webhook", "type": "webhook", "url": f"{http_server.url}/h", "secret": "${S}"}

    async def send() -> str:
        channel = channel_from_config(config | {"allow": ["127.0.0.1"]}, {"S": "x"})
        try:
            return (await channel.send(message())).status
        finally:
            await channel.close()

    assert asyncio.run(send()) == "failed"
    assert len(http_server.requests) == 1


TWILIO = """
kind: channel
name: sms
type: twilio
account_sid: "${TWILIO_ACCOUNT_SID}"
auth_token: "${TWILIO_TOKEN}"
from: "+15005550006"
"""


@pytest.mark.parametrize("sid", [None, "AC0123456789abcdef0123456789abcdef"])
def test_validate_accepts_the_documented_twilio_channel_with_placeholders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sid: str | None
) -> None:
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    if sid is not None:
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", sid)
    folder = write_workspace(tmp_path / "ws", EVENT, TWILIO)

    result = CliRunner().invoke(main, ["validate", str(folder)])

    assert result.exit_code == 0, result.output
    assert "sound" in result.output


def test_a_twilio_account_sid_missing_from_the_environment_is_named_at_start() -> None:
    config = {
        "name": "sms",
        "type": "twilio",
        "account_sid": "${TWILIO_ACCOUNT_SID}",
        "auth_token": "${TWILIO_TOKEN}",
        "from": "+15005550006",
    }
    with pytest.raises(ChannelConfigError) as refused:
        channel_from_config(config, {"TWILIO_TOKEN": "t"})

    assert str(refused.value) == "account_sid: environment variable TWILIO_ACCOUNT_SID is not set"


def test_an_escaped_call_text_fills_only_placeholders_written_whole() -> None:
    env = {"T": "secret"}
    assert substitute("$${T} ${T} $$ $ x$", env, escaped=True) == "${T} secret $ $ x$"


# the engine's own guard


def test_the_engine_does_not_make_a_call_whose_rendered_host_is_not_the_documents(
    tmp_path: Path,
) -> None:
    # Validation refuses such a url; a workspace published before that rule still holds one.
    documents = action("https://crm.example.com", allow="")
    loaded = load_workspace(write_workspace(tmp_path / "ws", EVENT, documents, JOURNEY))
    assert loaded.workspace is not None
    hook = loaded.workspace.actions["hook"]
    broken = dataclasses.replace(hook, url=compile_template("https://{{ profile.host }}/x"))
    workspace = dataclasses.replace(loaded.workspace, actions={"hook": broken})
    sim = Simulator(workspace, AT)

    sim.identify({"userId": "u1", "traits": {"host": "evil.example"}}, AT)
    sim.track({"userId": "u1", "event": "signed_up"}, AT)

    assert sim.calls == []
    [failed] = [r for r in sim.records if r.outcome == "failed"]
    assert failed.step == "call"
    assert "scheme, host and port must be written out" in failed.detail
    assert sim.instances["u1:sync:1"].end_state == "refused"  # its on_error path
