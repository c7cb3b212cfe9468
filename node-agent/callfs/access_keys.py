"""API keys registered at run time, each confined to one path (``POST /v1/keys``, ``DELETE /v1/keys/{user}``).

Keys of the config file (``auth.api_keys``, ``auth.api_key_users``) reach the whole tree. A run-time key is
registered by root with a ``user`` and a ``scope``: requests with it act as that user (the permission model
applies as to any user) and are refused (403) on any path outside the scope (:func:`callfs.permissions.
require_in_scope`) and on routes that are not about paths. The CSI controller gives each volume such a key,
scoped to the volume's directory, so that a node holding it reaches that volume only.

The store keeps the SHA-256 of each key, never the key: keys are random, high-entropy strings, so a fast hash
is as good as a slow one, and a lookup by hash takes the same time whatever key is tried. Registering the same
key again is idempotent; deleting a user's keys revokes them at once on every node (each request looks its
key up in the shared metadata store).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from callfs import paths
from callfs.config import MIN_KEY_LENGTH
from callfs.errors import BadRequest, Conflict, PermissionDenied
from callfs.metadata.base import MetadataStore
from callfs.models import AccessKey, utcnow
from callfs.permissions import SUPERUSERS, Caller, validate_name

__all__ = ["MAX_KEY_LENGTH", "MIN_KEY_LENGTH", "AccessKeys", "Registration", "key_hash", "parse_registration"]

MAX_KEY_LENGTH: Final = 512
_KEY_PATTERN: Final = re.compile(r"[\x21-\x7e]+")
"""Printable ASCII without spaces: a key travels in the ``Authorization`` header."""


def key_hash(key: str) -> str:
    """The hex SHA-256 of ``key`` (UTF-8), the form the store keeps."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Registration:
    """A validated ``POST /v1/keys`` body: the ``user``, the ``key`` and the canonical ``scope``."""

    user: str
    key: str
    scope: str


def parse_registration(body: dict[str, Any]) -> Registration:
    """Validate a ``POST /v1/keys`` body ``{"user", "key", "scope"}``.

    Raises:
        BadRequest: a missing or non-string field; a user name that is invalid or a superuser's (``root``,
            ``internal-proxy``: a confined key never acts as one); a key shorter than :data:`MIN_KEY_LENGTH`,
            longer than :data:`MAX_KEY_LENGTH` or holding anything but printable ASCII without spaces; a scope
            that is not a valid path.
    """
    user, key, scope = body.get("user"), body.get("key"), body.get("scope")
    if not isinstance(user, str) or not isinstance(key, str) or not isinstance(scope, str):
        raise BadRequest("user, key and scope must be strings")
    validate_name(user)
    if user in SUPERUSERS:
        raise BadRequest(f"{user} cannot be given a scoped key")
    if not MIN_KEY_LENGTH <= len(key) <= MAX_KEY_LENGTH or not _KEY_PATTERN.fullmatch(key):
        raise BadRequest(f"key must be {MIN_KEY_LENGTH}-{MAX_KEY_LENGTH} printable ASCII characters without spaces")
    return Registration(user, key, paths.canonicalize(scope).path)


class AccessKeys:
    """Registration, revocation and lookup of run-time keys over the metadata store.

    ``reserved``: the keys of the config file and the internal secret, which a run-time key must not repeat.
    """

    def __init__(self, store: MetadataStore, reserved: Collection[str]) -> None:
        self.store = store
        self._reserved = frozenset(key_hash(k) for k in reserved)

    async def register(self, caller: Caller, registration: Registration) -> tuple[AccessKey, bool]:
        """Register a key (root only); ``(record, created)``. The same key for the same user and scope again
        is no change.

        Raises:
            PermissionDenied: the caller is not a superuser.
            Conflict: the key is a key of the config file, the internal secret, or registered for another user
                or scope.
        """
        if not caller.is_superuser:
            raise PermissionDenied("only root may register API keys")
        digest = key_hash(registration.key)
        if digest in self._reserved:
            raise Conflict("that key is already in use")
        wanted = AccessKey(digest, registration.user, registration.scope, utcnow())
        stored, created = await self.store.put_access_key(wanted)
        if (stored.user, stored.scope) != (wanted.user, wanted.scope):
            raise Conflict("that key is already in use")
        return stored, created

    async def revoke(self, caller: Caller, user: str) -> int:
        """Forget every run-time key of ``user`` (root only); how many there were (0: none, no error).

        Raises:
            PermissionDenied: the caller is not a superuser.
            BadRequest: an invalid user name.
        """
        if not caller.is_superuser:
            raise PermissionDenied("only root may revoke API keys")
        return await self.store.delete_access_keys(validate_name(user))

    async def lookup(self, key: str) -> AccessKey | None:
        """The registered key ``key``, or ``None``. Raises the store's ``MetadataUnavailable``."""
        return await self.store.get_access_key(key_hash(key))
