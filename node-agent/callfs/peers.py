"""Node-to-node HTTP: forwarding API requests to the node that owns a file's bytes, reading and freeing its
bytes there.

Forwarded requests authenticate with the internal secret and name the original user in ``X-CallFS-User``, so
the owning node applies the permission model to the real caller. ``X-CallFS-Forwarded-By`` lists the nodes a
request went through: a node never forwards a request that was already forwarded (one hop at most), which
also rules out loops.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from callfs.api.conditional import etag
from callfs.errors import BadGateway, CallFSError, error_class_for
from callfs.membership import Membership
from callfs.models import Inode

log = logging.getLogger(__name__)

USER_HEADER = "X-CallFS-User"
SCOPE_HEADER = "X-CallFS-Scope"
"""The path a forwarded request's user is confined to (a scoped key's), so that the peer confines it too."""
FORWARDED_HEADER = "X-CallFS-Forwarded-By"
# Request headers a proxy must not pass on (RFC 9110 §7.6.1) or that we set ourselves.
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "authorization", USER_HEADER.lower(), FORWARDED_HEADER.lower(),
    SCOPE_HEADER.lower(),
}


def forward_headers(
    incoming: Mapping[str, str], *, secret: str, user: str, hops: list[str], scope: str | None = None
) -> dict[str, str]:
    """Headers for a forwarded request: end-to-end headers of ``incoming`` plus internal auth, the acting
    ``user`` and its ``scope`` (``None``: unconfined), and the hop list."""
    out = {k: v for k, v in incoming.items() if k.lower() not in _HOP_BY_HOP}
    out["Authorization"] = f"Bearer {secret}"
    out[USER_HEADER] = user
    if scope is not None:
        out[SCOPE_HEADER] = quote(scope, safe="/")
    out[FORWARDED_HEADER] = ",".join(hops)
    return out


def response_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """Headers of a peer's answer worth relaying (hop-by-hop and our own per-response headers dropped)."""
    skip = _HOP_BY_HOP | {"content-encoding", "date", "server", "content-length"}
    return {k: v for k, v in upstream.items() if k.lower() not in skip}


