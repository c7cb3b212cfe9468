"""The ``status`` of a ``CallFSCluster``, computed from the state of its children and, where the operator can
reach them, from the storage nodes' own membership view (a pure function).

Conditions follow the Kubernetes API conventions
(https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties):
each has ``type``, ``status`` (``"True"``/``"False"``/``"Unknown"``), a CamelCase ``reason``, a human
``message``, ``lastTransitionTime`` (RFC 3339, changed only when ``status`` changes) and
``observedGeneration``. Types: ``Ready`` (the cluster serves), ``Progressing`` (the operator is still moving
children towards the spec), ``Degraded`` (something needs a human), and the per-dependency ``MetadataReady``,
``LocksReady``, ``NodesReady``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callfs_operator import names
from callfs_operator.spec import Cluster

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
METADATA_READY = "MetadataReady"
LOCKS_READY = "LocksReady"
NODES_READY = "NodesReady"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, METADATA_READY, LOCKS_READY, NODES_READY)


@dataclass(frozen=True)
class Workload:
    """What a StatefulSet's ``status`` says (counts are pods)."""

    replicas: int
    ready: int
    updated: int
    generation: int
    observed_generation: int
    current_revision: str | None = None
    update_revision: str | None = None

    @classmethod
    def from_statefulset(cls, sts: Mapping[str, Any]) -> Workload:
        """From a StatefulSet dict as the API returns it (missing status fields count as 0/None)."""
        status = sts.get("status") or {}
        return cls(
            replicas=int(sts.get("spec", {}).get("replicas", 1)),
            ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            generation=int(sts.get("metadata", {}).get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            current_revision=status.get("currentRevision"),
            update_revision=status.get("updateRevision"),
        )

    @property
    def settled(self) -> bool:
        """The controller has seen the latest spec and every pod runs the latest revision and is ready."""
        return (
            self.observed_generation >= self.generation
            and self.updated == self.replicas
            and self.ready == self.replicas
            and (self.update_revision is None or self.current_revision == self.update_revision)
        )


@dataclass(frozen=True)
class Problem:
    """A spec problem the schema cannot catch: ``reason`` (CamelCase), ``message`` naming the field."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """The children's state. A workload is ``None`` when its StatefulSet does not exist (yet), or — for
    ``metadata``/``locks`` — when the store is external."""

    nodes: Workload | None
    metadata: Workload | None
    locks: Workload | None
    problems: tuple[Problem, ...] = ()
    deletion_blocked: str | None = None
    """Why deletion waits (e.g. the PersistentVolumes still using the cluster); ``None`` when not deleting."""
    reported: Mapping[str, str] | None = None
    """The nodes' own view, ``{instance_id: "up"|"down"|"unknown"}`` (:mod:`callfs_operator.node_report`);
    ``None`` when the cluster could not be asked."""


def unhealthy_nodes(cluster: Cluster, observed: Observed) -> list[str]:
    """Pods of a settled node StatefulSet that the cluster itself does not report ``up`` (heartbeats no longer
    reach the metadata store, or never registered), in pod order. Empty while the report is missing or the
    StatefulSet is still changing (the nodes' view lags the pods by a heartbeat)."""
    nodes, reported = observed.nodes, observed.reported
    if nodes is None or reported is None or not nodes.settled:
        return []
    return [pod for pod in names.node_pod_names(cluster, nodes.replicas) if reported.get(pod) != "up"]


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}


def _store_condition(kind: str, label: str, managed: bool, workload: Workload | None) -> dict[str, Any]:
    if not managed:
        return _condition(kind, True, "External", f"using the external {label} from its Secret")
    if workload is None:
        return _condition(kind, False, "Creating", f"the managed {label} StatefulSet does not exist yet")
    if workload.ready >= 1:
        return _condition(kind, True, "Ready", f"the managed {label} is ready")
    return _condition(kind, False, "NotReady", f"the managed {label} pod is not ready yet")


def compute(
    cluster: Cluster,
    generation: int,
    observed: Observed,
    previous: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    """The status dict: ``observedGeneration``, ``phase``, ``readyNodes``, ``nodes`` (``"ready/desired"``),
    ``endpoint`` and ``conditions``.

    ``previous`` are the current conditions: a condition whose ``status`` did not change keeps its
    ``lastTransitionTime``. ``now`` (timezone-aware) stamps the others.
    """
    desired = cluster.spec.replicas
    nodes = observed.nodes
    down = unhealthy_nodes(cluster, observed)
    ready_nodes = nodes.ready - len(down) if nodes is not None else 0
    metadata = _store_condition(METADATA_READY, "PostgreSQL", cluster.spec.metadata.managed, observed.metadata)
    locks = _store_condition(LOCKS_READY, "Redis", cluster.spec.locks.managed, observed.locks)

    if nodes is None:
        nodes_ready = _condition(NODES_READY, False, "Creating", "the storage node StatefulSet does not exist yet")
    elif down:
        nodes_ready = _condition(
            NODES_READY, False, "NodesDown",
            f"{ready_nodes}/{desired} storage nodes ready: the cluster reports {', '.join(down)} down "
            "(heartbeats not reaching the metadata store) although the pods are ready")
    elif nodes.settled and nodes.replicas == desired:
        seen = "; the cluster reports every node up" if observed.reported is not None else ""
        nodes_ready = _condition(NODES_READY, True, "AllNodesReady",
                                 f"{ready_nodes}/{desired} storage nodes ready{seen}")
    else:
        nodes_ready = _condition(NODES_READY, False, "NodesNotReady", f"{ready_nodes}/{desired} storage nodes ready")

    if observed.deletion_blocked is not None:
        progressing = _condition(PROGRESSING, False, "DeletionBlocked", observed.deletion_blocked)
    elif observed.problems:
        first = observed.problems[0]
        progressing = _condition(PROGRESSING, False, first.reason, first.message)
    elif nodes is None:
        progressing = _condition(PROGRESSING, True, "Creating", "creating the cluster's children")
    elif nodes.replicas != desired:
        progressing = _condition(PROGRESSING, True, "Scaling", f"scaling to {desired} storage nodes")
    elif nodes.observed_generation < nodes.generation:
        progressing = _condition(PROGRESSING, True, "Applying",
                                 "the StatefulSet controller has not seen the latest node spec yet")
    elif nodes.update_revision is not None and nodes.current_revision != nodes.update_revision:
        progressing = _condition(
            PROGRESSING, True, "RollingUpdate", f"{nodes.updated}/{desired} storage nodes updated, one at a time"
        )
    elif not nodes.settled or metadata["status"] != "True" or locks["status"] != "True":
        progressing = _condition(PROGRESSING, True, "WaitingForPods", "waiting for pods to become ready")
    else:
        progressing = _condition(PROGRESSING, False, "Reconciled", "every child matches the spec")

    if observed.problems:
        degraded = _condition(DEGRADED, True, observed.problems[0].reason,
                              "; ".join(p.message for p in observed.problems))
    elif down:
        degraded = _condition(DEGRADED, True, "NodesDown", nodes_ready["message"])
    else:
        degraded = _condition(DEGRADED, False, "AsExpected", "no problems found")

    parts = [metadata, locks, nodes_ready]
    not_ready = [c for c in parts if c["status"] != "True"]
    if observed.problems:
        ready = _condition(READY, False, observed.problems[0].reason, observed.problems[0].message)
    elif not_ready:
        ready = _condition(READY, False, not_ready[0]["type"].replace("Ready", "NotReady"),
                           "; ".join(c["message"] for c in not_ready))
    else:
        ready = _condition(READY, True, "ClusterReady", f"{ready_nodes} storage nodes serving at "
                           f"{names.endpoint(cluster)}")

    if observed.deletion_blocked is not None:
        phase = "Deleting"
    elif ready["status"] == "True":
        phase = "Running"
    elif observed.problems or down:
        phase = "Degraded"
    elif ready_nodes > 0 and progressing["status"] == "True":
        phase = "Updating"
    else:
        phase = "Pending"

    conditions = [ready, progressing, degraded, metadata, locks, nodes_ready]
    stamped = stamp(conditions, previous, generation, now or datetime.now().astimezone())
    return {
        "observedGeneration": generation,
        "phase": phase,
        "readyNodes": ready_nodes,
        "nodes": f"{ready_nodes}/{desired}",
        "endpoint": names.endpoint(cluster),
        "conditions": stamped,
    }


def stamp(
    conditions: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]], generation: int, now: datetime
) -> list[dict[str, Any]]:
    """``conditions`` with ``observedGeneration`` and ``lastTransitionTime`` (kept from ``previous`` when the
    same type had the same status, else ``now`` as RFC 3339 with a ``Z`` suffix, seconds precision)."""
    before = {c.get("type"): c for c in previous}
    out = []
    for condition in conditions:
        old = before.get(condition["type"])
        if old is not None and old.get("status") == condition["status"] and old.get("lastTransitionTime"):
            since = str(old["lastTransitionTime"])
        else:
            since = _rfc3339(now)
        out.append({**condition, "observedGeneration": generation, "lastTransitionTime": since})
    return out


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def transitions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The conditions of ``current`` whose ``status`` or ``reason`` differ from ``previous`` (new types too):
    each one is an Event to emit."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in previous}
    return [dict(c) for c in current if before.get(c["type"]) != (c["status"], c["reason"])]
