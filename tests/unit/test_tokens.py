"""Signed link tokens: what one signs comes back; anything altered or forged is None."""

from __future__ import annotations

from journeyman.domain.tokens import TOKEN_LIMIT, sign, verify

SECRET = b"a deployment secret"


def test_a_token_gives_back_its_fields() -> None:
    token = sign(SECRET, "click", "inst-1:welcome:3", "2")
    assert verify(SECRET, "click", token) == ("inst-1:welcome:3", "2")
    assert all(c.isalnum() or c in "-_" for c in token)


def test_a_token_does_not_show_its_fields() -> None:
    token = sign(SECRET, "click", "ada@example.com")
    assert "ada" not in token
    assert "example" not in token


def test_another_secret_or_purpose_is_refused() -> None:
    token = sign(SECRET, "click", "k", "0")
    assert verify(b"another secret", "click", token) is None
    assert verify(SECRET, "open", token) is None


def test_every_altered_character_is_refused() -> None:
    token = sign(SECRET, "click", "inst-1:welcome:3", "2")
    for i, c in enumerate(token):
        for other in "Aa0_-":
            if other != c:
                altered = token[:i] + other + token[i + 1 :]
                assert verify(SECRET, "click", altered) in (None, ("inst-1:welcome:3", "2"))
    # base64 padding bits aside, a changed character never verifies as other fields
    assert verify(SECRET, "click", token[:-2]) is None
    assert verify(SECRET, "click", token + "A") is None


def test_garbage_is_refused() -> None:
    for token in ["", "x", "====", "%00", "é" * 10, "A" * (TOKEN_LIMIT + 1), "\x00abc"]:
        assert verify(SECRET, "click", token) is None