class PeerClient:
    """One pooled HTTP client to the other nodes. Times are seconds."""

    def __init__(
        self, *, membership: Membership, secret: str, connect_timeout: float, read_timeout: float
    ) -> None:
        self.membership = membership
        self.secret = secret
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout,
                                             sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def url_of(self, instance_id: str) -> str:
        """Base URL of a peer. Raises ``BadGateway`` when the node is unknown."""
        url = await self.membership.peer_url(instance_id)
        if url is None:
            raise BadGateway(f"node {instance_id} that holds the bytes is not known to this node")
        return url

    async def free_blob(self, instance_id: str, backend: str, blob_id: str) -> None:
        """Ask the owning node to delete a blob whose metadata is gone. Failures are logged: the owner's
        periodic orphan sweep removes the blob later."""
        try:
            url = await self.url_of(instance_id)
            async with self.session.delete(
                f"{url}/internal/v1/blobs/{backend}/{blob_id}",
                headers={"Authorization": f"Bearer {self.secret}"},
            ) as response:
                if response.status >= 300 and response.status != 404:
                    log.warning("node %s refused to free blob %s: %s", instance_id, blob_id, response.status)
        except (TimeoutError, aiohttp.ClientError, BadGateway) as exc:
            log.warning("could not reach node %s to free blob %s (%s); its orphan sweep will", instance_id,
                        blob_id, exc)

    async def read_blob(self, instance_id: str, backend: str, blob_id: str) -> AsyncIterator[bytes]:
        """Stream a blob from the node that owns it. Raises ``BadGateway`` when it cannot be read."""
        url = await self.url_of(instance_id)
        try:
            async with self.session.get(
                f"{url}/internal/v1/blobs/{backend}/{blob_id}", headers={"Authorization": f"Bearer {self.secret}"}
            ) as response:
                if response.status != 200:
                    raise BadGateway(f"node {instance_id} could not serve blob {blob_id}: HTTP {response.status}")
                async for chunk in response.content.iter_chunked(1 << 20):
                    yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BadGateway(f"node {instance_id} did not answer: {type(exc).__name__}") from exc

    def _block_url(self, url: str, backend: str, location: str, block_hash: str) -> str:
        return f"{url}/internal/v1/blocks/{quote(backend, safe='')}/{quote(location, safe='')}/{block_hash}"

    async def put_block(self, instance_id: str, backend: str, location: str, block_hash: str, stored: bytes) -> None:
        """Store a copy of a block (its stored form: codec header and payload) on node ``instance_id``; returns
        once that node has verified and fsynced it. Raises ``BadGateway`` when the node does not answer or
        refuses (any status but 204)."""
        url = await self.url_of(instance_id)
        try:
            async with self.session.put(
                self._block_url(url, backend, location, block_hash), data=stored,
                headers={"Authorization": f"Bearer {self.secret}", "Content-Type": "application/octet-stream"},
            ) as response:
                if response.status != 204:
                    raise BadGateway(f"node {instance_id} refused block {block_hash}: HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BadGateway(f"node {instance_id} did not answer: {type(exc).__name__}") from exc

    async def get_block(self, instance_id: str, backend: str, location: str, block_hash: str, limit: int) -> bytes:
        """The stored form of a block copy on node ``instance_id`` (unverified: the caller decodes and checks
        it), at most ``limit`` bytes. Raises ``FileNotFoundError`` (no copy there), ``BadGateway`` (no answer,
        another status, or a larger answer)."""
        url = await self.url_of(instance_id)
        try:
            async with self.session.get(
                self._block_url(url, backend, location, block_hash), headers={"Authorization": f"Bearer {self.secret}"}
            ) as response:
                if response.status == 404:
                    raise FileNotFoundError(block_hash)
                if response.status != 200:
                    raise BadGateway(f"node {instance_id} could not serve block {block_hash}: HTTP {response.status}")
                if response.content_length is not None and response.content_length > limit:
                    raise BadGateway(f"node {instance_id} sent more than {limit} bytes for block {block_hash}")
                data = bytearray()
                async for chunk in response.content.iter_any():
                    data += chunk
                    if len(data) > limit:
                        break
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BadGateway(f"node {instance_id} did not answer: {type(exc).__name__}") from exc
        if len(data) > limit:
            raise BadGateway(f"node {instance_id} sent more than {limit} bytes for block {block_hash}")
        return bytes(data)

    async def delete_block(self, instance_id: str, backend: str, location: str, block_hash: str) -> None:
        """Delete the copy of a block on node ``instance_id`` (absent: no error). Raises ``BadGateway`` when the
        node does not answer or refuses."""
        url = await self.url_of(instance_id)
        try:
            async with self.session.delete(
                self._block_url(url, backend, location, block_hash), headers={"Authorization": f"Bearer {self.secret}"}
            ) as response:
                if response.status not in (204, 404):
                    raise BadGateway(f"node {instance_id} refused to delete block {block_hash}: HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BadGateway(f"node {instance_id} did not answer: {type(exc).__name__}") from exc

    async def read_file_range(self, inode: Inode, offset: int, length: int) -> AsyncIterator[bytes]:
        """Stream ``length`` (> 0) bytes from ``offset`` of the file ``inode`` from the node holding its bytes:
        a ranged ``GET`` of its REST API (RFC 9110 §14) as the internal user, marked forwarded (never relayed
        further), with ``If-Match`` the inode's ETag so that only this version is served. Raises
        ``FileNotFoundError`` (the file there is gone or another version), ``BadGateway`` (no answer, another
        status, or a short answer)."""
        assert inode.instance_id is not None
        url = await self.url_of(inode.instance_id)
        headers = {"Authorization": f"Bearer {self.secret}", FORWARDED_HEADER: "range-read",
                   "Range": f"bytes={offset}-{offset + length - 1}", "If-Match": etag(inode)}
        left = length
        try:
            async with self.session.get(f"{url}/v1/files{quote(inode.path, safe='/')}", headers=headers) as response:
                if response.status in (404, 412):
                    raise FileNotFoundError(inode.path)
                whole = response.status == 200 and offset == 0 and length == inode.size
                if response.status != 206 and not whole:
                    raise BadGateway(f"node {inode.instance_id} could not serve {inode.path}: "
                                     f"HTTP {response.status}")
                async for chunk in response.content.iter_chunked(1 << 20):
                    piece = chunk[:left]
                    left -= len(piece)
                    yield piece
                    if left <= 0:
                        return
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BadGateway(f"node {inode.instance_id} did not answer: {type(exc).__name__}") from exc
        raise BadGateway(f"node {inode.instance_id} sent {length - left} of {length} bytes of {inode.path}")

    async def delete_file(self, instance_id: str, path: str, user: str) -> None:
        """Ask node ``instance_id``, which holds the bytes of the file ``path``, to delete it on behalf of
        ``user`` (its REST API, marked forwarded: never relayed further). An absent file is no error; the
        node's other errors are raised as their CallFS classes, ``BadGateway`` when it does not answer."""
        url = await self.url_of(instance_id)
        try:
            async with self.session.delete(
                f"{url}/v1/files{quote(path, safe='/')}",
                headers={"Authorization": f"Bearer {self.secret}", USER_HEADER: user, FORWARDED_HEADER: "s3"},
            ) as response:
                if response.status in (204, 404):
                    return
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BadGateway(f"node {instance_id} did not answer: {type(exc).__name__}") from exc
        code = body.get("code", "") if isinstance(body, dict) else ""
        message = body.get("message", f"HTTP {response.status}") if isinstance(body, dict) else str(body)
        raise error_class_for(code, response.status)(f"node {instance_id}: {message}")

    async def relocate(self, instance_id: str, path: str, backend: str, user: str) -> dict[str, Any]:
        """Ask node ``instance_id`` to take the bytes of ``path`` onto its ``backend`` on behalf of ``user``;
        returns the moved file's listing item. Errors of that node are raised as their CallFS classes."""
        url = await self.url_of(instance_id)
        try:
            async with self.session.post(
                f"{url}/internal/v1/relocate", json={"path": path, "backend": backend},
                headers={"Authorization": f"Bearer {self.secret}", USER_HEADER: user},
            ) as response:
                body = await response.json(content_type=None)
                if response.status == 200 and isinstance(body, dict):
                    return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BadGateway(f"node {instance_id} did not answer: {type(exc).__name__}") from exc
        code = body.get("code", "") if isinstance(body, dict) else ""
        message = body.get("message", f"HTTP {response.status}") if isinstance(body, dict) else str(body)
        error: CallFSError = error_class_for(code, response.status)(f"node {instance_id}: {message}")
        raise error

    async def conversion(self, instance_id: str, *, start: bool) -> dict[str, Any]:
        """Node ``instance_id``'s conversion of blob files to blocks (:mod:`callfs.convert`): its report, after
        starting a pass there when ``start``. Raises ``BadGateway`` when it does not answer or refuses."""
        url = await self.url_of(instance_id)
        try:
            async with self.session.request(
                "POST" if start else "GET", f"{url}/internal/v1/convert",
                headers={"Authorization": f"Bearer {self.secret}"},
            ) as response:
                body = await response.json(content_type=None)
                if response.status in (200, 202) and isinstance(body, dict):
                    return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BadGateway(f"node {instance_id} did not answer: {type(exc).__name__}") from exc
        raise BadGateway(f"node {instance_id} refused the conversion request: HTTP {response.status}")
