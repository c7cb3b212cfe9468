"""Single-use link tokens (docs/rest-api.md, ``POST /v1/links/generate``). Pure functions.

Token: ``base64url(16 random bytes)`` + ``.`` + ``base64url(HMAC-SHA256(secret, message))``, unpadded, where
``message`` is ``token_id + "\\n" + path``, followed by ``"\\n" + blob_id + "\\n" + version`` when the link is
bound to content. The signature binds the token to the path and the file content it was minted for, so a token
cannot be replayed for another file, or for other bytes at the same path, even by someone who can write the links
table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

MIN_EXPIRY_SECONDS = 1
MAX_EXPIRY_SECONDS = 86400

Clock = Callable[[], float]
"""Seconds since the epoch, like :func:`time.time`: the time link expiry is decided by."""


def now(clock: Clock) -> datetime:
    """The time of ``clock`` as a timezone-aware UTC datetime."""
    return datetime.fromtimestamp(clock(), UTC)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


Content = tuple[str, int]
"""``(blob_id, version)`` of a file: the exact bytes a link was minted for."""


def _signature(secret: str, token_id: str, path: str, content: Content | None) -> str:
    message = f"{token_id}\n{path}" if content is None else f"{token_id}\n{path}\n{content[0]}\n{content[1]}"
    mac = hmac.new(secret.encode(), message.encode(), hashlib.sha256)
    return _b64(mac.digest())


def mint(secret: str, path: str, content: Content | None = None) -> tuple[str, str]:
    """A new ``(token_id, token)`` for canonical ``path`` (and, when given, the file ``content``)."""
    token_id = _b64(secrets.token_bytes(16))
    return token_id, f"{token_id}.{_signature(secret, token_id, path, content)}"


def split(token: str) -> tuple[str, str] | None:
    """``(token_id, signature)`` of a well-formed token, else ``None``."""
    token_id, sep, signature = token.partition(".")
    if not sep or len(token_id) != 22 or len(signature) != 43:
        return None
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    if not set(token_id) <= allowed or not set(signature) <= allowed:
        return None
    return token_id, signature


def verify(secret: str, token_id: str, signature: str, path: str, content: Content | None = None) -> bool:
    """Constant-time check that ``signature`` was made by ``secret`` for ``token_id``, ``path`` and ``content``."""
    return hmac.compare_digest(signature, _signature(secret, token_id, path, content))


def redact(token: str) -> str:
    """A token as it may appear in logs: its first 6 characters and ``…`` (a token in full is a credential)."""
    return token[:6] + "…"


def redact_path(raw_path: str) -> str:
    """``raw_path`` with the token of a ``/download/<token>`` path redacted; other paths unchanged."""
    prefix = "/download/"
    if raw_path.startswith(prefix) and len(raw_path) > len(prefix):
        return prefix + redact(raw_path[len(prefix):])
    return raw_path
