"""Typed keys for state shared through the aiohttp application and requests."""

from __future__ import annotations

from aiohttp import web

from callfs.node import Node
from callfs.permissions import Caller

NODE = web.AppKey("node", Node)
CALLER = "callfs.caller"
REQUEST_ID = "callfs.request_id"


def caller(request: web.Request) -> Caller:
    """The authenticated caller (set by the authentication middleware)."""
    value = request[CALLER]
    assert isinstance(value, Caller)
    return value
