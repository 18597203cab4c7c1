"""The console's login: logging out ends the session for good, and the login limit counts
failures per user and client address, believing ``X-Forwarded-For`` from trusted proxies
only."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from journeyman.api import Keys, create_app
from journeyman.cli import main
from journeyman.runtime.service import Runtime
from journeyman.server import SettingError, trusted_proxies
from journeyman.storage.sqlite import SQLiteStore
from journeyman.web import ConsoleSettings
from journeyman.web.auth import LoginThrottle, client_address, parse_networks
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace

KEYS = Keys(write="w-key", admin="a-key")
USERS = {"sam": "sam-password", "kim": "kim-password"}
JSON = {"Accept": "application/json"}
PROXY = "10.0.0.2"  # a reverse proxy in front of the console
OUTSIDE = "198.51.100.7"  # anyone else

Client = httpx.AsyncClient
Test = Callable[[Callable[..., Client]], Awaitable[None]]


class ForgetfulStore(SQLiteStore):
    """A store that cannot write settings while ``broken``."""

    broken = False

    async def set_setting(self, key: str, value: str) -> None:
        if self.broken:
            raise OSError("disk I/O error")
        await super().set_setting(key, value)


def run_console(
    tmp_path: Path, test: Test, *, proxies: str = "", store: ForgetfulStore | None = None
) -> None:
    """Run ``test`` with a factory of clients of the console, each with its own cookies
    and connecting from the address it is given (by default OUTSIDE)."""
    workspace = load_workspace(write_workspace(tmp_path / "ws", BASE)).workspace
    assert workspace is not None
    settings = ConsoleSettings(users=USERS, trusted_proxies=parse_networks([proxies]))

    async def main() -> None:
        runtime = Runtime(workspace, store or ForgetfulStore(tmp_path / "j.db"), {}, env={})
        await runtime.start()
        app = create_app(runtime, KEYS, settings)
        clients: list[Client] = []

        def client(peer: str = OUTSIDE) -> Client:
            transport = httpx.ASGITransport(app=app, client=(peer, 40000))
            made = httpx.AsyncClient(transport=transport, base_url="http://j.test")
            clients.append(made)
            return made

        try:
            await test(client)
        finally:
            for made in clients:
                await made.aclose()
            await runtime.stop()

    asyncio.run(main())


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


async def log_in(client: Client, user: str, key: str, *forwarded_for: str) -> httpx.Response:
    """Log in; each ``forwarded_for`` is one X-Forwarded-For header line."""
    form = await client.get("/login")
    fields = {"csrf": _csrf(form.text), "user": user, "key": key, "next": "/journeys"}
    headers = [("X-Forwarded-For", value) for value in forwarded_for]
    return await client.post("/login", data=fields, headers=headers)


async def logged_in(client: Client) -> bool:
    return (await client.get("/journeys")).status_code == 200


# Logging out


def test_a_saved_cookie_is_refused_after_logout(tmp_path: Path) -> None:
    async def test(client: Callable[..., Client]) -> None:
        browser = client()
        assert (await log_in(browser, "sam", "sam-password")).status_code == 303
        saved = browser.cookies["jm_session"]
        page = await browser.get("/journeys")
        csrf = _csrf(page.text)
        assert (await browser.post("/logout", data={"csrf": csrf})).status_code == 303

        thief = client()
        thief.cookies.set("jm_session", saved)
        assert not await logged_in(thief)
        assert (await thief.get("/journeys", headers=JSON)).status_code == 401
        pause = await thief.post("/journeys/x/pause", data={"csrf": csrf})
        assert pause.status_code == 401

    run_console(tmp_path, test)


def test_logging_out_ends_that_session_only(tmp_path: Path) -> None:
    async def test(client: Callable[..., Client]) -> None:
        laptop, phone = client(), client()
        await log_in(laptop, "sam", "sam-password")
        await log_in(phone, "sam", "sam-password")
        csrf = _csrf((await laptop.get("/journeys")).text)
        await laptop.post("/logout", data={"csrf": csrf})

        assert await logged_in(phone)
        assert not await logged_in(laptop)
        await log_in(laptop, "sam", "sam-password")
        assert await logged_in(laptop)

    run_console(tmp_path, test)


def test_a_logged_out_cookie_stays_refused_after_a_restart(tmp_path: Path) -> None:
    saved: dict[str, str] = {}

    async def before(client: Callable[..., Client]) -> None:
        browser = client()
        await log_in(browser, "", "a-key")
        saved["cookie"] = browser.cookies["jm_session"]
        await browser.post("/logout", data={"csrf": _csrf((await browser.get("/journeys")).text)})

    async def after(client: Callable[..., Client]) -> None:
        browser = client()
        browser.cookies.set("jm_session", saved["cookie"])
        assert not await logged_in(browser)

    run_console(tmp_path, before)
    run_console(tmp_path, after)


def test_a_logout_the_database_refuses_still_ends_the_session_here(tmp_path: Path) -> None:
    store = ForgetfulStore(tmp_path / "j.db")

    async def test(client: Callable[..., Client]) -> None:
        browser = client()
        await log_in(browser, "sam", "sam-password")
        saved = browser.cookies["jm_session"]
        store.broken = True
        csrf = _csrf((await browser.get("/journeys")).text)
        assert (await browser.post("/logout", data={"csrf": csrf})).status_code == 303
        store.broken = False
        thief = client()
        thief.cookies.set("jm_session", saved)
        assert not await logged_in(thief)

    run_console(tmp_path, test, store=store)


# The login limit


def test_failures_for_one_user_do_not_lock_out_another_at_the_same_address(
    tmp_path: Path,
) -> None:
    async def test(client: Callable[..., Client]) -> None:
        office = client()
        for _ in range(10):
            assert (await log_in(office, "sam", "guess")).status_code == 401
        assert (await log_in(office, "sam", "sam-password")).status_code == 429
        assert (await log_in(office, "kim", "kim-password")).status_code == 303
        assert (await log_in(client(peer="203.0.113.1"), "sam", "sam-password")).status_code == 303

    run_console(tmp_path, test)


def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    async def test(client: Callable[..., Client]) -> None:
        guesser = client()
        for n in range(10):
            answer = await log_in(guesser, "sam", "guess", f"192.0.2.{n}")
            assert answer.status_code == 401
        refused = await log_in(guesser, "sam", "sam-password", "192.0.2.99")
        assert refused.status_code == 429

    run_console(tmp_path, test, proxies=PROXY)


def test_a_trusted_proxys_forwarded_for_names_the_client(tmp_path: Path) -> None:
    async def test(client: Callable[..., Client]) -> None:
        proxy = client(peer=PROXY)
        for _ in range(10):
            # The client's own header comes first; the proxy appends what it saw.
            answer = await log_in(proxy, "sam", "guess", "1.2.3.4, 192.0.2.10")
            assert answer.status_code == 401
        refused = await log_in(proxy, "sam", "sam-password", "192.0.2.10")
        assert refused.status_code == 429
        # A proxy may add a header line of its own rather than append to the client's.
        refused = await log_in(proxy, "sam", "sam-password", "192.0.2.11", "192.0.2.10")
        assert refused.status_code == 429
        other = await log_in(proxy, "sam", "sam-password", "1.2.3.4, 192.0.2.11")
        assert other.status_code == 303

    run_console(tmp_path, test, proxies="10.0.0.0/8")


def test_the_client_address_skips_trusted_proxies_and_stops_at_anything_else() -> None:
    trusted = parse_networks(["10.0.0.0/8", "::1"])
    assert client_address("10.0.0.2", "192.0.2.1, 10.0.0.3", trusted) == "192.0.2.1"
    assert client_address("::1", "2001:db8::1", trusted) == "2001:db8::1"
    assert client_address("10.0.0.2", "10.0.0.5", trusted) == "10.0.0.5"
    assert client_address("10.0.0.2", "junk, 10.0.0.5", trusted) == "10.0.0.5"
    assert client_address("10.0.0.2", "", trusted) == "10.0.0.2"
    assert client_address("192.0.2.1", "10.0.0.9", trusted) == "192.0.2.1"
    assert client_address("192.0.2.1", "10.0.0.9", ()) == "192.0.2.1"


def test_the_login_throttle_also_bounds_guessing_many_names_from_one_address() -> None:
    throttle = LoginThrottle(per_user=2, per_address=5, window=60)
    for n in range(5):
        throttle.failed(f"user{n}", "192.0.2.1", now=0)
    assert not throttle.allowed("someone", "192.0.2.1", now=1)
    assert throttle.allowed("someone", "192.0.2.2", now=1)
    assert throttle.allowed("someone", "192.0.2.1", now=61)


def test_trusted_proxies_come_from_the_option_or_the_environment() -> None:
    env = {"JOURNEYMAN_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1"}
    assert [str(n) for n in trusted_proxies((), env)] == ["10.0.0.0/8", "192.168.1.1/32"]
    assert [str(n) for n in trusted_proxies(("172.16.0.0/12",), env)] == ["172.16.0.0/12"]
    assert trusted_proxies((), {}) == ()
    with pytest.raises(SettingError, match="JOURNEYMAN_TRUSTED_PROXIES: 'proxy' is not an IP"):
        trusted_proxies((), {"JOURNEYMAN_TRUSTED_PROXIES": "proxy"})
    with pytest.raises(
        SettingError, match=re.escape("--trusted-proxy: '10.0.0.0/33' is not an IP")
    ):
        trusted_proxies(("10.0.0.0/33",), {})


def test_serve_refuses_a_trusted_proxy_that_is_not_an_address(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path / "ws", BASE)
    db = f"sqlite:///{tmp_path / 'j.db'}"
    args = ["serve", "--workspace", str(folder), "--db", db, "--port", "0"]

    result = CliRunner().invoke(main, [*args, "--trusted-proxy", "proxy.local"])

    assert result.exit_code == 1
    assert "--trusted-proxy: 'proxy.local' is not an IP address or network" in result.output
    assert not (tmp_path / "j.db").exists()
