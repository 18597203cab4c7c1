"""Every endpoint that needs no key, fed forged and malformed requests over real HTTP.

``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``, ``/docs``, the console's
login page and form, the recipient's unsubscribe and preference links, and the provider
feedback hooks (``/hooks/...``) answer anyone, so each is sent forged and garbled cookies,
tokens and signatures, NUL bytes and huge values in its query, headers and form fields,
wrong methods and odd content types. Each request is written on a raw socket, as a hostile
client would (an HTTP library refuses to send much of this). Every answer must be a clean
2xx or 4xx, come within a few seconds, show neither key, and leave no error in the
server's log; no forged request may log anyone in, and no forged link may change anyone's
consent.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from journeyman.domain.tokens import sign
from tests.integration.test_fuzz_api import FEEDBACK_CHANNELS, FEEDBACK_ENV
from tests.servers import ADMIN_KEY, LOOPBACK, WRITE_KEY, Journeyman

ANSWER_SECONDS = 10  # no answer in this long is a hang
EXAMPLE_WORKSPACE = Path(__file__).parents[2] / "examples"
GETS = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/login"]
SESSION, LOGIN = "jm_session", "jm_login"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]  # names in lower case
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@pytest.fixture(scope="module")
def journeyman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    folder = tmp_path_factory.mktemp("keyless")
    workspace = shutil.copytree(EXAMPLE_WORKSPACE, folder / "workspace")
    (workspace / "feedback_channels.yaml").write_text(FEEDBACK_CHANNELS)
    db = f"sqlite:///{folder / 'journeyman.db'}"
    with Journeyman(workspace, db, folder, FEEDBACK_ENV) as server:
        yield server.start()


@pytest.fixture(autouse=True)
def no_errors_logged(journeyman: Journeyman) -> Iterator[None]:
    """The server logs no error for anything a test sends."""
    seen = len(journeyman.output)
    yield
    logged = journeyman.output[seen:]
    assert "Traceback" not in logged, logged
    assert "ERROR" not in logged, logged


def send(server: Journeyman, head: str, body: bytes = b"", *, finish: bool = True) -> Answer | None:
    """Send a request as written (latin-1: any byte may be in it) and read the answer;
    ``finish=False`` leaves the body short of its Content-Length and stops writing, and
    then there may be no answer (None): the server may close the connection at once."""
    request = head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body
    with socket.create_connection((LOOPBACK, server.port), timeout=ANSWER_SECONDS) as sock:
        sock.sendall(request)
        if not finish:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):  # a timeout here fails the test: a hang
            chunks.append(chunk)
    if not chunks and not finish:
        return None
    return _parse(b"".join(chunks))


def _parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    found = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert found is not None, f"no HTTP answer: {raw[:200]!r}"
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    ]
    if any(v == "chunked" for k, v in headers if k == "transfer-encoding"):
        body = _unchunk(body)
    return Answer(int(found.group(1)), headers, body)


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        length = int(size.split(b";")[0], 16)
        if length == 0:
            break
        out, body = out + rest[:length], rest[length + 2 :]
    return out


def get(server: Journeyman, target: str, *headers: str) -> Answer:
    lines = "".join(f"{h}\n" for h in headers)
    return answered(
        send(server, f"GET {target} HTTP/1.1\nHost: {LOOPBACK}\n{lines}Connection: close\n")
    )


def answered(answer: Answer | None) -> Answer:
    assert answer is not None, "no answer"
    return answer


def post_form(server: Journeyman, body: bytes, *headers: str) -> Answer:
    lines = "".join(f"{h}\n" for h in headers) + f"Content-Length: {len(body)}\n"
    return answered(send(server, _login_head(lines), body))


def _login_head(lines: str) -> str:
    return f"POST /login HTTP/1.1\nHost: {LOOPBACK}\n{lines}Connection: close\n"


def assert_clean(answer: Answer, *allowed: int) -> None:
    """A 2xx or 4xx (one of ``allowed``, if given) that shows no key."""
    assert 200 <= answer.status < 500, answer
    if allowed:
        assert answer.status in allowed, answer
    shown = answer.body + "".join(f"{k}: {v}\n" for k, v in answer.headers).encode("latin-1")
    for secret in (ADMIN_KEY, WRITE_KEY):
        assert secret.encode() not in shown, f"{secret} leaked: {answer}"
    assert b"Traceback" not in answer.body


def assert_not_logged_in(answer: Answer) -> None:
    cookies = answer.header("set-cookie")
    assert not any(c.startswith(f"{SESSION}=") and "Max-Age=0" not in c for c in cookies)


def login_token(server: Journeyman) -> str:
    """The CSRF token a fresh login page hands out in its cookie."""
    page = get(server, "/login")
    cookie = next(c for c in page.header("set-cookie") if c.startswith(f"{LOGIN}="))
    return cookie.split(";")[0].split("=", 1)[1]


UNSIGNED = base64.urlsafe_b64encode(b'{"user":"admin","expires":9999999999}').decode()
NOT_UTF8 = base64.b64encode(b"\xff\xfe:x").decode()
FORGED_COOKIES = [
    f"{SESSION}=eyJ1c2VyIjoiYWRtaW4iLCJleHBpcmVzIjo5OTk5OTk5OTk5fQ.forged",
    f"{SESSION}={UNSIGNED}.",
    f"{SESSION}=.",
    f"{SESSION}=\xff\xfe\xfd.\xe9",
    f'{SESSION}="\\"; {LOGIN}=;;;=',
    f"{SESSION}={'A' * 8000}.{'B' * 64}",
    "; ".join(f"c{i}=x" for i in range(500)),
]


@pytest.mark.parametrize("path", GETS)
@pytest.mark.parametrize("cookie", FORGED_COOKIES, ids=range(len(FORGED_COOKIES)))
def test_forged_and_garbled_cookies_get_the_public_answer(
    journeyman: Journeyman, path: str, cookie: str
) -> None:
    answer = get(journeyman, path, f"Cookie: {cookie}")
    assert_clean(answer, 200)
    assert_not_logged_in(answer)


GARBLED_TOKENS = [
    "Bearer ",
    "Bearer \xff\xfe",
    f"Bearer {'k' * 8000}",
    "Basic !!!not-base64!!!",
    f"Basic {NOT_UTF8}",
    "Digest username=admin",
    f"Bearer {WRITE_KEY}",
]


@pytest.mark.parametrize("path", GETS)
@pytest.mark.parametrize("token", GARBLED_TOKENS, ids=range(len(GARBLED_TOKENS)))
def test_garbled_tokens_are_ignored_where_no_key_is_needed(
    journeyman: Journeyman, path: str, token: str
) -> None:
    assert_clean(get(journeyman, path, f"Authorization: {token}"), 200)


HOSTILE_QUERIES = [
    "?next=%00",
    "?%00=%00&next=%2F%2Fevil.example",
    "?next=%ff%fe%fd",
    "?next=/%0A/evil.example",
    "?next=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
    f"?next=/{'a' * 30000}",
    "?" + "&".join(f"k{i}=v" for i in range(5000)),
]


@pytest.mark.parametrize("path", GETS)
@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
def test_nul_bytes_and_huge_values_in_the_query_get_a_clean_answer(
    journeyman: Journeyman, path: str, query: str
) -> None:
    answer = get(journeyman, path + query)
    assert_clean(answer)
    assert b"<script>" not in answer.body


def test_the_login_page_keeps_only_a_path_on_this_site_as_where_to_go_next(
    journeyman: Journeyman,
) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "%00"):
        page = get(journeyman, f"/login?next={target}").body.decode()
        assert 'name="next" value="/journeys"' in page, target


HOSTILE_HEADERS = [
    "X-Forwarded-For: \x00, [, ::::, 999.1.1.1",
    "X-Forwarded-For: " + ", ".join(["203.0.113.9"] * 2000),
    "Accept: application/json\x00text/html",
    "Accept: " + "a/b;q=" * 3000,
    "Host: [",
    "Content-Type: \xff\xfe",
    "Range: bytes=99999999999999999999-",
    "X-Big: " + "x" * 60000,
]


@pytest.mark.parametrize("path", GETS)
@pytest.mark.parametrize("header", HOSTILE_HEADERS, ids=range(len(HOSTILE_HEADERS)))
def test_nul_bytes_and_huge_values_in_headers_get_a_clean_answer(
    journeyman: Journeyman, path: str, header: str
) -> None:
    # Host twice would be refused for that alone: the hostile one replaces the usual one.
    head = f"GET {path} HTTP/1.1\n{header}\nConnection: close\n"
    if not header.startswith("Host:"):
        head = f"GET {path} HTTP/1.1\nHost: {LOOPBACK}\n{header}\nConnection: close\n"
    assert_clean(answered(send(journeyman, head)))


# Every method a path does not take (the login form is posted to /login: not wrong there).
WRONG_METHODS = [
    (method, path)
    for path in GETS
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW")
    if (method, path) != ("POST", "/login")
]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
def test_wrong_methods_are_refused_cleanly(journeyman: Journeyman, path: str, method: str) -> None:
    head = (
        f"{method} {path} HTTP/1.1\nHost: {LOOPBACK}\nContent-Type: application/json\n"
        "Content-Length: 2\nConnection: close\n"
    )
    answer = answered(send(journeyman, head, b"{}"))
    assert_clean(answer)
    assert 400 <= answer.status < 500, answer


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
        f"{FORM}; charset=klingon",
        f"{FORM}\x00",
        "\xff\xfe/\xfd",
    ],
)
def test_odd_content_types_of_the_login_form_log_nobody_in(
    journeyman: Journeyman, content_type: str | None
) -> None:
    token = login_token(journeyman)
    body = f"csrf={token}&key={ADMIN_KEY}".encode()
    headers = [f"Cookie: {LOGIN}={token}"]
    if content_type is not None:
        headers.append(f"Content-Type: {content_type}")
    answer = post_form(journeyman, body, *headers)
    if content_type is None or not content_type.startswith(FORM):
        assert_clean(answer, 403)  # not a form: nothing in it is read
    assert_clean(answer)
    if answer.status != 303:
        assert_not_logged_in(answer)


@pytest.mark.parametrize(
    "fields",
    [
        b"csrf=forged&key=forged",
        b"csrf=%00&key=%00&user=%00&next=%00",
        b"csrf=\xff\xfe&key=\xff",
        b"csrf=&key=&user=",
        b"=&&&==&csrf",
        b"key=" + b"k" * 60000,
        b"key=" + b"k" * 70000,
        b"user=admin&user=sam&key=a&key=b",
    ],
    ids=range(8),
)
def test_forged_and_garbled_login_forms_log_nobody_in(
    journeyman: Journeyman, fields: bytes
) -> None:
    for cookie in (f"Cookie: {LOGIN}=forged", f"Cookie: {LOGIN}=\x01\xff", "X-None: 1"):
        answer = post_form(journeyman, fields, f"Content-Type: {FORM}", cookie)
        assert_clean(answer, 400, 401, 403, 429)  # 400: the HTTP server refuses \x01
        assert_not_logged_in(answer)


def test_a_login_token_forged_in_both_cookie_and_form_still_needs_the_key(
    journeyman: Journeyman,
) -> None:
    body = b"csrf=forged&key=not-the-key&user="
    answer = post_form(journeyman, body, f"Content-Type: {FORM}", f"Cookie: {LOGIN}=forged")
    assert_clean(answer, 401, 429)
    assert_not_logged_in(answer)


def test_a_forged_forwarded_for_header_gets_a_clean_answer(journeyman: Journeyman) -> None:
    token = login_token(journeyman)
    body = f"csrf={token}&key=wrong".encode()
    for forwarded in ("\x01\x02", "[::1", "1.2.3.4, " * 3000, "unknown, , ,"):
        answer = post_form(
            journeyman,
            body,
            f"Content-Type: {FORM}",
            f"Cookie: {LOGIN}={token}",
            f"X-Forwarded-For: {forwarded}",
        )
        assert_clean(answer)
        assert_not_logged_in(answer)


def test_after_a_login_a_hostile_next_stays_on_this_site(journeyman: Journeyman) -> None:
    for target in ("//evil.example", "/\t/evil.example", "/%0A/evil.example", "/\\evil.example"):
        token = login_token(journeyman)
        body = f"csrf={token}&key={ADMIN_KEY}&next={target}".encode()
        answer = post_form(journeyman, body, f"Content-Type: {FORM}", f"Cookie: {LOGIN}={token}")
        assert_clean(answer, 303)
        [location] = answer.header("location")
        # Browsers drop tabs and line breaks from a URL before they follow it.
        followed = re.sub(r"[\t\r\n]", "", location)
        assert followed.startswith("/"), location
        assert not followed.startswith("//"), location
        assert "\\" not in followed, location


def test_a_form_cut_short_neither_hangs_nor_fails(journeyman: Journeyman) -> None:
    token = login_token(journeyman)
    body = f"csrf={token}&key={ADMIN_KEY}".encode()
    lines = f"Content-Type: {FORM}\nCookie: {LOGIN}={token}\nContent-Length: {len(body) + 100}\n"
    # The client stops sending 100 bytes short: the server gives up on it, logs no error,
    # and logs nobody in (the connection closes; an answer, if any, is a clean one).
    answer = send(journeyman, _login_head(lines), body, finish=False)
    if answer is not None:
        assert_clean(answer)
        assert_not_logged_in(answer)


# ---------------------------------------------------------------- the links of tracked email

# The click and open links take a signed token; none of these is one this server made.
TRACKING = ["/c/", "/o/"]
FORGED_TRACKING_TOKENS = [
    "kbJkaTpwcm9tbzoxOnByb21vOjEUFTz-CtOTzQd6ZYj1ZBSz",  # the shape of one, not signed here
    "x",
    "A" * 30000,
    "%00",
    "a%00b",
    "%ff%fe%fd",
    "..%2F..%2Fv1%2Fjourneys",
    "%E2%80%AE%F0%9F%98%80",
    "https:%2F%2Fevil.example",
    "a?next=https://evil.example",
]


@pytest.mark.parametrize("path", TRACKING)
@pytest.mark.parametrize("token", FORGED_TRACKING_TOKENS, ids=range(len(FORGED_TRACKING_TOKENS)))
def test_forged_tracking_tokens_are_refused_and_lead_nowhere(
    journeyman: Journeyman, path: str, token: str
) -> None:
    answer = get(journeyman, path + token, "User-Agent: Mozilla/5.0")
    assert_clean(answer)
    assert 400 <= answer.status < 500, answer
    assert answer.header("location") == []


@pytest.mark.parametrize("path", TRACKING)
@pytest.mark.parametrize("header", HOSTILE_HEADERS, ids=range(len(HOSTILE_HEADERS)))
def test_hostile_headers_on_tracking_links_get_a_clean_answer(
    journeyman: Journeyman, path: str, header: str
) -> None:
    head = f"GET {path}forged HTTP/1.1\n{header}\nConnection: close\n"
    if not header.startswith("Host:"):
        head = f"GET {path}forged HTTP/1.1\nHost: {LOOPBACK}\n{header}\nConnection: close\n"
    answer = answered(send(journeyman, head))
    assert_clean(answer)
    assert answer.header("location") == []


@pytest.mark.parametrize("path", TRACKING)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_tracking_links_take_only_get(journeyman: Journeyman, path: str, method: str) -> None:
    head = f"{method} {path}forged HTTP/1.1\nHost: {LOOPBACK}\nContent-Length: 0\n"
    answer = answered(send(journeyman, head + "Connection: close\n"))
    assert_clean(answer)
    assert 400 <= answer.status < 500, answer


def test_forged_tracking_links_recorded_nothing(journeyman: Journeyman) -> None:
    for path in TRACKING:
        for token in FORGED_TRACKING_TOKENS:
            assert_clean(get(journeyman, path + token))
    database = sqlite3.connect(journeyman.db.removeprefix("sqlite:///"))
    try:
        names = ("message_clicked", "message_opened")
        found = database.execute("SELECT count(*) FROM events WHERE name IN (?, ?)", names)
        assert found.fetchone() == (0,)
    finally:
        database.close()


# ------------------------------------------------ the recipient's links: /u and /preferences

FORGED_LINK_TOKENS = [
    sign(b"not-this-deployment", "unsubscribe", "u1:welcome:1:hello:1"),
    sign(b"not-this-deployment", "preferences", "u1"),
    "x",
    "A" * 1100,
    "%00",
    "%ff%fe%fd",
    "..%2F..%2Fhealthz",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "a%0Ab",
    "=" * 40,
]
LINK_PATHS = ["/u/", "/preferences/"]


@pytest.mark.parametrize("path", LINK_PATHS)
@pytest.mark.parametrize("token", FORGED_LINK_TOKENS, ids=range(len(FORGED_LINK_TOKENS)))
def test_forged_link_tokens_are_refused_cleanly(
    journeyman: Journeyman, path: str, token: str
) -> None:
    answer = get(journeyman, path + token)
    assert_clean(answer, 404)
    assert b"<script>" not in answer.body
    for body in (b"List-Unsubscribe=One-Click", b"topic=news&all=yes", b"\xff\x00" * 10):
        head = (
            f"POST {path}{token} HTTP/1.1\nHost: {LOOPBACK}\nContent-Type: {FORM}\n"
            f"Content-Length: {len(body)}\nConnection: close\n"
        )
        assert_clean(answered(send(journeyman, head, body)), 404)


@pytest.mark.parametrize("path", LINK_PATHS)
@pytest.mark.parametrize("header", HOSTILE_HEADERS, ids=range(len(HOSTILE_HEADERS)))
def test_hostile_headers_on_the_links_get_a_clean_answer(
    journeyman: Journeyman, path: str, header: str
) -> None:
    head = f"POST {path}x HTTP/1.1\n{header}\nContent-Length: 0\nConnection: close\n"
    if not header.startswith("Host:"):
        head = f"POST {path}x HTTP/1.1\nHost: {LOOPBACK}\n{header}\nContent-Length: 0\n"
        head += "Connection: close\n"
    assert_clean(answered(send(journeyman, head)))


def test_forged_links_record_no_consent_change(journeyman: Journeyman) -> None:
    for path in LINK_PATHS:
        head = f"POST {path}{FORGED_LINK_TOKENS[0]} HTTP/1.1\nHost: {LOOPBACK}\n"
        send(journeyman, head + "Content-Length: 0\nConnection: close\n")
    with journeyman.client() as admin:
        for name in ("unsubscribed", "resubscribed"):
            answer = admin.get("/v1/events", params={"event": name})
            assert answer.json()["events"] == []


@pytest.mark.parametrize("path", LINK_PATHS)
def test_a_link_form_cut_short_neither_hangs_nor_fails(journeyman: Journeyman, path: str) -> None:
    body = b"List-Unsubscribe=One-Click"
    head = (
        f"POST {path}x HTTP/1.1\nHost: {LOOPBACK}\nContent-Type: {FORM}\n"
        f"Content-Length: {len(body) + 100}\nConnection: close\n"
    )
    answer = send(journeyman, head, body, finish=False)
    if answer is not None:
        assert_clean(answer)


# ---------------------------------------------------------------- provider feedback

HOOKS = [
    "/hooks/email/esp",
    "/hooks/email/nosuch",
    "/hooks/twilio/texts/inbound",
    "/hooks/twilio/texts/status/AAAA",
    "/hooks/twilio/texts/status/%00",
    "/hooks/twilio/nosuch/inbound",
]
HOSTILE_BODIES = [
    b"",
    b"[]",
    b'[{"type": "bounce", "message": "k", "bounce": "hard"}]',
    b"\x00\xff\xfe",
    b"From=%2B1555&Body=STOP&MessageSid=SM1",
    b"Body=%ff%fe&From=\x00",
    b"&".join(b"k%d=v" % i for i in range(1000)),
    b"[" + b"{}," * 5000 + b"{}]",
]
HOSTILE_SIGNATURES = [
    None,
    "X-Journeyman-Signature: sha256=",
    "X-Journeyman-Signature: sha256=" + "0" * 64,
    "X-Journeyman-Signature: \xff\xfe",
    "X-Twilio-Signature: ",
    "X-Twilio-Signature: AAAA",
    "X-Twilio-Signature: " + "A" * 8000,
]


def post(server: Journeyman, path: str, body: bytes, *headers: str) -> Answer:
    lines = "".join(f"{h}\n" for h in headers if h)
    head = (
        f"POST {path} HTTP/1.1\nHost: {LOOPBACK}\n{lines}Content-Length: {len(body)}\n"
        "Connection: close\n"
    )
    return answered(send(server, head, body))


@pytest.mark.parametrize("path", HOOKS)
@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
@pytest.mark.parametrize("signature", HOSTILE_SIGNATURES, ids=range(len(HOSTILE_SIGNATURES)))
def test_forged_provider_feedback_is_refused_and_stores_nothing(
    journeyman: Journeyman, path: str, body: bytes, signature: str | None
) -> None:
    answer = post(journeyman, path, body, signature or "", f"Content-Type: {FORM}")
    assert_clean(answer, 400, 401, 403, 404, 413)
    with journeyman.client() as api:
        metrics = api.get("/metrics").text
    assert "journeyman_events_accepted_total 0" in metrics


@pytest.mark.parametrize("path", HOOKS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "BREW"])
def test_wrong_methods_on_provider_feedback_are_refused_cleanly(
    journeyman: Journeyman, path: str, method: str
) -> None:
    head = f"{method} {path} HTTP/1.1\nHost: {LOOPBACK}\nContent-Length: 0\nConnection: close\n"
    answer = answered(send(journeyman, head))
    assert_clean(answer)
    assert 400 <= answer.status < 500, answer


@pytest.mark.parametrize("path", HOOKS[:3])
def test_an_oversized_provider_call_is_refused_before_it_is_read(
    journeyman: Journeyman, path: str
) -> None:
    head = f"POST {path} HTTP/1.1\nHost: {LOOPBACK}\nContent-Length: 1100000\nConnection: close\n"
    answer = send(journeyman, head, b"x" * 1000, finish=False)
    if answer is not None:  # the server may close at once
        assert_clean(answer, 404, 413)
