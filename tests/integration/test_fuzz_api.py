"""Every operation of ``/openapi.json``, fuzzed against a real ``journeyman serve``.

schemathesis reads the document the server serves and sends, for each operation, inputs
that fit it (positive) and inputs that break it (negative), with the write key on the
ingest routes and the admin key on the others. Every answer must be one the document
lists for that operation, with the content type and body it describes; never a 5xx, and
never an answer that takes longer than a few seconds.

The number of examples per operation and mode is small by default, so the suite stays
quick; ``JOURNEYMAN_FUZZ_EXAMPLES=500`` runs a long fuzz by hand.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi.checks import positive_data_acceptance

from journeyman.browsers import BROWSER_PATHS
from journeyman.openapi import SPEC
from tests.servers import ADMIN_KEY, WRITE_KEY, Journeyman

EXAMPLES = int(os.environ.get("JOURNEYMAN_FUZZ_EXAMPLES", "20"))
ANSWER_SECONDS = 10  # a request unanswered this long is a hang
EXAMPLE_WORKSPACE = Path(__file__).parents[2] / "examples"
INGEST = (
    *(f"/v1/{call}" for call in ("track", "identify", "page", "screen", "alias", "group", "batch")),
    *BROWSER_PATHS,  # the browser libraries' own, which the server keys may use too
)
# Rules no document can state: events' properties must fit the schemas of the workspace's
# event definitions, a published workspace must be sound, and a link's token must be
# signed. Their schema-valid calls may get the documented 4xx that names the rule; every
# other operation must take what fits its document.
# The recipient's links take only tokens this server signed: any other is a 404.
KEYLESS_LINKS = {
    (method, path) for path in ("/u/{token}", "/preferences/{token}") for method in ("GET", "POST")
}
RULES_BEYOND_DOCUMENT = (
    {("POST", path) for path in INGEST} | {("PUT", "/v1/workspace")} | KEYLESS_LINKS
)
# An operator's consent change names the workspace's topics and channels, which the
# document cannot list; a schema-valid change to another is a 400 naming it.
RULES_BEYOND_DOCUMENT |= {("PATCH", "/v1/profiles/{profile_id}/consent")}
# The document says an address has no control characters (C1 ones included), but the
# fuzzer does not always hold a value to its pattern; such an address is a 400 naming it.
RULES_BEYOND_DOCUMENT |= {
    ("DELETE", "/v1/profiles/{profile_id}/suppressions/{address}"),
    ("POST", "/v1/profiles/{profile_id}/suppressions"),
}
# A draft's document must name the journey (or template) of its path, a save or a publish
# must start from the draft's current revision, and a change must say who makes it ('by'
# in the body or the query): a schema-valid call may get the documented 409 or 422 naming
# the rule.
RULES_BEYOND_DOCUMENT |= {
    (method, f"/v1/{kind}/{{name}}/draft{tail}")
    for kind in ("journeys", "templates")
    for method, tail in (
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", ""),
        ("POST", "/check"),
        ("POST", "/save"),
        ("POST", "/publish"),
    )
}
# Headers that frame the request belong to the HTTP client: a made-up Content-Length is
# refused by the HTTP server before journeyman sees the request.
FRAMING = frozenset({"content-length", "transfer-encoding", "host", "connection"})
# Provider feedback must carry the provider's signature, which no fuzzer can make: a
# schema-valid call gets the documented 401, 403 or 404, and changes nothing.
HOOKS = ("/hooks/email/{channel}", "/hooks/twilio/{channel}/status/{token}")
RULES_BEYOND_DOCUMENT |= {("POST", path) for path in (*HOOKS, "/hooks/twilio/{channel}/inbound")}
# An import takes any body but an empty one (its rows are checked one by one, in the job).
RULES_BEYOND_DOCUMENT |= {("POST", "/v1/import")}
# A draft must be a sound journey document of the journey it is tried as, and a template
# document a sound template: any other object is a 422 naming the field and the problems.
RULES_BEYOND_DOCUMENT |= {
    ("POST", "/v1/journeys/{name}/draft/tests"),
    ("POST", "/v1/journeys/{name}/draft/try"),
    ("POST", "/v1/preview"),
}
# A page's origin must be one `serve --cors-origin` names: any other preflight gets 403.
RULES_BEYOND_DOCUMENT |= {("OPTIONS", path) for path in INGEST}
# Channels that take feedback (and send nothing: no template names them), so that the
# fuzz reaches the signature checks.
FEEDBACK_CHANNELS = """
kind: channel
name: esp
type: smtp
host: 127.0.0.1
port: 9
security: none
from: "Example <hello@example.com>"
feedback_secret: "${FUZZ_ESP_SECRET}"
---
kind: channel
name: texts
type: twilio
account_sid: AC0123456789abcdef0123456789abcdef
auth_token: "${FUZZ_TWILIO_TOKEN}"
from: "+15005550006"
help: "Reply STOP to stop"
"""
FEEDBACK_ENV = {"FUZZ_ESP_SECRET": "fuzz-secret", "FUZZ_TWILIO_TOKEN": "fuzz-token"}


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation with valid inputs, and with invalid ones where it takes any input."""
    found = []
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            found.append((method.upper(), path, GenerationMode.POSITIVE))
            if operation.get("parameters") or "requestBody" in operation:
                found.append((method.upper(), path, GenerationMode.NEGATIVE))
    return found


OPERATIONS = _operations()

cases: Counter[str] = Counter()  # cases sent, per operation and mode


