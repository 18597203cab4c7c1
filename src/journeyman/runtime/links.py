"""Links to this deployment that go out in messages: clicks, the open pixel, unsubscribe.

Every such link is the public URL, a path, and a signed token (see
:mod:`journeyman.domain.tokens`). The public URL is ``JOURNEYMAN_PUBLIC_URL`` (or
``serve --public-url``), else the address ``serve`` listens on; ``serve`` keeps it in the
database, so workers, which send most messages, build the same links without being told.
The secret is the deployment's (:mod:`journeyman.runtime.secret`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from journeyman.domain.tokens import sign, verify
from journeyman.errors import JourneymanError
from journeyman.runtime.secret import deployment_secret
from journeyman.storage.base import Store

__all__ = ["PUBLIC_URL_SETTING", "Links", "PublicUrlError", "checked_public_url", "load_links"]

PUBLIC_URL_SETTING = "public_url"


class PublicUrlError(JourneymanError, ValueError):
    """A public URL that links cannot be built on."""


@dataclass(frozen=True, slots=True)
class Links:
    base: str  # the public URL, without a trailing slash
    secret: bytes

    def url(self, path: str, purpose: str, *fields: str) -> str:
        """``{base}{path}/{token}``, the token signing ``fields`` for ``purpose``."""
        return f"{self.base}{path}/{sign(self.secret, purpose, *fields)}"

    def read(self, purpose: str, token: str) -> tuple[str, ...] | None:
        """The fields of a token made for ``purpose`` with this secret, or None."""
        return verify(self.secret, purpose, token)


def checked_public_url(url: str, source: str = "JOURNEYMAN_PUBLIC_URL") -> str:
    """``url`` without a trailing slash; raises PublicUrlError naming ``source``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PublicUrlError(f"{source}: must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise PublicUrlError(f"{source}: must not have a query or a fragment")
    return url.rstrip("/")


async def load_links(
    store: Store,
    env: Mapping[str, str],
    *,
    option: str | None = None,
    listening: str | None = None,
    keep: bool = False,
) -> Links:
    """The links of this process. The public URL is ``option`` (``--public-url``), else
    ``JOURNEYMAN_PUBLIC_URL``, else ``listening`` (serve's own address), else the one
    ``serve`` kept. With ``keep`` (``serve``), it is kept for the processes that come
    after. Raises PublicUrlError for a URL links cannot be built on."""
    source = "--public-url" if option else "JOURNEYMAN_PUBLIC_URL"
    url = option or env.get("JOURNEYMAN_PUBLIC_URL") or listening
    if not url:
        url = await store.get_setting(PUBLIC_URL_SETTING) or "http://127.0.0.1:8000"
    base = checked_public_url(url, source)
    if keep and await store.get_setting(PUBLIC_URL_SETTING) != base:
        await store.set_setting(PUBLIC_URL_SETTING, base)
    return Links(base, await deployment_secret(store, env))
