"""``journeyman serve``: the runtime, the HTTP API and (optionally) the mail catcher.

:func:`serve` validates the workspace, opens the store, starts the engine, timer and
delivery loops and the HTTP server, and on SIGTERM or SIGINT stops accepting requests,
finishes the batch in flight and closes everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn

from journeyman.api import Keys, create_app
from journeyman.browsers import parse_origins
from journeyman.channels.base import Channel
from journeyman.channels.catcher import MailCatcher
from journeyman.channels.smtp import SmtpChannel
from journeyman.domain.model import Workspace
from journeyman.errors import JourneymanError
from journeyman.runtime.dispatcher import RetryPolicy
from journeyman.runtime.experiments import CHECK_EVERY
from journeyman.runtime.service import Runtime, build_channels
from journeyman.storage import is_memory, is_postgres, open_store, shown_url, sqlite_path
from journeyman.storage.base import Database, Store
from journeyman.web import ConsoleSettings, UsersError, parse_users
from journeyman.web.auth import Network, parse_networks

__all__ = [
    "ServeOptions",
    "SettingError",
    "console_users",
    "cors_origins",
    "data_dir",
    "experiment_check",
    "resolve_keys",
    "retry_policy",
    "serve",
    "storage_url",
    "trusted_proxies",
]

DEFAULT_STORAGE = "sqlite:///journeyman.db"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    workspace_dir: Path
    storage: str
    host: str = "127.0.0.1"
    port: int = 8000
    catcher_port: int | None = None  # run the mail catcher on this port, for email
    bus: str | None = None  # NATS URL: ingest publishes to JetStream, workers apply
    stream: str = "JOURNEYMAN"
    partitions: int = 16
    trusted_proxies: tuple[str, ...] = ()  # addresses or networks, as given
    cors_origins: tuple[str, ...] = ()  # origins whose pages may send events, as given
    public_url: str | None = None  # the address links in messages point to
    publish: bool = False  # publish the folder at start even over a newer version


def storage_url(option: str | None, workspace: Workspace, env: Mapping[str, str]) -> str:
    """The command line first, then JOURNEYMAN_DB, then the settings document."""
    return option or env.get("JOURNEYMAN_DB") or workspace.settings.storage or DEFAULT_STORAGE


class SettingError(JourneymanError):
    """A ``JOURNEYMAN_*`` environment variable whose value cannot be used."""


def retry_policy(env: Mapping[str, str]) -> RetryPolicy:
    """How deliveries that fail for now are retried.

    ``JOURNEYMAN_RETRY_BASE`` is the wait before the first retry, in seconds (it doubles
    with every attempt); ``JOURNEYMAN_RETRY_ATTEMPTS`` is how many attempts a delivery
    gets in all before it counts as failed.
    """
    default = RetryPolicy()
    base, attempts = env.get("JOURNEYMAN_RETRY_BASE"), env.get("JOURNEYMAN_RETRY_ATTEMPTS")
    seconds = default.base.total_seconds() if base is None else _number(base)
    if not (math.isfinite(seconds) and seconds > 0):
        raise SettingError(
            f"JOURNEYMAN_RETRY_BASE must be a number of seconds above 0, not {base!r}"
        )
    tries = default.attempts if attempts is None else _number(attempts)
    if not (math.isfinite(tries) and tries >= 1 and tries == int(tries)):
        raise SettingError(
            f"JOURNEYMAN_RETRY_ATTEMPTS must be a whole number from 1 up, not {attempts!r}"
        )
    return RetryPolicy(attempts=int(tries), base=timedelta(seconds=seconds), cap=default.cap)


def experiment_check(env: Mapping[str, str]) -> float:
    """Seconds between two checks of the experiments' winner policies:
    ``JOURNEYMAN_EXPERIMENT_CHECK``, default 30 (see :mod:`journeyman.runtime.experiments`)."""
    text = env.get("JOURNEYMAN_EXPERIMENT_CHECK")
    seconds = CHECK_EVERY if text is None else _number(text)
    if not (math.isfinite(seconds) and seconds > 0):
        raise SettingError(
            f"JOURNEYMAN_EXPERIMENT_CHECK must be a number of seconds above 0, not {text!r}"
        )
    return seconds


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def console_users(env: Mapping[str, str]) -> dict[str, str]:
    """The console's users besides the admin: ``JOURNEYMAN_CONSOLE_USERS=name:password,...``."""
    try:
        return parse_users(env.get("JOURNEYMAN_CONSOLE_USERS"))
    except UsersError as error:
        raise SettingError(str(error)) from None


def trusted_proxies(given: Sequence[str], env: Mapping[str, str]) -> tuple[Network, ...]:
    """The reverse proxies whose ``X-Forwarded-For`` the console believes: ``--trusted-proxy``
    values, else ``JOURNEYMAN_TRUSTED_PROXIES`` (comma-separated); none by default."""
    source = "--trusted-proxy" if given else "JOURNEYMAN_TRUSTED_PROXIES"
    try:
        return parse_networks(given or [env.get("JOURNEYMAN_TRUSTED_PROXIES", "")])
    except ValueError as error:
        raise SettingError(f"{source}: {error}") from None


