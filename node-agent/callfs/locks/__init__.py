"""Path locks: one :class:`~callfs.locks.base.LockService` protocol, in-process and Redis."""

from callfs.locks.base import Lease, LockService

__all__ = ["Lease", "LockService"]
