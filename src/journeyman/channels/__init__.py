"""Delivery: the channels that hand messages to providers, and the calls of actions.

A channel is built from its ``kind: channel`` document with :func:`channel_from_config`
and delivers one :class:`~journeyman.domain.state.SendMessage` at a time, answering with
a :class:`Delivery`: ``sent``, ``retry`` (transient) or ``failed`` (permanent).

| type | for | module |
|---|---|---|
| ``smtp`` | email through any SMTP server | :mod:`journeyman.channels.smtp` |
| ``webhook`` | signed JSON POSTs; push through a gateway | :mod:`journeyman.channels.webhook` |
| ``twilio`` | SMS through the Twilio Messages API | :mod:`journeyman.channels.twilio` |
| ``file`` | JSON lines in a file, for development | :mod:`journeyman.channels.file` |
| ``catcher`` | email to the built-in mail catcher | :mod:`journeyman.channels.catcher` |

:func:`make_call` makes the HTTP call of a ``call`` step. :class:`RateLimiter` paces a
channel to its ``rate``.
"""

from journeyman.channels.base import (
    Channel,
    ChannelConfigError,
    Delivery,
    MissingVariable,
    RateLimiter,
    substitute,
)
from journeyman.channels.calls import make_call
from journeyman.channels.catcher import CaughtMail, MailCatcher
from journeyman.channels.config import channel_from_config
from journeyman.channels.file import FileChannel
from journeyman.channels.smtp import SmtpChannel
from journeyman.channels.twilio import TwilioChannel
from journeyman.channels.webhook import WebhookChannel, verify_signature

__all__ = [
    "CaughtMail",
    "Channel",
    "ChannelConfigError",
    "Delivery",
    "FileChannel",
    "MailCatcher",
    "MissingVariable",
    "RateLimiter",
    "SmtpChannel",
    "TwilioChannel",
    "WebhookChannel",
    "channel_from_config",
    "make_call",
    "substitute",
    "verify_signature",
]
