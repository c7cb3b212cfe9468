"""What the storage nodes themselves say of the cluster: ``GET /v1/cluster/nodes`` through the client Service.

A StatefulSet's ``readyReplicas`` only says that each pod's readiness probe passes. The nodes know more: a
node whose heartbeats no longer reach the metadata store is ``down`` to its peers (docs/rest-api.md,
"Cluster forwarding"), and requests routed to it fail with 502. :class:`NodeReporter` asks the cluster and
returns ``{instance_id: state}`` for :func:`callfs_operator.status.compute` to weigh; an operator pod's
instance IDs are the pod names (``builders/statefulset.py``).

The nodes are asked only where they can be reached: outside the cluster, or while the Service has no ready
endpoint, the request fails within :data:`PROBE_TIMEOUT` seconds and the report is ``None`` — the status
then rests on the StatefulSets alone. A probe never raises into a reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, TypeVar

from callfs.client import CallFSClient, CallFSUnavailable, DrainInfo, ReplicationInfo
from callfs.errors import CallFSError
from callfs_operator import names
from callfs_operator.apply import Children
from callfs_operator.spec import Cluster

log = logging.getLogger(__name__)

PROBE_TIMEOUT: Final = 2.0
"""Seconds allowed to connect and to read the answer; the whole probe takes at most twice that."""


T = TypeVar("T")


def _ask(url: str, api_key: str, question: Callable[[CallFSClient], Awaitable[T]], *,
         ssl_context: ssl.SSLContext | None, timeout: float) -> T | None:
    """``question`` asked of the cluster at ``url``, or ``None`` when it cannot be asked (unreachable, refused
    key, malformed answer, ``timeout`` seconds exceeded). Blocking: runs its own event loop."""

    async def ask() -> T:
        async with CallFSClient(url, api_key, timeout=timeout, ssl=ssl_context, retries=0) as fs:
            return await asyncio.wait_for(question(fs), 2 * timeout)

    try:
        return asyncio.run(ask())
    except (CallFSUnavailable, CallFSError, TimeoutError, OSError, KeyError, TypeError, ValueError) as exc:
        log.debug("cannot ask %s: %s", url, exc)
        return None


def fetch(url: str, api_key: str, *, ssl_context: ssl.SSLContext | None = None,
          timeout: float = PROBE_TIMEOUT) -> dict[str, str] | None:
    """``{instance_id: state}`` (``up``/``down``/``unknown``) from ``url``'s ``GET /v1/cluster/nodes``, or
    ``None`` when the cluster cannot be asked (unreachable, refused key, malformed answer, ``timeout``
    seconds exceeded). Blocking: runs its own event loop, so call it from a worker thread (kopf runs sync
    handlers in its executor)."""

    async def states(fs: CallFSClient) -> dict[str, str]:
        return {node.instance_id: node.state for node in await fs.cluster_nodes() if node.instance_id}

    return _ask(url, api_key, states, ssl_context=ssl_context, timeout=timeout)


def fetch_replication(url: str, api_key: str, *, ssl_context: ssl.SSLContext | None = None,
                      timeout: float = PROBE_TIMEOUT) -> ReplicationInfo | None:
    """The redundancy of the cluster's block copies (``replication`` of ``GET /v1/cluster/nodes``), or ``None``
    when the cluster cannot be asked or does not say. Blocking, as :func:`fetch`."""
    return _ask(url, api_key, lambda fs: fs.cluster_replication(), ssl_context=ssl_context, timeout=timeout)


def drain(url: str, api_key: str, pods: Sequence[str], keep: Sequence[str], *,
          ssl_context: ssl.SSLContext | None = None,
          timeout: float = PROBE_TIMEOUT) -> dict[str, DrainInfo | None] | None:
    """Start (or follow) the drain of each of ``pods`` and cancel that of each of ``keep`` that is leaving, through
    ``url``'s ``/v1/cluster/nodes/{pod}/drain``; ``{pod: progress}`` for ``pods`` (``None``: no node of that
    name is registered), or ``None`` when the cluster cannot be asked or predates drains (its node list says
    nothing of ``leaving``). Blocking, as :func:`fetch`."""

    async def ask(fs: CallFSClient) -> dict[str, DrainInfo | None]:
        nodes = [n for n in await fs.cluster_nodes() if n.instance_id]
        if any(n.leaving is None for n in nodes):
            raise ValueError("the nodes predate drains")
        leaving = {n.instance_id for n in nodes if n.leaving}
        for pod in keep:
            if pod in leaving:
                await fs.cancel_drain(pod)
                log.info("cancelled the drain of %s: it is within spec.replicas", pod)
        registered = {n.instance_id for n in nodes}
        return {pod: await fs.drain_node(pod) if pod in registered else None for pod in pods}

    return _ask(url, api_key, ask, ssl_context=ssl_context, timeout=timeout)


def tls_context(tls_secret: Mapping[str, str]) -> ssl.SSLContext | None:
    """A client context trusting the nodes' certificate: ``ca.crt`` of their ``kubernetes.io/tls`` Secret
    when present (cert-manager writes it), else ``tls.crt`` itself (a self-signed certificate); ``None``
    when neither is a usable PEM."""
    pem = tls_secret.get("ca.crt") or tls_secret.get("tls.crt")
    if not pem:
        return None
    try:
        return ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        log.debug("unusable CA in the TLS Secret: %s", exc)
        return None


class NodeReporter:
    """Reads a cluster's node list with the credentials the operator keeps for it.

    Args:
        children: where the API-key and TLS Secrets are read from.
        timeout: seconds, as :func:`fetch`'s.
        enabled: ``False`` turns the probe off (``callfs-operator --no-node-probe``): every report is ``None``.
    """

    def __init__(self, children: Children, *, timeout: float = PROBE_TIMEOUT, enabled: bool = True) -> None:
        self.children = children
        self.timeout = timeout
        self.enabled = enabled

    def _where(self, cluster: Cluster) -> tuple[str, str, ssl.SSLContext | None] | None:
        """``(endpoint, root API key, TLS context)`` to ask ``cluster`` with; ``None`` when disabled, when the
        key or a usable TLS trust anchor is missing."""
        if not self.enabled:
            return None
        keys = self.children.secret_data(cluster.namespace, names.api_key_secret(cluster)) or {}
        api_key = keys.get(names.API_KEY)
        if not api_key:
            return None
        context = None
        if cluster.spec.tls is not None:
            tls = self.children.secret_data(cluster.namespace, cluster.spec.tls.secret_name) or {}
            context = tls_context(tls)
            if context is None:
                return None
        return names.endpoint(cluster), api_key, context

    def __call__(self, cluster: Cluster) -> dict[str, str] | None:
        """The report for ``cluster``; ``None`` when disabled, when the root API key or a usable TLS trust
        anchor is missing, or when :func:`fetch` gives none."""
        where = self._where(cluster)
        if where is None:
            return None
        url, api_key, context = where
        return fetch(url, api_key, ssl_context=context, timeout=self.timeout)

    def drain(self, cluster: Cluster, pods: Sequence[str], keep: Sequence[str]) -> dict[str, DrainInfo | None] | None:
        """Drain ``pods`` of ``cluster`` and cancel the drains of ``keep`` (:func:`drain`); ``None`` as
        :meth:`__call__`."""
        where = self._where(cluster)
        if where is None:
            return None
        url, api_key, context = where
        return drain(url, api_key, pods, keep, ssl_context=context, timeout=self.timeout)

    def replication(self, cluster: Cluster) -> ReplicationInfo | None:
        """The redundancy of ``cluster``'s block copies (:func:`fetch_replication`); ``None`` as
        :meth:`__call__`."""
        where = self._where(cluster)
        if where is None:
            return None
        url, api_key, context = where
        return fetch_replication(url, api_key, ssl_context=context, timeout=self.timeout)
