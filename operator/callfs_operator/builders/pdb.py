"""The PodDisruptionBudget of the storage nodes: voluntary evictions take at most one node at a time."""

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
