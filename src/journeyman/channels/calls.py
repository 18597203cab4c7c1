"""The HTTP calls of ``call`` steps (``kind: action`` documents).

The engine renders an action's ``url``, header values and ``body`` with Liquid and emits
a :class:`~journeyman.domain.state.CallAction`; :func:`make_call` fills in its
``${ENV_VAR}`` references from the environment at the moment of the call, so secrets are
never stored with the outbox, and sends it with the action's timeout and an
``Idempotency-Key`` header (the call's key, the same on every retry; an action that sets
its own ``Idempotency-Key`` header keeps it).

A reference to a variable that is not set fails the call for good without sending
anything: sending the literal ``${CRM_TOKEN}`` would leak the variable's name and never
work. Outcomes are those of the webhook channel: 2xx is ``sent``; 408, 429, 5xx, a
timeout or a network error is ``retry``; any other status is ``failed``.

A value rendered from profile data could itself contain a ``${NAME}``: the dispatcher
passes ``only``, the variables the action's own definition references, and no other
reference is filled in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import httpx

from journeyman.channels.base import (
    Delivery,
    MissingVariable,
    delivery_for_http_status,
    http_client,
    http_request,
    response_detail,
    substitute,
)
from journeyman.domain.state import CallAction

__all__ = ["make_call"]


async def make_call(
    call: CallAction,
    env: Mapping[str, str],
    client: httpx.AsyncClient | None = None,
    only: Collection[str] | None = None,
) -> Delivery:
    """Make ``call``; reuse ``client`` (and its connections) if one is given.

    ``only`` names the variables the action's own definition references: no other
    ``${NAME}`` is filled in, whatever the rendered text holds.
    """
    prepared = _prepare(call, env, only)
    if isinstance(prepared, Delivery):
        return prepared
    if client is not None:
        return await _send(client, call, prepared)
    async with http_client(call.timeout) as own:
        return await _send(own, call, prepared)


Prepared = tuple[str, httpx.Headers, bytes | None]


def _prepare(
    call: CallAction, env: Mapping[str, str], only: Collection[str] | None
) -> Prepared | Delivery:
    """The URL, headers and body with their secrets filled in, or why there are none."""
    try:
        url = substitute(call.url, env, only)
        headers = httpx.Headers(
            {name: substitute(value, env, only) for name, value in call.headers.items()}
        )
        body = None if call.body is None else substitute(call.body, env, only).encode()
    except MissingVariable as missing:
        return Delivery("failed", f"{missing}: the call was not made")
    except UnicodeEncodeError as error:
        # Header values are ASCII; a rendered value that is not will never go through.
        return Delivery("failed", f"a header value is not ASCII text: {error}")
    headers.setdefault("Idempotency-Key", call.key)
    return url, headers, body


async def _send(client: httpx.AsyncClient, call: CallAction, prepared: Prepared) -> Delivery:
    url, headers, body = prepared
    response = await http_request(
        client, call.method, url, headers=headers, content=body, timeout=call.timeout
    )
    if isinstance(response, Delivery):
        return response
    return delivery_for_http_status(response.status_code, response_detail(response))
