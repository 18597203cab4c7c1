"""The deployment's signing secret: the key of every token in a link we send.

``JOURNEYMAN_SECRET`` when set; otherwise one is made at the first start and kept in the
database, so that ``serve`` and every worker sharing the database sign and check links
alike, and links sent before a restart keep working.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from journeyman.storage.base import Store

__all__ = ["SECRET_SETTING", "deployment_secret"]

SECRET_SETTING = "signing_secret"


async def deployment_secret(store: Store, env: Mapping[str, str]) -> bytes:
    """The secret from the environment, else the stored one, else a new one, stored."""
    given = env.get("JOURNEYMAN_SECRET")
    if given:
        return given.encode()
    stored = await store.get_setting(SECRET_SETTING)
    if not stored:
        stored = secrets.token_urlsafe(32)
        await store.set_setting(SECRET_SETTING, stored)
    return stored.encode()
