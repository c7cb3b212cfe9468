"""File locks as pure data: BSD ``flock`` and POSIX ``fcntl`` record locks over byte ranges (no I/O).

A file's locks are a list of :class:`FileLock`, each held by an *owner* — the pair (lock session, owner token);
on a FUSE mount the session is the mount's and the token the kernel's ``lock_owner`` (the process's file table
for ``fcntl``, the open file description for ``flock``). The rules are Linux's:

* Two kinds, independent of each other: ``posix`` locks (``fcntl``/``lockf``) over byte ranges, and ``flock``
  locks, always of the whole file. A ``flock`` lock never conflicts with a ``posix`` one (Linux keeps them
  apart), so :func:`conflict` and :func:`apply` only ever compare locks of one kind.
* ``read`` (shared) locks of different owners coexist; a ``write`` (exclusive) lock conflicts with any other
  owner's lock that overlaps it.
* An owner's own locks never conflict with its requests: a new lock replaces whatever the owner held over its
  range (an upgrade ``read`` → ``write`` or a downgrade; the rest of an old lock outside the range stays, split
  in two when the new range lies inside it), and the owner's adjacent or overlapping locks of the same type are
  merged into one.
* ``unlock`` removes the owner's locks over the range, splitting a lock that reaches beyond it; unlocking what is
  not held is no error.
* A request that conflicts changes nothing (all or nothing, as ``F_SETLK``).

Ranges are ``[start, end)`` in bytes; :data:`TO_EOF` as ``end`` means "to the end of the file and beyond"
(``l_len`` 0), so that a lock of the whole file is ``[0, TO_EOF)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

TO_EOF: Final = 1 << 63
"""The ``end`` of a range without end (``l_len`` 0: to the end of the file, however long it grows)."""

MAX_OFFSET: Final = TO_EOF - 1
"""Largest byte offset a range may start at or reach (``OFFSET_MAX`` of a 64-bit ``off_t``)."""

Kind = Literal["flock", "posix"]
Held = Literal["read", "write"]
Action = Literal["read", "write", "unlock"]

KINDS: Final = ("flock", "posix")
ACTIONS: Final = ("read", "write", "unlock")


@dataclass(frozen=True, slots=True)
class FileLock:
    """One held lock: ``session`` and ``owner`` (who holds it), ``kind``, ``type`` (``read``/``write``), the range
    ``[start, end)`` in bytes (``end`` :data:`TO_EOF`: to the end of the file), and ``pid``, the holder's process
    id as its mount saw it (informational, for ``F_GETLK``; 0 when unknown)."""

    session: str
    owner: str
    kind: Kind
    type: Held
    start: int
    end: int
    pid: int = 0

    @property
    def holder(self) -> tuple[str, str]:
        """``(session, owner)``: the identity whose locks never conflict with each other."""
        return (self.session, self.owner)

    @property
    def length(self) -> int:
        """``end - start`` in bytes, 0 for a range to the end of the file (``l_len`` as ``fcntl`` reports it)."""
        return 0 if self.end == TO_EOF else self.end - self.start

    def to_json(self) -> dict[str, Any]:
        """``{"session", "owner", "kind", "type", "start", "length", "pid"}`` (``length`` 0: to the end)."""
        return {"session": self.session, "owner": self.owner, "kind": self.kind, "type": self.type,
                "start": self.start, "length": self.length, "pid": self.pid}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileLock:
        """The inverse of :meth:`to_json` (raises ``KeyError``/``ValueError`` on a malformed record)."""
        start, length = int(data["start"]), int(data["length"])
        return cls(session=str(data["session"]), owner=str(data["owner"]), kind=data["kind"], type=data["type"],
                   start=start, end=range_end(start, length), pid=int(data.get("pid", 0)))


@dataclass(frozen=True, slots=True)
class LockRequest:
    """What an owner asks for: ``action`` ``read``/``write`` (take or convert) or ``unlock``, over
    ``[start, end)`` (``flock``: always the whole file), ``pid`` as in :class:`FileLock`."""

    session: str
    owner: str
    kind: Kind
    action: Action
    start: int = 0
    end: int = TO_EOF
    pid: int = 0

    @property
    def holder(self) -> tuple[str, str]:
        return (self.session, self.owner)


def range_end(start: int, length: int) -> int:
    """The exclusive end of ``length`` bytes from ``start`` (``length`` 0: :data:`TO_EOF`).

    Raises :class:`ValueError` for a negative ``start``/``length`` or a range past :data:`MAX_OFFSET`.
    """
    if start < 0 or length < 0:
        raise ValueError(f"a lock range needs start >= 0 and length >= 0, got start {start}, length {length}")
    if start > MAX_OFFSET:
        raise ValueError(f"lock start {start} is past the largest offset {MAX_OFFSET}")
    if length == 0:
        return TO_EOF
    if start + length - 1 > MAX_OFFSET:
        raise ValueError(f"lock range {start}+{length} reaches past the largest offset {MAX_OFFSET}")
    return start + length


def request(session: str, owner: str, kind: Kind, action: Action, start: int = 0, length: int = 0,
            pid: int = 0) -> LockRequest:
    """A validated :class:`LockRequest` (``flock`` ignores ``start``/``length``: the whole file).

    Raises :class:`ValueError` for an unknown ``kind``/``action`` or a bad range (:func:`range_end`).
    """
    if kind not in KINDS:
        raise ValueError(f"lock kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if action not in ACTIONS:
        raise ValueError(f"lock type must be one of {', '.join(ACTIONS)}, got {action!r}")
    if kind == "flock":
        start, end = 0, TO_EOF
    else:
        end = range_end(start, length)
    return LockRequest(session=session, owner=owner, kind=kind, action=action, start=start, end=end, pid=pid)


def overlaps(lock: FileLock, start: int, end: int) -> bool:
    """True when ``lock`` and ``[start, end)`` share at least one byte."""
    return lock.start < end and start < lock.end


def conflict(locks: Iterable[FileLock], wanted: LockRequest) -> FileLock | None:
    """The first lock of another owner that keeps ``wanted`` from being granted, else ``None``.

    This is ``F_GETLK``: for an ``unlock`` request nothing conflicts; for ``read`` only another owner's
    overlapping ``write`` lock of the same kind does; for ``write`` any other owner's overlapping lock of that
    kind does. Locks are checked in the order given (the table keeps them sorted by start).
    """
    if wanted.action == "unlock":
        return None
    for lock in locks:
        if lock.kind != wanted.kind or lock.holder == wanted.holder:
            continue
        if not overlaps(lock, wanted.start, wanted.end):
            continue
        if wanted.action == "write" or lock.type == "write":
            return lock
    return None


def _cut(lock: FileLock, start: int, end: int) -> list[FileLock]:
    """What remains of ``lock`` outside ``[start, end)``: nothing, one piece, or two (a split)."""
    if not overlaps(lock, start, end):
        return [lock]
    pieces = []
    if lock.start < start:
        pieces.append(replace(lock, end=start))
    if end < lock.end:
        pieces.append(replace(lock, start=end))
    return pieces


def _merge(mine: list[FileLock]) -> list[FileLock]:
    """One owner's locks of one kind, sorted by start, with touching or overlapping same-type locks joined."""
    out: list[FileLock] = []
    for lock in sorted(mine, key=lambda held: held.start):
        last = out[-1] if out else None
        if last is not None and last.type == lock.type and lock.start <= last.end:
            out[-1] = replace(last, end=max(last.end, lock.end), pid=lock.pid or last.pid)
        else:
            out.append(lock)
    return out


