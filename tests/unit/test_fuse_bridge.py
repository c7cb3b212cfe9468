"""Cancellations inside the mount's I/O bridge (csi/callfs_csi/fuse/bridge.py): retried, never ``EIO``.

The bridge runs its real event loop thread and client session; the operations are coroutines that raise the
``CancelledError`` a library raises when it cancels one of its own tasks (the fault being injected).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
from collections.abc import Iterator

import pytest

from callfs.client import CallFSClient
from callfs_csi.fuse.bridge import Bridge, CancelledCall
from callfs_csi.fuse.errors import errno_for


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    running = Bridge("http://127.0.0.1:9", "key", request_deadline=5)
    running.start()
    yield running
    running.close()


def flaky(failures: int) -> tuple[list[int], object]:
    calls: list[int] = []

    async def operation(client: CallFSClient) -> bytes:
        calls.append(1)
        if len(calls) <= failures:
            raise asyncio.CancelledError  # cancelled inside a library, not by the caller
        return b"data"

    return calls, operation


def test_a_stray_cancellation_is_retried(bridge: Bridge) -> None:
    calls, operation = flaky(2)
    assert bridge.call(operation) == b"data"  # type: ignore[arg-type]
    assert len(calls) == 3


def test_a_stray_cancellation_of_a_call_that_may_not_be_replayed_is_eintr(bridge: Bridge) -> None:
    calls, operation = flaky(1)
    with pytest.raises(CancelledCall) as caught:
        bridge.call(operation, retry=False)  # type: ignore[arg-type]
    assert len(calls) == 1
    assert errno_for(caught.value) == errno.EINTR


def test_a_cancelled_future_while_open_is_started_again(bridge: Bridge) -> None:
    started: list[concurrent.futures.Future[bytes]] = []
    submit = bridge.submit

    async def parked(client: CallFSClient) -> bytes:
        await asyncio.Event().wait()  # never finishes: the cancellation below always lands
        return b""

    def cancel_first(operation, *, retry=True):  # type: ignore[no-untyped-def]
        if started:
            future = submit(operation, retry=retry)
        else:
            future = submit(parked, retry=retry)
            future.cancel()
        started.append(future)
        return future

    bridge.submit = cancel_first  # type: ignore[method-assign]
    _, operation = flaky(0)
    assert bridge.call(operation) == b"data"  # type: ignore[arg-type]
    assert len(started) == 2


@pytest.mark.parametrize("exc", [concurrent.futures.CancelledError(), asyncio.CancelledError(),
                                 CancelledCall("x")])
def test_cancellations_map_to_eintr_not_eio(exc: BaseException) -> None:
    assert errno_for(exc) == errno.EINTR