def cors_origins(given: Sequence[str], env: Mapping[str, str]) -> frozenset[str]:
    """The origins whose web pages may send events with the client key: ``--cors-origin``
    values, else ``JOURNEYMAN_CORS_ORIGINS`` (comma-separated); none by default."""
    source = "--cors-origin" if given else "JOURNEYMAN_CORS_ORIGINS"
    try:
        return parse_origins(given or [env.get("JOURNEYMAN_CORS_ORIGINS", "")])
    except ValueError as error:
        raise SettingError(f"{source}: {error}") from None


def data_dir(storage: str) -> Path:
    """Where files beside the database go: fallback channel files, caught mail."""
    path = sqlite_path(storage) if storage.startswith("sqlite:///") else None
    return (path.parent if path is not None else Path.cwd()).resolve()


async def resolve_keys(store: Store, env: Mapping[str, str]) -> tuple[Keys, bool]:
    """The write, admin and client keys: from the environment, else stored, else made now.

    The second value says whether any key was made now (and so must be shown once).
    """
    made = False
    found = {}
    for role in _ROLES:
        key = env.get(f"JOURNEYMAN_{role.upper()}_KEY") or await store.get_setting(f"{role}_key")
        if not key:
            key = f"jm_{role}_{secrets.token_urlsafe(24)}"
            await store.set_setting(f"{role}_key", key)
            made = True
        found[role] = key
    return Keys(write=found["write"], admin=found["admin"], client=found["client"]), made


_ROLES = ("write", "admin", "client")


async def serve(
    workspace: Workspace,
    options: ServeOptions,
    *,
    env: Mapping[str, str] | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    env = os.environ if env is None else env
    # Bound first: a port in use stops the start before anything else has begun.
    listener = _listen(options.host, options.port)
    try:
        await _serve(workspace, options, listener, env=env, announce=announce)
    finally:
        listener.close()  # also when the start fails, as on a database that does not answer


async def _serve(
    workspace: Workspace,
    options: ServeOptions,
    listener: socket.socket,
    *,
    env: Mapping[str, str],
    announce: Callable[[str], None],
) -> None:
    retry = retry_policy(env)
    check_every = experiment_check(env)
    users = console_users(env)
    proxies = trusted_proxies(options.trusted_proxies, env)
    origins = cors_origins(options.cors_origins, env)
    store = open_store(options.storage)
    folder = data_dir(options.storage)
    catcher = None
    overrides: dict[str, Channel] = {}
    if options.catcher_port is not None:
        catcher = MailCatcher(folder / "caught-mail.jsonl", port=options.catcher_port)
        await catcher.start()
        overrides["email"] = SmtpChannel(
            "email",
            host=catcher.host,
            port=catcher.port,
            sender="journeyman <journeyman@localhost>",
            security="none",
            local_hostname="localhost",
        )

    def make_channels(published: Workspace) -> dict[str, Channel]:
        root = options.workspace_dir
        return build_channels(published, env, root=root, fallback_dir=folder, overrides=overrides)

    runtime = _runtime(workspace, store, make_channels, options, env=env, retry=retry)
    runtime.public_url = options.public_url
    runtime.check_every = check_every
    runtime.always_publish = options.publish
    runtime.listening = f"http://{options.host}:{listener.getsockname()[1]}"
    await runtime.start()
    # Everything loaded so far lives as long as the server: keep it out of the collector's
    # way, and collect young objects less often (each event makes many short-lived ones).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # The storage thread gives the GIL up for every statement it runs and must win it
    # back from the event loop; with the default 5 ms switch interval a commit spends
    # most of its time waiting for that. 1 ms: +16% events/s on the track benchmark.
    sys.setswitchinterval(0.001)
    try:
        keys, _ = await resolve_keys(store, env)
        mail_file = catcher.path if catcher is not None else None
        settings = ConsoleSettings(users=users, mail_file=mail_file, trusted_proxies=proxies)
        app = create_app(runtime, keys, settings, origins)
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            log_level="warning",
            lifespan="off",
            access_log=False,  # requests are not logged; ingest is counted in /metrics
            proxy_headers=False,  # nothing here reads the client's address
            server_header=False,
        )
        server = _Server(config)
        url = f"http://{options.host}:{listener.getsockname()[1]}"
        running = _version(runtime)
        ws = runtime.workspace
        announce(_banner(ws, options, url, keys, catcher, _key_sources(env), running))
        await server.serve(sockets=[listener])
    finally:
        await runtime.stop()
        if catcher is not None:
            await catcher.stop()
        announce("journeyman stopped")


