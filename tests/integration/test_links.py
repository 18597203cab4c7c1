"""The public URL and secret behind links in messages, shared by serve and its workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from journeyman.runtime.links import PublicUrlError, checked_public_url, load_links
from journeyman.storage import open_store


def test_workers_build_the_links_serve_builds(tmp_path: Path) -> None:
    asyncio.run(_shared(tmp_path))


def test_the_option_wins_then_the_environment(tmp_path: Path) -> None:
    asyncio.run(_order(tmp_path))


async def _shared(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'j.db'}")
    await store.open()
    try:
        serve = await load_links(store, {}, listening="http://10.0.0.5:8000/", keep=True)
        worker = await load_links(store, {})
        assert worker.base == serve.base == "http://10.0.0.5:8000"
        link = serve.url("/c", "click", "message-key", "0")
        assert link.startswith("http://10.0.0.5:8000/c/")
        assert worker.read("click", link.rsplit("/", 1)[1]) == ("message-key", "0")
        assert worker.read("open", link.rsplit("/", 1)[1]) is None
    finally:
        await store.close()


async def _order(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'j.db'}")
    await store.open()
    try:
        env = {"JOURNEYMAN_PUBLIC_URL": "https://mail.example.com", "JOURNEYMAN_SECRET": "s"}
        links = await load_links(store, env, option="https://go.example.com/", listening="x")
        assert links.base == "https://go.example.com"
        assert links.secret == b"s"
        links = await load_links(store, env, listening="http://127.0.0.1:1")
        assert links.base == "https://mail.example.com"
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url", ["ftp://x", "example.com", "http://", "https://a.example/?q=1", "http://a/#f"]
)
def test_a_public_url_links_cannot_use_is_refused(url: str) -> None:
    with pytest.raises(PublicUrlError, match="JOURNEYMAN_PUBLIC_URL: must"):
        checked_public_url(url)
