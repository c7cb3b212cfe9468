"""Typed keys for state shared through the aiohttp application and requests."""

from __future__ import annotations

import asyncio

from aiohttp import web

from callfs.node import Node
from callfs.permissions import Caller


class InFlight:
    """Counts requests being handled, so a shutdown can wait until none is left."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, limit: float) -> bool:
        """Wait up to ``limit`` seconds for no request in flight; ``False`` when time ran out."""
        try:
            await asyncio.wait_for(self._idle.wait(), limit)
        except TimeoutError:
            return False
        return True


NODE = web.AppKey("node", Node)
IN_FLIGHT = web.AppKey("in_flight", InFlight)
CALLER = web.RequestKey("caller", Caller)
INTERNAL = web.RequestKey("internal", bool)
"""Request flag: authenticated with the internal secret (a peer)."""
REQUEST_ID = web.RequestKey("request_id", str)


def caller(request: web.Request) -> Caller:
    """The authenticated caller (set by the authentication middleware)."""
    return request[CALLER]
