"""Locks. Path locks: one :class:`~callfs.locks.base.LockService` protocol, in-process and Redis. File locks
(``flock``/``fcntl`` of mounts): the rules in :mod:`.ranges`, the table in :mod:`.file_locks` (in process) and
:mod:`.redis_file_locks`."""

from callfs.locks.base import Lease, LockService

__all__ = ["Lease", "LockService"]
