"""PodDisruptionBudgets: voluntary evictions (a node drain) take at most one storage node at a time, and never
the only pod of a managed PostgreSQL or Redis."""

from __future__ import annotations

from typing import Any

from callfs_operator import names
from callfs_operator.spec import Cluster


def pod_disruption_budget(cluster: Cluster) -> dict[str, Any]:
    """``<name>-node`` with ``maxUnavailable: 1`` (a node's files are served only by that node when the
    backend is ``localfs``, so draining two at once would make more files unavailable)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": names.pdb(cluster),
            "namespace": cluster.namespace,
            "labels": names.labels(cluster, names.NODE),
        },
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": names.selector(cluster, names.NODE)}},
    }


def dependency_pdb(cluster: Cluster, component: str, name: str) -> dict[str, Any]:
    """``name`` for the one-replica managed store ``component`` with ``minAvailable: 1``: every node depends on
    it, so a drain waits (as CloudNativePG's primary budget makes it) until an administrator moves the pod
    deliberately, by deleting it. Production clusters bring their own highly available store instead."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": cluster.namespace, "labels": names.labels(cluster, component)},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": names.selector(cluster, component)}},
    }
