"""Cluster membership: this node's heartbeat in the shared metadata store, and the view of its peers.

Peers come from three sources, merged: nodes registered in the store (with their heartbeat), the static
``instance_discovery.peer_endpoints`` map (which overrides advertised URLs), and the addresses a DNS name
resolves to (a Kubernetes headless Service lists every pod).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from callfs.metadata.base import MetadataStore
from callfs.models import NodeRecord, utcnow

log = logging.getLogger(__name__)

URL_CACHE_SECONDS = 5.0
"""How long advertised peer URLs are reused before the store is read again."""


@dataclass(frozen=True, slots=True)
class PeerView:
    """One row of ``GET /v1/cluster/nodes``. ``state`` is ``up``, ``down`` (heartbeat older than the timeout),
    or ``unknown`` (configured or discovered but never registered)."""

    instance_id: str | None
    url: str
    state: str
    source: str
    capacity_bytes: int | None = None
    free_bytes: int | None = None
    version: str | None = None
    last_heartbeat: datetime | None = None
    is_self: bool = False


def node_state(last_heartbeat: datetime, now: datetime, timeout_seconds: float) -> str:
    """``up`` when the heartbeat is at most ``timeout_seconds`` old, else ``down``."""
    return "up" if now - last_heartbeat <= timedelta(seconds=timeout_seconds) else "down"


class NodeForgotten(RuntimeError):
    """This node's instance id was declared lost for good: it may not register (heartbeat) again."""


class Membership:
    """Registers this node and answers "where is node X" and "who is in the cluster"."""

    def __init__(
        self,
        *,
        store: MetadataStore,
        instance_id: str,
        url: str,
        version: str,
        data_root: Path,
        static_peers: dict[str, str],
        dns_name: str | None,
        node_timeout: float,
    ) -> None:
        self.store = store
        self.instance_id = instance_id
        self.url = url
        self.version = version
        self.data_root = data_root
        self.static_peers = {k: v.rstrip("/") for k, v in static_peers.items()}
        self.dns_name = dns_name
        self.node_timeout = node_timeout
        self.started_at = utcnow()
        self._urls: dict[str, str] = {}
        self._urls_read_at = 0.0

    def _usage(self) -> tuple[int, int]:
        try:
            usage = shutil.disk_usage(self.data_root)
        except OSError:
            return 0, 0
        return usage.total, usage.free

    async def heartbeat(self) -> None:
        """Register or refresh this node's row (capacity and free bytes of its data directory's disk). Raises
        ``NodeForgotten`` when this node was declared lost for good (:mod:`callfs.drain`): its copies were
        written off, so it never serves as that node again (a node starting fails)."""
        if self.instance_id in await self.store.lost_nodes():
            raise NodeForgotten(f"node {self.instance_id} was declared lost for good: it may not register again; "
                                "start it with an empty data directory under a new instance id")
        total, free = await asyncio.to_thread(self._usage)
        now = utcnow()
        await self.store.upsert_node(NodeRecord(
            instance_id=self.instance_id, url=self.url, version=self.version, capacity_bytes=total,
            free_bytes=free, started_at=self.started_at, last_heartbeat=now,
        ))

    async def run(self, interval: float) -> None:
        """Heartbeat every ``interval`` seconds until cancelled; failures are logged and retried."""
        while True:
            try:
                await self.heartbeat()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(interval)

    async def peer_url(self, instance_id: str) -> str | None:
        """Base URL of node ``instance_id``: the static map first, then what the node advertised (re-read
        from the store at most every :data:`URL_CACHE_SECONDS`, so a node that comes back elsewhere is found)."""
        if instance_id in self.static_peers:
            return self.static_peers[instance_id]
        if instance_id not in self._urls or time.monotonic() - self._urls_read_at > URL_CACHE_SECONDS:
            self._urls = {r.instance_id: r.url.rstrip("/") for r in await self.store.list_nodes()}
            self._urls_read_at = time.monotonic()
        return self._urls.get(instance_id)

    async def _resolve(self) -> list[str]:
        if not self.dns_name:
            return []
        port = urlsplit(self.url).port
        scheme = urlsplit(self.url).scheme
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(self.dns_name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("cannot resolve %s: %s", self.dns_name, exc)
            return []
        out = []
        for _family, _type, _proto, _name, sockaddr in infos:
            host = str(sockaddr[0])
            host = f"[{host}]" if ":" in host else host
            out.append(f"{scheme}://{host}:{port}")
        return sorted(set(out))

    async def nodes(self) -> list[PeerView]:
        """Every known node: registered ones with their state, then configured/discovered unregistered ones."""
        now = utcnow()
        records = await self.store.list_nodes()
        views: list[PeerView] = []
        known_urls: set[str] = set()
        for r in records:
            url = self.static_peers.get(r.instance_id, r.url.rstrip("/"))
            known_urls.add(url)
            views.append(PeerView(
                instance_id=r.instance_id, url=url, state=node_state(r.last_heartbeat, now, self.node_timeout),
                source="metadata", capacity_bytes=r.capacity_bytes, free_bytes=r.free_bytes, version=r.version,
                last_heartbeat=r.last_heartbeat, is_self=r.instance_id == self.instance_id,
            ))
        registered = {r.instance_id for r in records}
        for instance_id, url in sorted(self.static_peers.items()):
            if instance_id not in registered:
                known_urls.add(url)
                views.append(PeerView(instance_id=instance_id, url=url, state="unknown", source="static"))
        for url in await self._resolve():
            if url not in known_urls:
                views.append(PeerView(instance_id=None, url=url, state="unknown", source="dns"))
        return views
