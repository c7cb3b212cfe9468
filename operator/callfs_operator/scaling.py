"""Whether the storage nodes may scale down (pure): never at the cost of data on a removed node's disk.

A StatefulSet scales down by removing its highest-ordinal pods. Files whose bytes live on such a node's local
disk (backend ``localfs``, which any file can use whatever the cluster's default backend) would become
unreadable, so a scale-down only happens once every node being removed is known to hold no local data. The
nodes do not report that yet, so an administrator vouches for it, after moving the files away (``PATCH
/v1/files/{path}`` with ``backend``/``instance``), by listing the drained pods in the CR annotation
:data:`DRAINED_ANNOTATION` (comma-separated). Until then the StatefulSet keeps its size and the cluster reports
``ScaleDownBlocked``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from callfs_operator import names
from callfs_operator.spec import Cluster
from callfs_operator.status import Problem

DRAINED_ANNOTATION = "callfs.io/drained-nodes"


@dataclass(frozen=True)
class ReplicaPlan:
    """``replicas`` to give the node StatefulSet, and the problem that kept it from ``spec.replicas``."""

    replicas: int
    problem: Problem | None = None


def drained_nodes(annotations: dict[str, str] | None) -> frozenset[str]:
    """Pod names listed in :data:`DRAINED_ANNOTATION` (whitespace around names ignored)."""
    raw = (annotations or {}).get(DRAINED_ANNOTATION, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def plan(cluster: Cluster, current: int | None, drained: Collection[str]) -> ReplicaPlan:
    """The node count to apply. ``current`` is the StatefulSet's ``spec.replicas`` (``None``: not created).

    Scaling up or creating is always allowed; scaling down only when every removed pod is in ``drained``.
    """
    desired = cluster.spec.replicas
    if current is None or desired >= current:
        return ReplicaPlan(desired)
    removed = names.node_pod_names(cluster, current)[desired:]
    undrained = [pod for pod in removed if pod not in drained]
    if not undrained:
        return ReplicaPlan(desired)
    message = (
        f"spec.replicas: scaling from {current} to {desired} would remove {', '.join(undrained)}, which may hold "
        f"files on local disk; move them to other nodes or to S3, then list the drained pods in the annotation "
        f"{DRAINED_ANNOTATION}"
    )
    # The cluster still serves on its current nodes: the held scale-down needs a human, it does not stop serving.
    return ReplicaPlan(current, Problem("ScaleDownBlocked", message, field="spec.replicas", blocking=False))
