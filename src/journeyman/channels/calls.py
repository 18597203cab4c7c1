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

Customer data cannot steer a call (see :mod:`journeyman.domain.actions`): the engine
stores the rendered text with every ``$`` that is not a placeholder of the action's own
text doubled, and :func:`make_call` fills it in with ``substitute(..., escaped=True)``,
so a value can never become a ``${NAME}``; values in the url are percent-encoded; the
scheme and host are the document's. The dispatcher also passes ``only``, the variables
the action's definition references, and ``allow``, the action's ``allow`` list: a call
to a loopback, private or link-local address it does not name is ``failed`` without
anything being sent (:mod:`journeyman.channels.network`).
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
from journeyman.domain.actions import Allow
from journeyman.domain.state import CallAction

__all__ = ["make_call"]


async def make_call(
    call: CallAction,
    env: Mapping[str, str],
    client: httpx.AsyncClient | None = None,
    only: Collection[str] | None = None,
    allow: Allow | None = None,
) -> Delivery:
    """Make ``call``; reuse ``client`` (and its connections) if one is given.

    ``only`` names the variables the action's own definition references: no other
    ``${NAME}`` is filled in. ``allow`` is the action's allow list (for a client made
    here; a given client has its own).
    """
    prepared = _prepare(call, env, only)
    if isinstance(prepared, Delivery):
        return prepared
    if client is not None:
        return await _send(client, call, prepared)
    async with http_client(call.timeout, allow) as own:
        return await _send(own, call, prepared)


Prepared = tuple[str, httpx.Headers, bytes | None]


def _prepare(
    call: CallAction, env: Mapping[str, str], only: Collection[str] | None
) -> Prepared | Delivery:
    """The URL, headers and body with their secrets filled in, or why there are none."""
    try:
        url = substitute(call.url, env, only, escaped=True)
        headers = httpx.Headers(
            {
                name: substitute(value, env, only, escaped=True)
                for name, value in call.headers.items()
            }
        )
        body = None if call.body is None else substitute(call.body, env, only, escaped=True)
        body_bytes = None if body is None else body.encode()
    except MissingVariable as missing:
        return Delivery("failed", f"{missing}: the call was not made")
    except UnicodeEncodeError as error:
        # Header values are ASCII; a rendered value that is not will never go through.
        return Delivery("failed", f"a header value is not ASCII text: {error}")
    headers.setdefault("Idempotency-Key", call.key)
    return url, headers, body_bytes


async def _send(client: httpx.AsyncClient, call: CallAction, prepared: Prepared) -> Delivery:
    url, headers, body = prepared
    response = await http_request(
        client, call.method, url, headers=headers, content=body, timeout=call.timeout
    )
    if isinstance(response, Delivery):
        return response
    return delivery_for_http_status(response.status_code, response_detail(response))
