"""Where providers report back about a message: the status callback URL an SMS carries.

Twilio posts a message's final status (delivered, undelivered, failed) to the
``StatusCallback`` URL given with it. :func:`status_callback_step` is a dispatcher
``prepare`` step that gives each message to a Twilio channel its URL: the public URL,
``/hooks/twilio/{channel}/status/``, and a signed token naming the message (see
:mod:`journeyman.hooks`, which reads it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from journeyman.channels.base import Channel
from journeyman.channels.twilio import STATUS_CALLBACK, TwilioChannel
from journeyman.domain.state import SendMessage
from journeyman.runtime.links import Links

__all__ = ["STATUS_PURPOSE", "status_callback_step"]

STATUS_PURPOSE = "twilio-status"


def status_callback_step(
    links: Callable[[], Links], channels: Mapping[str, Channel]
) -> Callable[[SendMessage], SendMessage]:
    """The step for a dispatcher whose channels are ``channels`` (its own mapping, which a
    publish changes in place); ``links`` gives the process's links once it has started."""

    def step(message: SendMessage) -> SendMessage:
        if not isinstance(channels.get(message.channel), TwilioChannel):
            return message
        path = f"/hooks/twilio/{message.channel}/status"
        url = links().url(path, STATUS_PURPOSE, message.key)
        headers = {**message.headers, STATUS_CALLBACK: url}
        return msgspec.structs.replace(message, headers=headers)

    return step
