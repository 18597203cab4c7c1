"""Compressed ingest: a pipeline that gzips (or deflates) its batches is taken as if it
had not, on every ingest path, and a body that would inflate past the size limit is
refused after the limit, never read into memory whole. Against a real ``serve``."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import BASE, write_workspace
from tests.servers import Journeyman


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    tmp = tmp_path_factory.mktemp("compressed")
    workspace = write_workspace(tmp / "ws", BASE)
    with Journeyman(workspace, f"sqlite:///{tmp / 'j.db'}", tmp) as running:
        running.start()
        yield running
        assert running.stop() == 0, running.output


def _post(server: Journeyman, path: str, body: bytes, encoding: str) -> httpx.Response:
    with server.client() as api:
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        return api.post(path, content=body, headers=headers)


def _events(server: Journeyman, user: str) -> list[str]:
    with server.client() as api:
        answer = api.get(f"/v1/profiles/{user}")
        return [e["name"] for e in answer.json()["events"]] if answer.status_code == 200 else []


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("identity", lambda body: body),
    ],
    ids=["gzip", "gzip-upper", "deflate-zlib", "deflate-raw", "identity"],
)
def test_every_ingest_path_takes_a_compressed_body(
    server: Journeyman, encoding: str, pack: Any
) -> None:
    user = f"u-{encoding}-{pack.__name__}"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/identify", {"userId": user, "traits": {"plan": "pro"}}),
        ("/v1/track", {"userId": user, "event": "signed_up", "properties": {"plan": "pro"}}),
        ("/v1/batch", {"batch": [{"type": "track", "userId": user, "event": "purchased"}]}),
        ("/v1/page", {"userId": user, "name": "Pricing"}),
        ("/v1/screen", {"userId": user, "name": "Home"}),
        ("/v1/alias", {"userId": user, "previousId": f"a-{user}"}),
        ("/v1/group", {"userId": user, "groupId": f"g-{user}"}),
    ]
    for path, call in calls:
        answer = _post(server, path, pack(json.dumps(call).encode()), encoding)
        assert answer.status_code == (200 if path == "/v1/batch" else 202), answer.text
    assert sorted(_events(server, user)) == [
        "alias",
        "group",
        "identify",
        "page",
        "purchased",
        "screen",
        "signed_up",
    ]


def test_a_small_body_that_inflates_past_the_limit_is_refused_with_413(
    server: Journeyman,
) -> None:
    # 64 MiB of spaces inside a JSON string compress to about 64 KiB
    bomb = b'{"userId": "bomb", "event": "signed_up", "x": "' + b" " * (64 << 20) + b'"}'
    packed = gzip.compress(bomb, compresslevel=9)
    assert len(packed) < 200_000
    answer = _post(server, "/v1/batch", packed, "gzip")
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["field"] == "body"
    assert "inflates" in answer.json()["error"]["message"]
    assert _events(server, "bomb") == []


def test_a_body_that_is_not_what_its_encoding_says_is_refused_with_400(
    server: Journeyman,
) -> None:
    call = json.dumps({"userId": "broken", "event": "signed_up"}).encode()
    for body in (call, gzip.compress(call)[:-12], b"\x1f\x8b" + b"\x00" * 40):
        answer = _post(server, "/v1/track", body, "gzip")
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert (error["field"], error["rule"]) == ("body", "encoding")
    assert _events(server, "broken") == []


def test_an_encoding_journeyman_does_not_read_is_refused_with_415(server: Journeyman) -> None:
    call = json.dumps({"userId": "br", "event": "signed_up"}).encode()
    for encoding in ("br", "zstd", "gzip, gzip", "x" * 500):
        answer = _post(server, "/v1/track", call, encoding)
        assert answer.status_code == 415, answer.text
        assert answer.json()["error"]["field"] == "Content-Encoding"
    assert _events(server, "br") == []


def test_a_chunked_gzip_body_is_inflated_as_it_arrives(server: Journeyman) -> None:
    batch = {"batch": [{"type": "track", "userId": "chunks", "event": "signed_up"}] * 50}
    packed = gzip.compress(json.dumps(batch).encode())

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(packed), 7):
            yield packed[i : i + 7]

    with server.client() as api:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        answer = api.post("/v1/batch", content=pieces(), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 50
    assert len(_events(server, "chunks")) == 50


def test_a_batch_that_inflates_just_under_the_limit_is_taken(server: Journeyman) -> None:
    calls = [{"type": "track", "userId": "big", "event": "signed_up", "pad": "x" * 30_000}]
    body = json.dumps({"batch": calls * 14}).encode()
    assert 400_000 < len(body) < 500 * 1024
    answer = _post(server, "/v1/batch", gzip.compress(body), "gzip")
    assert answer.status_code == 200, answer.text