def _runtime(
    workspace: Workspace,
    store: Database,
    make_channels: Callable[[Workspace], dict[str, Channel]],
    options: ServeOptions,
    *,
    env: Mapping[str, str],
    retry: RetryPolicy,
) -> Runtime:
    """The runtime: on its own, or in front of the workers of a bus. It builds the
    channels of each workspace version it runs with ``make_channels``."""
    root = options.workspace_dir
    channels = make_channels(workspace)
    kwargs: dict[str, Any] = {"env": env, "retry": retry, "root": root}
    kwargs["make_channels"] = make_channels
    if options.bus is None:
        return Runtime(workspace, store, channels, **kwargs)
    if not is_postgres(options.storage):
        raise SettingError("--bus needs a PostgreSQL database (--db postgresql://...)")
    # Imported here: a deployment without a bus never loads the NATS client.
    from journeyman.scaleout.bus import Bus
    from journeyman.scaleout.front import BusRuntime

    bus = Bus(options.bus, options.stream, options.partitions)
    return BusRuntime(workspace, store, channels, bus=bus, **kwargs)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket for the API; port 0 takes any free port (the banner shows it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio turns Nagle's algorithm off only on sockets that
    # say so, and without that every answer waits for a delayed ACK (some 40 ms).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as error:
        listener.close()
        raise OSError(error.errno, f"{error.strerror} ({host}:{port})") from None
    return listener


class _Server(uvicorn.Server):
    """uvicorn's server, but a stop signal only stops it: journeyman then closes itself.

    uvicorn raises a caught SIGTERM again once its server has stopped, which would end the
    process before the engine finishes its batch and closes the store.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def _key_sources(env: Mapping[str, str]) -> dict[str, str]:
    """role -> the environment variable its key came from (as resolve_keys reads them)."""
    names = {role: f"JOURNEYMAN_{role.upper()}_KEY" for role in _ROLES}
    return {role: name for role, name in names.items() if env.get(name)}


def _banner(
    workspace: Workspace,
    options: ServeOptions,
    url: str,
    keys: Keys,
    catcher: MailCatcher | None,
    sources: Mapping[str, str],
    version: Sequence[str] = (),
) -> str:
    """What the server says at start. A key from the environment is named, not shown
    (start logs are often kept); a key journeyman made is shown, as nothing else does."""
    journeys = ", ".join(sorted(workspace.journeys)) or "none"
    shown = {
        role: f"from {sources[role]}" if role in sources else key
        for role, key in (("write", keys.write), ("admin", keys.admin), ("client", keys.client))
    }
    lines = [
        f"journeyman is serving {options.workspace_dir} at {url}",
        *version,
        f"  journeys   {journeys}",
        f"  storage    {_storage(options.storage)}",
        *([f"  bus        {options.bus}, stream {options.stream}"] if options.bus else []),
        f"  write key  {shown['write']}",
        f"  admin key  {shown['admin']}",
        f"  client key {shown['client']} (public, for web pages)",
        f"  console    {url}/ (log in with the admin key)",
    ]
    mail = f"journeyman mail --db {shown_url(options.storage)} --full"
    if catcher is not None:
        lines.append(f"  mail       caught at {catcher.host}:{catcher.port}; list it: {mail}")
    key = f"${sources['write']}" if "write" in sources else keys.write
    example = _example(workspace, url, key, mail if catcher is not None else None)
    lines += ["", "Try it:", *example, "", "Stop with Ctrl-C."]
    return "\n".join(lines)


def _version(runtime: Runtime) -> list[str]:
    """The banner's lines on the workspace version that runs, and why it is that one."""
    number = runtime.version
    if runtime.kept is None:
        how = "published from the folder now" if runtime.published_at_start else "the folder"
        return [f"  workspace  version {number}, {how}"]
    origin = runtime.kept.origin
    where = origin.describe() if origin is not None else "published after the folder"
    since = runtime.kept.folder_version
    return [
        f"  workspace  version {number}, {where}",
        f"             (the folder is unchanged since it was published as version {since},",
        "             so it was not published again; to publish it anyway, start with",
        "             --publish, or publish it from the console's Workspace page)",
    ]


def _storage(url: str) -> str:
    """The banner's storage line: an in-memory store says that it keeps nothing."""
    if is_memory(url):
        return f"{url} (in memory: nothing is kept, everything is gone when journeyman stops)"
    return shown_url(url)


def _example(workspace: Workspace, url: str, key: str, mail: str | None) -> list[str]:
    # Double quotes: a key written as $JOURNEYMAN_WRITE_KEY is filled in by the shell.
    head = f'curl -s -X POST {url}/v1/%s -H "Authorization: Bearer {key}" '
    head += "-H 'Content-Type: application/json' -d '%s'"
    identify = '{"userId": "ada", "traits": {"firstName": "Ada", "email": "ada@example.com"}}'
    lines = ["  " + head % ("identify", identify)]
    if "account_created" in workspace.events:
        track = '{"userId": "ada", "event": "account_created", "properties": {"plan": "pro"}}'
        lines.append("  " + head % ("track", track))
        if mail is not None:
            lines.append(f"  # 20 seconds later the welcome email arrives: {mail}")
            lines.append(f"  # or in the console: {url}/messages, and her path: {url}/profiles/ada")
    return lines
