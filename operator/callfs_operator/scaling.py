"""Whether the storage nodes may scale down (pure): never at the cost of data on a removed node's disk.

A StatefulSet scales down by removing its highest-ordinal pods. Blocks with a copy on such a node and files whose
bytes are a blob on its local disk would lose a copy or become unreadable, so before lowering the StatefulSet
the operator drains every pod to be removed: it asks the cluster (``POST /v1/cluster/nodes/{pod}/drain``, the
instance id of a node is its pod name) to re-replicate the node's blocks and move its blob files to the nodes
that stay, reports the progress (``Progressing``, reason ``Draining``), and scales down once each such node
reports ``drained``. The rule is level-based: pods beyond ``spec.replicas`` are drained until removed, and a pod
within ``spec.replicas`` that is still leaving (a scale-down called off, or a pod removed before and now
re-created) has its drain cancelled.

An administrator may vouch for pods instead, listing them in the CR annotation :data:`DRAINED_ANNOTATION`
(comma-separated): they are removed without waiting. When the nodes cannot be asked (unreachable, or a version
without drains), the StatefulSet keeps its size and the cluster reports ``ScaleDownBlocked`` until the removed
pods are drained by hand (``PATCH /v1/files/{path}`` with ``backend``/``instance``) and listed there.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from callfs.client import DrainInfo
from callfs_operator import names
from callfs_operator.spec import Cluster
from callfs_operator.status import Problem

DRAINED_ANNOTATION = "callfs.io/drained-nodes"


@dataclass(frozen=True)
class ReplicaPlan:
    """``replicas`` to give the node StatefulSet, the problem that kept it from ``spec.replicas``, and the
    progress of the drains it waits on (``draining``: the ``Draining`` message)."""

    replicas: int
    problem: Problem | None = None
    draining: str | None = None


@dataclass(frozen=True)
class DrainRequests:
    """What to ask the nodes: ``drain`` these pods (to be removed, not vouched for), ``keep`` these (within
    ``spec.replicas``: their drain, if any, is cancelled)."""

    drain: tuple[str, ...]
    keep: tuple[str, ...]


Drains = Mapping[str, DrainInfo | None]
"""The nodes' answer for each pod asked to drain: its progress, ``None`` when the cluster has no node of that
name registered (it never started: nothing of it to drain)."""


def drained_nodes(annotations: Mapping[str, str] | None) -> frozenset[str]:
    """Pod names listed in :data:`DRAINED_ANNOTATION` (whitespace around names ignored)."""
    raw = (annotations or {}).get(DRAINED_ANNOTATION, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def requests(cluster: Cluster, current: int | None, vouched: Collection[str]) -> DrainRequests:
    """The drains to start and cancel for a StatefulSet of ``current`` replicas (``None``: not created: none)."""
    if current is None:
        return DrainRequests((), ())
    desired = cluster.spec.replicas
    pods = names.node_pod_names(cluster, max(current, desired))
    return DrainRequests(tuple(p for p in pods[desired:current] if p not in vouched), tuple(pods[:desired]))


def _done(drains: Drains, pod: str) -> bool:
    """The nodes say nothing relies on ``pod`` any more (drained, or never registered); a pod not asked: no."""
    if pod not in drains:
        return False
    info = drains[pod]
    return info is None or info.drained


def _left(pod: str, info: DrainInfo | None) -> str:
    if info is None:
        return pod
    return f"{pod} ({info.blocks_left} blocks, {info.files_left} files left)"


def plan(cluster: Cluster, current: int | None, vouched: Collection[str], drains: Drains | None = None) -> ReplicaPlan:
    """The node count to apply. ``current`` is the StatefulSet's ``spec.replicas`` (``None``: not created);
    ``vouched`` the pods of :data:`DRAINED_ANNOTATION`; ``drains`` the nodes' answer to :func:`requests`'
    ``drain`` (``None``: the cluster could not be asked).

    Scaling up or creating is always allowed; scaling down once every removed pod is vouched for, reported
    ``drained``, or not registered with the cluster at all (a node registers before it stores anything).
    """
    desired = cluster.spec.replicas
    if current is None or desired >= current:
        return ReplicaPlan(desired)
    removed = names.node_pod_names(cluster, current)[desired:]
    waiting = [pod for pod in removed if pod not in vouched]
    if drains is not None:
        waiting = [pod for pod in waiting if not _done(drains, pod)]
    if not waiting:
        return ReplicaPlan(desired)
    if drains is None:
        message = (
            f"spec.replicas: scaling from {current} to {desired} would remove {', '.join(waiting)}, which may "
            "hold files on local disk, and the nodes cannot be asked to drain them; move them to other nodes or "
            f"to S3, then list the drained pods in the annotation {DRAINED_ANNOTATION}"
        )
        # The cluster still serves on its current nodes: the held scale-down needs a human, it does not stop serving.
        return ReplicaPlan(current, Problem("ScaleDownBlocked", message, field="spec.replicas", blocking=False))
    message = (f"draining {', '.join(_left(pod, drains.get(pod)) for pod in waiting)} before scaling from "
               f"{current} to {desired} storage nodes")
    return ReplicaPlan(current, draining=message)
