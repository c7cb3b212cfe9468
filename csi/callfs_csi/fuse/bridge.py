"""One asyncio event loop in a dedicated thread, driving :class:`callfs.client.CallFSClient` for FUSE threads.

mfusepy calls ``Operations`` methods from several libfuse worker threads at once (multithreaded mode). Each
call hands a coroutine to the loop with :func:`asyncio.run_coroutine_threadsafe` and blocks its own thread
until the answer. The loop keeps one HTTP connection pool for the whole mount.

Never a hang (a process blocked in a syscall on a dead mount cannot be killed): transient failures
(:func:`.retry.is_transient`) are retried with backoff until
``request_deadline`` seconds after the call started; no attempt starts past it, and each attempt is bounded by
the client's socket timeouts (connect and between two reads), so a call ends within roughly
``request_deadline + socket_timeout`` seconds with the last error (mapped to ``EIO`` by :mod:`.errors`).
Transfers are not cut by the deadline while bytes keep flowing.

Cancellation: a ``CancelledError`` raised inside an operation while nobody cancelled the call (a library
cancelling its own internal task, e.g. a connection closed under a pooled request) is a transient failure
and retried like one; :meth:`Bridge.call` also starts a call again when its future was cancelled while the
bridge is open. Only :meth:`Bridge.close` ends calls with a cancellation (``errno`` ``EINTR`` at the edge,
never ``EIO``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl as ssl_module
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from callfs.client import CallFSClient

from .retry import is_transient, next_delay

T = TypeVar("T")
Operation = Callable[[CallFSClient], Awaitable[T]]
"""A request to make: receives the client, returns an awaitable of the result."""

log = logging.getLogger(__name__)

CANCELLED_RESUBMITS: Final = 3
"""Times :meth:`Bridge.call` starts a call again after its future was cancelled while the bridge is open."""


class CancelledCall(Exception):
    """A request cancelled inside the client and not retried (``retry=False`` or past the deadline); the
    FUSE edge answers ``EINTR`` (:mod:`.errors`): the operation may be repeated, the mount is fine."""


class Bridge:
    """The loop thread and its client.

    Args:
        server_url: CallFS base URL.
        api_key: the bearer key.
        request_deadline: seconds a call keeps retrying transient failures.
        socket_timeout: seconds allowed to connect and between two reads of one attempt.
        ssl: verifies an ``https://`` server (``None``: the system's trust store).

    :meth:`start` before use, :meth:`close` at the end (idempotent).
    """

    def __init__(self, server_url: str, api_key: str, *, request_deadline: float = 30.0,
                 socket_timeout: float = 10.0, ssl: ssl_module.SSLContext | None = None) -> None:
        self._deadline = request_deadline
        self._loop = asyncio.new_event_loop()
        self._client = CallFSClient(server_url, api_key, timeout=min(socket_timeout, request_deadline), retries=2,
                                    ssl=ssl)
        self._thread = threading.Thread(target=self._run_loop, name="callfs-io", daemon=True)
        self._started = False

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self) -> None:
        """Start the loop thread and open the client's HTTP session."""
        self._thread.start()
        self._started = True
        asyncio.run_coroutine_threadsafe(self._client.__aenter__(), self._loop).result()

    def close(self) -> None:
        """Close the HTTP session and stop the loop thread."""
        if not self._started:
            return
        self._started = False
        try:
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    async def _attempts(self, operation: Operation[T], retry: bool, deadline: float) -> T:
        attempt = 0
        while True:
            try:
                return await operation(self._client)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if not self._started or task is None or task.cancelling():
                    raise  # this call itself was cancelled (the bridge is closing)
                # A stray cancellation from inside a library: transient, retried when the call allows it.
                if not retry:
                    raise CancelledCall("the request was cancelled inside the client") from exc
                attempt += 1
                delay = next_delay(attempt, time.monotonic(), deadline)
                if delay is None:
                    raise CancelledCall("the request was cancelled inside the client") from exc
                log.warning("request cancelled inside the client (attempt %d), retrying in %.1fs", attempt, delay)
                await asyncio.sleep(delay)
            except Exception as exc:
                if not retry or not is_transient(exc):
                    raise
                attempt += 1
                delay = next_delay(attempt, time.monotonic(), deadline)
                if delay is None:
                    raise
                log.warning("transient failure (attempt %d), retrying in %.1fs: %s", attempt, delay, exc)
                await asyncio.sleep(delay)

    def submit(self, operation: Operation[T], *, retry: bool = True) -> concurrent.futures.Future[T]:
        """Schedule ``operation`` on the loop (with retries unless ``retry=False``); returns at once."""
        deadline = time.monotonic() + self._deadline
        return asyncio.run_coroutine_threadsafe(self._attempts(operation, retry, deadline), self._loop)

    def call(self, operation: Operation[T], *, retry: bool = True) -> T:
        """Run ``operation`` and wait for its result in the calling (FUSE) thread.

        ``retry=False`` for requests whose replay could repeat a change (POST of a file, PATCH).

        Raises:
            whatever the operation raises last (``CallFSError`` subclasses, ``CallFSUnavailable``...).
        """
        for _ in range(CANCELLED_RESUBMITS):
            try:
                return self.submit(operation, retry=retry).result()
            except concurrent.futures.CancelledError:
                if not self._started or not retry:
                    raise
                log.warning("a call was cancelled while the mount is live; starting it again")
        return self.submit(operation, retry=retry).result()
