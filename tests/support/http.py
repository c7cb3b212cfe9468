"""A raw HTTP session for API tests: status codes, headers and bodies exactly as the server sent them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from support.node import NodeSpec


@asynccontextmanager
async def session(node: NodeSpec, user: str | None = "api-user-0") -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session against ``node`` authenticated as ``user`` (``None``: no Authorization header)."""
    headers = {"Authorization": f"Bearer {node.key_for(user)}"} if user else {}
    async with aiohttp.ClientSession(node.url, headers=headers, auto_decompress=False) as http:
        yield http
