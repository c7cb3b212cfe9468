"""Talking to a CallFS cluster on behalf of an RPC: the REST client for given credentials, cluster capacity.

The capacity reported by ``GetCapacity`` is the sum of ``free_bytes`` over the nodes ``GET /v1/cluster/nodes``
lists as ``up`` (free disk space of each node's local backend, like ``statfs`` ``f_bavail`` summed over the
cluster). Quotas are limits, not reservations, so volumes may together promise more than that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from callfs.client import CallFSClient, CallFSUnavailable, error_from_body
from callfs_csi.params import Credentials

__all__ = ["client_for", "cluster_free_bytes", "free_bytes_of"]


def client_for(creds: Credentials, timeout: float = 30.0) -> CallFSClient:
    """A (not yet entered) :class:`CallFSClient` for ``creds``; use it as ``async with``."""
    return CallFSClient(creds.server, creds.api_key, timeout=timeout, retries=2)


def free_bytes_of(nodes: Iterable[Mapping[str, Any]]) -> int:
    """Sum of ``free_bytes`` (bytes) of the nodes in state ``up``; nodes that report none count 0."""
    total = 0
    for node in nodes:
        free = node.get("free_bytes")
        if node.get("state") == "up" and isinstance(free, int) and not isinstance(free, bool) and free > 0:
            total += free
    return total


async def cluster_free_bytes(creds: Credentials, request_timeout: float = 30.0) -> int:
    """Free bytes of the cluster at ``creds.server`` (``GET /v1/cluster/nodes``, see the module docstring).

    Raises:
        CallFSUnavailable: the server cannot be reached.
        CallFSError: it answered with an error (e.g. ``AuthenticationFailed``).
    """
    url = creds.server.rstrip("/") + "/v1/cluster/nodes"
    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    try:
        async with aiohttp.ClientSession(timeout=client_timeout) as session, session.get(
            url, headers={"Authorization": f"Bearer {creds.api_key}"}
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                raise error_from_body(resp.status, body, f"GET {url}: HTTP {resp.status}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise CallFSUnavailable(f"GET {url}: {exc or type(exc).__name__}", url=url) from exc
    nodes = body.get("nodes", []) if isinstance(body, dict) else []
    return free_bytes_of(n for n in nodes if isinstance(n, dict))
