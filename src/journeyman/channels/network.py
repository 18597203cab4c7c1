"""Where HTTP calls may connect: public addresses, and what an ``allow`` list names.

Calls and webhooks go to addresses that documents (and, for actions, the data rendered
into them) name. An address that is not public (loopback, private, link-local, the
unspecified address, IPv4-mapped forms of those, ...) is refused unless the action's or
channel's ``allow`` list names it (see :class:`journeyman.domain.actions.Allow`).

The check sits where the connection is made: :class:`GuardedBackend` resolves the host
itself, drops the addresses it may not use, and connects to one that is left, so a name
that resolves to a private address is refused too, and the address checked is the
address used (a second lookup cannot answer differently). A refusal raises
:class:`RefusedAddress`, which the channels turn into a permanent failure: nothing was
sent, and trying again would be refused again.

Requests go straight to the host: no proxy from the environment (``HTTP_PROXY``), which
would connect in our stead and make the check meaningless, and no redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from journeyman.domain.actions import Allow, refusal
from journeyman.errors import JourneymanError

__all__ = ["GuardedBackend", "RefusedAddress", "guarded_transport"]


class RefusedAddress(JourneymanError):
    """A connection to an address that the allow list does not name."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses ``allow`` permits."""

    def __init__(self, allow: Allow, inner: httpcore.AsyncNetworkBackend) -> None:
        self.allow = allow
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _resolve(host, port, timeout)
        usable = [ip for ip in addresses if self.allow.permits(host, ip)]
        if not usable:
            ip = addresses[0]
            shown = host if str(ip) == host else f"{host} ({ip})"
            raise RefusedAddress(
                f"refused to connect to {shown}, {refusal(ip)}: calls to loopback, private "
                "and link-local addresses need an 'allow' entry that names them"
            )
        error: Exception | None = None
        for ip in usable:  # in the resolver's order, as a connection without the check would
            try:
                return await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failed:
                error = failed
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("calls do not go to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int, timeout: float | None) -> list[Any]:
    """Every address ``host`` stands for, in the resolver's order."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"looking up {host} took too long") from None
    except OSError as error:
        raise httpcore.ConnectError(f"cannot look up {host}: {error}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
    if not addresses:
        raise httpcore.ConnectError(f"{host} has no address")
    return addresses


def guarded_transport(allow: Allow) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go only where ``allow`` lets them."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    pool = transport._pool
    # httpx builds its connection pool with httpcore's default network backend and has
    # no parameter for another one: wrap the one it made.
    pool._network_backend = GuardedBackend(allow, pool._network_backend)
    return transport