@pytest.fixture(scope="module")
def journeyman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    """``journeyman serve`` on the example workspace and a SQLite file of its own."""
    folder = tmp_path_factory.mktemp("fuzz")
    workspace = shutil.copytree(EXAMPLE_WORKSPACE, folder / "workspace")
    (workspace / "feedback_channels.yaml").write_text(FEEDBACK_CHANNELS)
    db = f"sqlite:///{folder / 'journeyman.db'}"
    with Journeyman(workspace, db, folder, FEEDBACK_ENV) as server:
        yield server.start()


@pytest.fixture(scope="module")
def served(journeyman: Journeyman, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The schema the server serves; the cases sent are counted at the end."""
    schema = schemathesis.openapi.from_url(f"{journeyman.url}/openapi.json", timeout=10)
    schema.config.update(base_url=journeyman.url)
    yield schema
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None and cases:
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nAPI fuzz: {sum(cases.values())} cases sent over {len(cases)} operations "
                f"and modes, at most {EXAMPLES} examples each (JOURNEYMAN_FUZZ_EXAMPLES)"
            )


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        client.trust_env = False  # never through a proxy: loopback only
        yield client


def test_the_served_document_is_the_one_the_fuzz_covers(journeyman: Journeyman) -> None:
    with httpx.Client(base_url=journeyman.url, trust_env=False) as client:
        assert client.get("/openapi.json").json() == SPEC


@pytest.mark.parametrize(
    ("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {g.value}" for m, p, g in OPERATIONS]
)
def test_every_operation_answers_as_its_document_says(
    served: Any, session: requests.Session, method: str, path: str, mode: GenerationMode
) -> None:
    operation = served[path][method]
    key = WRITE_KEY if path in INGEST else ADMIN_KEY
    label = f"{method} {path} {mode.value}"
    excluded: list[CheckFunction] = (
        [positive_data_acceptance] if (method, path) in RULES_BEYOND_DOCUMENT else []
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def answers_as_documented(case: schemathesis.Case[Any]) -> None:
        cases[label] += 1
        for name in [n for n in case.headers or {} if n.lower() in FRAMING]:
            del case.headers[name]
        case.call_and_validate(
            excluded_checks=excluded,
            session=session,
            headers={"Authorization": f"Bearer {key}"},
            timeout=ANSWER_SECONDS,
        )

    answers_as_documented()


# ---------------------------------------------------------------- what the fuzz found, pinned

HUGE = str(2**63)  # one past the largest id or version any store keeps


@pytest.fixture
def admin(journeyman: Journeyman) -> Iterator[httpx.Client]:
    with journeyman.client() as client:
        yield client


def assert_error(answer: httpx.Response, status: int, field: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["field"] == field, answer.text


def test_an_unknown_route_under_v1_answers_a_json_404(admin: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v1/nothing"),
        ("DELETE", "/v1/journeys"),
        ("GET", "/v1/journeys/welcome/versions/one"),
        ("GET", "/v1/dead-letters/-1/replay"),
        ("GET", "/v1/profiles%0A"),
    ]:
        assert_error(admin.request(method, path), 404, "path")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/messages?limit=²", "limit"),
        ("/v1/events?limit=²", "limit"),
        ("/v1/events?after=²", "after"),
        ("/v1/dead-letters?limit=²", "limit"),
        ("/v1/journeys/welcome?version=²", "version"),
        ("/v1/journeys/welcome/versions/1?against=²", "against"),
    ],
)
def test_a_number_in_unicode_digits_is_refused(admin: httpx.Client, path: str, field: str) -> None:
    assert_error(admin.get(path), 400, field)


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", f"/v1/journeys/welcome?version={HUGE}", "version"),
        ("GET", f"/v1/journeys/welcome/versions/{HUGE}", "version"),
        ("DELETE", f"/v1/dead-letters/{HUGE}", "id"),
        ("POST", f"/v1/dead-letters/{HUGE}/replay", "id"),
        ("DELETE", f"/v1/dead-letters/{'9' * 5000}", "id"),
    ],
)
def test_a_number_no_store_can_keep_names_nothing(
    admin: httpx.Client, method: str, path: str, field: str
) -> None:
    assert_error(admin.request(method, path), 404, field)


def test_a_profile_id_with_a_line_break_is_found_and_no_other(
    journeyman: Journeyman, admin: httpx.Client
) -> None:
    for user in ("line\nbreak", "line"):
        assert admin.post("/v1/identify", json={"userId": user}).status_code == 202
    assert admin.get("/v1/profiles/line%0Abreak").json()["id"] == "line\nbreak"
    # A trailing line break is part of the id, not dropped before the route matches.
    assert_error(admin.get("/v1/profiles/line%0A"), 404, "profile_id")
    with httpx.Client(base_url=journeyman.url, trust_env=False, timeout=20) as browser:
        login = browser.get("/login")
        form = {"csrf": login.cookies["jm_login"], "key": ADMIN_KEY, "user": ""}
        assert browser.post("/login", data=form).status_code == 303
        page = browser.get("/profiles/line%0Abreak", headers={"Accept": "application/json"})
        assert page.status_code == 200, page.text
        assert page.json()["id"] == "line\nbreak"
        missing = browser.get("/profiles/line%0A", headers={"Accept": "application/json"})
        assert missing.status_code == 404


def test_a_publish_with_a_dry_run_that_is_no_flag_publishes_nothing(admin: httpx.Client) -> None:
    before = admin.get("/v1/journeys").json()
    answer = admin.put("/v1/workspace?dry_run=yes", json={"files": {}})
    assert_error(answer, 400, "dry_run")
    assert admin.get("/v1/journeys").json() == before


def test_a_nul_in_an_id_or_filter_finds_nothing(admin: httpx.Client) -> None:
    assert_error(admin.get("/v1/profiles/a%00b"), 404, "profile_id")
    assert admin.get("/v1/messages?profile=%00").json() == {"messages": []}
    assert admin.get("/v1/profiles?q=%00").json()["profiles"] == []
