"""Talking to a CallFS cluster on behalf of an RPC: the REST client for given credentials, cluster capacity.

The capacity reported by ``GetCapacity`` is the sum of ``free_bytes`` over the nodes ``GET /v1/cluster/nodes``
lists as ``up`` (free disk space of each node's local backend, like ``statfs`` ``f_bavail`` summed over the
cluster). Quotas are limits, not reservations, so volumes may together promise more than that.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from callfs.client import CallFSClient, CallFSUnavailable, error_from_body
from callfs_csi.errors import InvalidArgument
from callfs_csi.params import Credentials

__all__ = ["client_for", "cluster_free_bytes", "free_bytes_of", "ssl_context"]


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext | None:
    """A client context that verifies servers against the PEM certificates ``ca_bundle`` (and host names);
    ``None`` for ``None`` (the system's trust store then).

    Raises:
        InvalidArgument: ``ca_bundle`` holds no usable certificate (spec: a bad secret is ``INVALID_ARGUMENT``).
    """
    if ca_bundle is None:
        return None
    try:
        return ssl.create_default_context(cadata=ca_bundle)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidArgument(f"the CA bundle holds no usable PEM certificate: {exc}") from exc


def client_for(creds: Credentials, timeout: float = 30.0) -> CallFSClient:
    """A (not yet entered) :class:`CallFSClient` for ``creds`` (trusting its CA bundle); use it as ``async with``.

    Raises:
        InvalidArgument: a CA bundle without a usable certificate.
    """
    return CallFSClient(creds.server, creds.api_key, timeout=timeout, retries=2, ssl=ssl_context(creds.ca_bundle))


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
        connector = aiohttp.TCPConnector(ssl=ssl_context(creds.ca_bundle) or True)
        async with aiohttp.ClientSession(timeout=client_timeout, connector=connector) as session, session.get(
            url, headers={"Authorization": f"Bearer {creds.api_key}"}
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                raise error_from_body(resp.status, body, f"GET {url}: HTTP {resp.status}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise CallFSUnavailable(f"GET {url}: {exc or type(exc).__name__}", url=url) from exc
    nodes = body.get("nodes", []) if isinstance(body, dict) else []
    return free_bytes_of(n for n in nodes if isinstance(n, dict))
