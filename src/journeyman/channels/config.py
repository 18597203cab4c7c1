"""Building a channel from its ``kind: channel`` document.

```yaml
kind: channel
name: email                    # the channel its templates use: email, sms, push, webhook
type: smtp                     # smtp | webhook | twilio | file | catcher
rate: 20                       # optional: messages per second, for every type
description: ...               # optional
# ... and the keys of its type
```

Secrets (``password``, ``auth_token``, ``secret``) must be written as ``${ENV_VAR}``
references, never as the secret itself, and any other text field may use them too; they
are read from the environment when the channel is built. A missing variable, an unknown
key, a missing required key or a value of the wrong type is a
:class:`~journeyman.channels.base.ChannelConfigError` naming the field and the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from journeyman.channels import catcher, file, smtp, twilio, webhook
from journeyman.channels.base import Channel, ChannelConfigError, ConfigReader
from journeyman.domain.reader import NAME

__all__ = ["TYPES", "channel_from_config"]

Builder = Callable[[ConfigReader, str], Channel]

# Each type: the keys its documents may have (besides the common ones), and its builder.
TYPES: dict[str, tuple[tuple[str, ...], Builder]] = {
    "smtp": (smtp.KEYS, smtp.from_config),
    "webhook": (webhook.KEYS, webhook.from_config),
    "twilio": (twilio.KEYS, twilio.from_config),
    "file": (file.KEYS, file.from_config),
    "catcher": (catcher.KEYS, catcher.from_config),
}


def channel_from_config(
    config: Mapping[str, Any], env: Mapping[str, str], *, root: Path | None = None
) -> Channel:
    """The channel a ``kind: channel`` document describes.

    ``env`` supplies ``${NAME}`` references (normally ``os.environ``); ``root`` is where
    relative paths start (the workspace folder; default the working directory).
    """
    if not isinstance(config, Mapping):
        raise ChannelConfigError("channel", "must be a mapping of keys to values")
    reader = ConfigReader(config, env, root)
    if config.get("kind", "channel") != "channel":
        raise ChannelConfigError("kind", f"must be 'channel', not {config.get('kind')!r}")
    name = reader.text("name")
    if not NAME.fullmatch(name):
        raise ChannelConfigError(
            "name", f"must be letters, digits, '_' and '-', starting with a letter: {name!r}"
        )
    if config.get("type") is None:
        raise ChannelConfigError("type", f"is required: one of {', '.join(TYPES)}")
    keys, build = TYPES[reader.choice("type", tuple(TYPES), "")]
    reader.check_keys(keys)
    return build(reader, name)