def _sorted(locks: Iterable[FileLock]) -> list[FileLock]:
    return sorted(locks, key=lambda lock: (lock.kind, lock.start, lock.end, lock.session, lock.owner))


def apply(locks: Sequence[FileLock], wanted: LockRequest) -> tuple[list[FileLock], FileLock | None]:
    """Grant ``wanted`` over a file's ``locks``: ``(new locks, None)``, or ``(locks unchanged, conflicting lock)``
    when another owner's lock stands in the way (see the module docstring for the rules).

    The result is sorted by (kind, start, end, session, owner) and has each owner's same-type locks merged.
    """
    blocking = conflict(locks, wanted)
    if blocking is not None:
        return list(locks), blocking
    others: list[FileLock] = []
    mine: list[FileLock] = []
    for lock in locks:
        if lock.kind == wanted.kind and lock.holder == wanted.holder:
            mine.extend(_cut(lock, wanted.start, wanted.end))
        else:
            others.append(lock)
    if wanted.action != "unlock":
        mine.append(FileLock(session=wanted.session, owner=wanted.owner, kind=wanted.kind, type=wanted.action,
                             start=wanted.start, end=wanted.end, pid=wanted.pid))
    return _sorted([*others, *_merge(mine)]), None


def without_sessions(locks: Iterable[FileLock], sessions: Iterable[str]) -> list[FileLock]:
    """``locks`` minus every lock held under one of ``sessions`` (ended or expired)."""
    gone = set(sessions)
    return [lock for lock in locks if lock.session not in gone]


def encode(locks: Iterable[FileLock]) -> list[dict[str, Any]]:
    """The JSON form of a file's locks (a list of :meth:`FileLock.to_json`)."""
    return [lock.to_json() for lock in locks]


def decode(data: Iterable[dict[str, Any]]) -> list[FileLock]:
    """The inverse of :func:`encode`."""
    return [FileLock.from_json(item) for item in data]
