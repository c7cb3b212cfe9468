"""The mount's lock keeper (csi/callfs_csi/fuse/locking.py) against a fake client: the session opened at the
first lock, unlocks skipped for owners that never locked, blocking waits retried and interrupted, a lost session
replaced, the session ended at unmount."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from callfs.client import LockSessionInfo
from callfs.errors import LockConflict, LockSessionNotFound
from callfs_csi.fuse import locking
from callfs_csi.fuse.locking import Interrupted, LockKeeper, owner_token


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.conflicts = 0
        self.lose_next = False
        self.sessions = 0

    async def open_lock_session(self, ttl: float | None = None) -> LockSessionInfo:
        self.sessions += 1
        self.calls.append(("open", ttl))
        return LockSessionInfo(f"s{self.sessions}", 30.0)

    async def renew_lock_session(self, session: str) -> LockSessionInfo:
        self.calls.append(("renew", session))
        return LockSessionInfo(session, 30.0)

    async def close_lock_session(self, session: str) -> None:
        self.calls.append(("close", session))

    async def lock_file(self, path: str, **fields: Any) -> None:
        self.calls.append(("lock", (path, fields["session"], fields["owner"], fields["kind"], fields["type"])))
        if self.lose_next:
            self.lose_next = False
            raise LockSessionNotFound("gone")
        if self.conflicts:
            self.conflicts -= 1
            raise LockConflict("held", conflict={})


class FakeBridge:
    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def call(self, operation: Callable[[Any], Awaitable[Any]], *, retry: bool = True) -> Any:
        return asyncio.run(operation(self.client))  # type: ignore[arg-type]


@pytest.fixture
def fake() -> FakeClient:
    return FakeClient()


@pytest.fixture
def keeper(fake: FakeClient, monkeypatch: pytest.MonkeyPatch) -> LockKeeper:
    monkeypatch.setattr(locking, "WAIT_FIRST", 0.001)
    monkeypatch.setattr(locking, "WAIT_MAX", 0.002)
    return LockKeeper(FakeBridge(fake))  # type: ignore[arg-type]


def test_owner_token_is_16_hex_digits() -> None:
    assert owner_token(0) == "0" * 16
    assert owner_token(-1) == "f" * 16
    assert owner_token(0xABC) == "0000000000000abc"


def test_session_opened_at_the_first_lock_and_ended_at_close(keeper: LockKeeper, fake: FakeClient) -> None:
    assert fake.calls == []
    keeper.set("/v/f", kind="posix", action="write", owner="o")
    keeper.set("/v/g", kind="flock", action="read", owner="p")
    assert [call[0] for call in fake.calls] == ["open", "lock", "lock"]
    keeper.close()
    assert fake.calls[-1] == ("close", "s1")
    keeper.close()
    assert fake.calls[-1] == ("close", "s1")  # once


def test_unlock_of_an_owner_without_record_locks_sends_nothing(keeper: LockKeeper, fake: FakeClient) -> None:
    keeper.set("/v/f", kind="posix", action="unlock", owner="never")
    assert fake.calls == []
    keeper.set("/v/f", kind="posix", action="read", owner="o")
    keeper.set("/v/f", kind="posix", action="unlock", owner="o")
    assert [call[0] for call in fake.calls] == ["open", "lock", "lock"]
    keeper.set("/v/f", kind="flock", action="unlock", owner="x")  # flock: the caller tracks handles
    assert len(fake.calls) == 4


def test_conflict_without_wait_raises(keeper: LockKeeper, fake: FakeClient) -> None:
    fake.conflicts = 1
    with pytest.raises(LockConflict):
        keeper.set("/v/f", kind="posix", action="write", owner="o")


def test_blocking_wait_retries_until_granted(keeper: LockKeeper, fake: FakeClient) -> None:
    fake.conflicts = 5
    keeper.set("/v/f", kind="flock", action="write", owner="o", wait=True)
    assert sum(call[0] == "lock" for call in fake.calls) == 6


def test_blocking_wait_interrupted(keeper: LockKeeper, fake: FakeClient) -> None:
    fake.conflicts = 100
    asked = []

    def interrupted() -> bool:
        asked.append(1)
        return len(asked) >= 3

    with pytest.raises(Interrupted):
        keeper.set("/v/f", kind="posix", action="write", owner="o", wait=True, interrupted=interrupted)
    assert sum(call[0] == "lock" for call in fake.calls) == 3


def test_a_lost_session_is_replaced(keeper: LockKeeper, fake: FakeClient) -> None:
    keeper.set("/v/f", kind="posix", action="write", owner="o")
    fake.lose_next = True
    keeper.set("/v/g", kind="posix", action="write", owner="o")
    locks = [call[1] for call in fake.calls if call[0] == "lock"]
    assert [lock[1] for lock in locks] == ["s1", "s1", "s2"]
    assert keeper.session_id == "s2"
    keeper.close()
