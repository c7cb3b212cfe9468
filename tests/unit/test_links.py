"""Single-use link tokens: format, path binding and tamper detection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from callfs import links

SECRET = "link-secret-0123456789abcdef"
PATH = "/reports/q3.pdf"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$")


def test_minted_token_is_unpadded_base64url_id_dot_signature() -> None:
    token_id, token = links.mint(SECRET, PATH)
    assert TOKEN_RE.match(token)
    assert token.startswith(token_id + ".")
    assert len(base64.urlsafe_b64decode(token_id + "==")) == 16


def test_signature_is_hmac_sha256_over_id_newline_path() -> None:
    token_id, token = links.mint(SECRET, PATH)
    expected = hmac.new(SECRET.encode(), f"{token_id}\n{PATH}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(token.split(".")[1] + "=") == expected


def test_every_mint_has_a_fresh_token_id() -> None:
    ids = {links.mint(SECRET, PATH)[0] for _ in range(50)}
    assert len(ids) == 50


def test_split_and_verify_accept_a_minted_token() -> None:
    token_id, token = links.mint(SECRET, PATH)
    parts = links.split(token)
    assert parts is not None
    assert parts[0] == token_id
    assert links.verify(SECRET, *parts, PATH)


def test_token_is_bound_to_its_path() -> None:
    _, token = links.mint(SECRET, PATH)
    parts = links.split(token)
    assert parts is not None
    assert not links.verify(SECRET, *parts, "/reports/q4.pdf")
    assert not links.verify(SECRET, *parts, PATH + "/")


def test_token_is_bound_to_its_secret() -> None:
    _, token = links.mint(SECRET, PATH)
    parts = links.split(token)
    assert parts is not None
    assert not links.verify("another-secret-0123456789", *parts, PATH)


def test_signature_of_one_token_does_not_verify_another_token_id() -> None:
    _, first = links.mint(SECRET, PATH)
    second_id, _ = links.mint(SECRET, PATH)
    parts = links.split(first)
    assert parts is not None
    assert not links.verify(SECRET, second_id, parts[1], PATH)


@pytest.mark.parametrize("position", [0, 10, 21, 23, 40, 65])
def test_changing_any_character_is_detected(position: int) -> None:
    _, token = links.mint(SECRET, PATH)
    replacement = "A" if token[position] != "A" else "B"
    tampered = token[:position] + replacement + token[position + 1 :]
    parts = links.split(tampered)
    assert parts is not None
    assert not links.verify(SECRET, *parts, PATH)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "no-dot-at-all",
        "A" * 22,
        "A" * 22 + ".",
        "." + "A" * 43,
        "A" * 21 + "." + "A" * 43,
        "A" * 23 + "." + "A" * 43,
        "A" * 22 + "." + "A" * 42,
        "A" * 22 + "." + "A" * 44,
        "A" * 22 + "." + "A" * 42 + "=",
        "A" * 21 + "+." + "A" * 43,
        "A" * 21 + "/." + "A" * 43,
        "A" * 22 + "." + "A" * 21 + "." + "A" * 21,
        "A" * 22 + "." + "A" * 42 + "\u00e9",
    ],
)
def test_split_rejects_malformed_tokens(token: str) -> None:
    assert links.split(token) is None


def test_split_accepts_the_full_base64url_alphabet() -> None:
    assert links.split("-_" * 11 + "." + "Az09-_" * 7 + "x") == ("-_" * 11, "Az09-_" * 7 + "x")


def test_expiry_bounds_match_the_api() -> None:
    assert links.MIN_EXPIRY_SECONDS == 1
    assert links.MAX_EXPIRY_SECONDS == 86400


def test_token_is_bound_to_the_content_it_was_minted_for() -> None:
    content = ("0123456789abcdef0123456789abcdef", 3)
    token_id, token = links.mint(SECRET, PATH, content)
    message = f"{token_id}\n{PATH}\n{content[0]}\n{content[1]}".encode()
    assert base64.urlsafe_b64decode(token.split(".")[1] + "=") == hmac.new(SECRET.encode(), message,
                                                                          hashlib.sha256).digest()
    parts = links.split(token)
    assert parts is not None
    assert links.verify(SECRET, *parts, PATH, content)
    assert not links.verify(SECRET, *parts, PATH, (content[0], 4))
    assert not links.verify(SECRET, *parts, PATH, ("f" * 32, 3))
    assert not links.verify(SECRET, *parts, PATH)


def test_download_paths_are_redacted_for_logs() -> None:
    _, token = links.mint(SECRET, PATH)
    assert links.redact_path(f"/download/{token}") == f"/download/{token[:6]}…"
    assert links.redact(token) == token[:6] + "…"
    assert links.redact_path("/v1/files/download/x") == "/v1/files/download/x"
    assert links.redact_path("/download/") == "/download/"
