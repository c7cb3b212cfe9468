"""The lock service protocol (docs/architecture.md, "Locks").

Keys are ``file:<canonical path>`` and ``dir:<canonical path>``. A writer that finds a key held **waits**
(polling or notification, up to ``wait_timeout`` seconds) instead of failing; a lease expires after
``lease_ttl`` seconds unless renewed, and the holder renews it in the background while it holds it, so a long
upload keeps its lock and a crashed holder frees it (the in-process service needs no expiry: its holders
cannot outlive the process). Release only ever frees the caller's own lease (compare
the owner token). Every lease carries a fencing token: an integer strictly increasing per key across the
whole cluster.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from callfs.errors import ServiceUnavailable


@dataclass(frozen=True, slots=True)
class Lease:
    """A held lock: ``key``, the random ``owner`` string that proves ownership, and the ``fencing_token``."""

    key: str
    owner: str
    fencing_token: int


class LockUnavailable(ServiceUnavailable):
    """The lock service cannot be reached (HTTP 503)."""


class LockService(Protocol):
    """Acquire/hold path locks.

    ``hold(key)`` is an async context manager yielding a :class:`Lease`; it raises
    :class:`callfs.errors.LockTimeout` when the wait exceeds ``wait_timeout`` seconds (default from the
    service's configuration) and :class:`LockUnavailable` when the service is down. On exit the lease is
    released (owner-checked) and background renewal stops.
    """

    async def start(self) -> None:
        """Connect (Redis) or set up (in-process)."""
        ...

    async def close(self) -> None:
        """Stop renewals and disconnect."""
        ...

    async def ping(self) -> bool:
        """True when the service answers."""
        ...

    def is_lost(self, lease: Lease) -> bool:
        """True when ``lease`` expired or was taken over while still held (renewal could not keep it).

        A holder checks this before committing work done under the lock.
        """
        ...

    def hold(self, key: str, *, wait_timeout: float | None = None) -> AbstractAsyncContextManager[Lease]:
        """Wait for and hold ``key``; see the class docstring."""
        ...
