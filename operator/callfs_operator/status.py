"""The ``status`` of a ``CallFSCluster``, computed from the state of its children and, where the operator can
reach them, from the storage nodes' own membership view (a pure function).

Conditions follow the Kubernetes API conventions
(https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties):
each has ``type``, ``status`` (``"True"``/``"False"``/``"Unknown"``), a CamelCase ``reason``, a human
``message``, ``lastTransitionTime`` (RFC 3339, changed only when ``status`` changes) and
``observedGeneration``. Types: ``Ready`` (the cluster serves), ``Progressing`` (the operator is still moving
children towards the spec), ``Degraded`` (something needs a human), the per-dependency ``MetadataReady``,
``LocksReady``, ``NodesReady``, and ``DataRedundant`` (every block has its copies on live nodes; present once
the nodes could be asked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callfs.client import ReplicationInfo
from callfs_operator import names
from callfs_operator.spec import Cluster

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
METADATA_READY = "MetadataReady"
LOCKS_READY = "LocksReady"
NODES_READY = "NodesReady"
DATA_REDUNDANT = "DataRedundant"
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
    field: str | None = None
    """The spec field at fault (``spec.locks.externalSecret``...), when one is."""
    blocking: bool = True
    """Whether the cluster cannot serve because of it; a held-back scale-down, say, does not stop serving."""


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
    faults: tuple[Problem, ...] = ()
    """Why pods do not run (:mod:`callfs_operator.diagnosis`): a Pending claim, a refused pod, a crashing
    container. They degrade the cluster but do not stop progress before the progress deadline."""
    waits: tuple[str, ...] = ()
    """What pods wait for that may resolve itself (:func:`callfs_operator.diagnosis.waits`): said in the
    ``Progressing`` message, hence in ``ProgressDeadlineExceeded``'s."""
    target_nodes: int | None = None
    """The node count the operator applies (``spec.replicas`` unless a scale-down is held back)."""
    draining: str | None = None
    """The progress of the drains a scale-down waits on (:func:`callfs_operator.scaling.plan`): the
    ``Progressing`` message, reason ``Draining``; ``None`` when none is waited on."""
    capacity: str | None = None
    """Provisioned storage of the node claims (a quantity such as ``30Gi``)."""
    version: str | None = None
    """The version the ready nodes run (see :func:`callfs_operator.diagnosis.running_version`)."""
    replication: ReplicationInfo | None = None
    """The nodes' count of block copies (:func:`callfs_operator.node_report.fetch_replication`); ``None`` when
    the cluster could not be asked: no ``DataRedundant`` condition then."""


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


def _store_condition(kind: str, label: str, managed: bool, workload: Workload | None,
                     problems: Sequence[Problem], field: str) -> dict[str, Any]:
    """``MetadataReady``/``LocksReady``: an external store is ready when its Secret (``field``) is usable, a
    managed one when its pod is ready."""
    mine = [p for p in problems if p.field == field]
    if mine:
        return _condition(kind, False, mine[0].reason, "; ".join(p.message for p in mine))
    if not managed:
        return _condition(kind, True, "External", f"using the external {label} named by {field}")
    if workload is None:
        return _condition(kind, False, "Creating", f"the managed {label} StatefulSet does not exist yet")
    if workload.ready >= 1:
        return _condition(kind, True, "Ready", f"the managed {label} is ready")
    return _condition(kind, False, "NotReady", f"the managed {label} pod is not ready yet")


def redundancy_condition(cluster: Cluster, replication: ReplicationInfo) -> dict[str, Any]:
    """``DataRedundant``: True when every block of the files stored in blocks has ``replicas`` >= 2 copies on
    live nodes (or the bytes live in S3, whose object store gives the durability), else False saying why."""
    if cluster.spec.backend.type == "s3":
        return _condition(DATA_REDUNDANT, True, "ObjectStore", "file bytes live in S3, which keeps them durable")
    if replication.under_replicated_blocks > 0:
        return _condition(
            DATA_REDUNDANT, False, "UnderReplicated",
            f"{replication.under_replicated_blocks} blocks have fewer than {replication.replicas} copies on live "
            "nodes; the nodes copy them again once their node has been down for backend.replica_repair_grace")
    if replication.replicas < 2:
        return _condition(DATA_REDUNDANT, False, "SingleCopy",
                          "each block is kept on one node (spec.storage.replicas is 1, or the cluster has one node)")
    return _condition(DATA_REDUNDANT, True, "Redundant",
                      f"every block of the files stored in blocks (every file written in a cluster, unless "
                      f"backend.whole_files_in_blocks is false) has {replication.replicas} copies on live nodes")


def _nodes_condition(cluster: Cluster, observed: Observed, target: int, ready_nodes: int,
                     down: Sequence[str]) -> dict[str, Any]:
    nodes = observed.nodes
    desired = cluster.spec.replicas
    if nodes is None:
        return _condition(NODES_READY, False, "Creating", "the storage node StatefulSet does not exist yet")
    held = f" (spec.replicas is {desired}: the scale-down is held back)" if target != desired else ""
    if down:
        return _condition(
            NODES_READY, False, "NodesDown",
            f"{ready_nodes}/{target} storage nodes ready: the cluster reports {', '.join(down)} down "
            "(heartbeats not reaching the metadata store) although the pods are ready")
    if nodes.settled and nodes.replicas == target:
        seen = "; the cluster reports every node up" if observed.reported is not None else ""
        return _condition(NODES_READY, True, "AllNodesReady", f"{ready_nodes}/{target} storage nodes ready{seen}{held}")
    rolling = nodes.update_revision is not None and nodes.current_revision != nodes.update_revision
    if rolling and nodes.replicas == target:
        return _condition(NODES_READY, False, "RollingUpdate",
                          f"{ready_nodes}/{target} storage nodes ready, {nodes.updated}/{target} running the new "
                          "revision (rolling update, one node at a time)")
    return _condition(NODES_READY, False, "NodesNotReady", f"{ready_nodes}/{target} storage nodes ready{held}")


def _progress(cluster: Cluster, observed: Observed, target: int, stores_ready: bool) -> dict[str, Any]:
    """``Progressing`` before the deadline is applied."""
    nodes = observed.nodes
    blocking = [p for p in observed.problems if p.blocking]
    if observed.deletion_blocked is not None:
        return _condition(PROGRESSING, False, "DeletionBlocked", observed.deletion_blocked)
    if blocking:
        return _condition(PROGRESSING, False, blocking[0].reason, blocking[0].message)
    if nodes is None:
        return _condition(PROGRESSING, True, "Creating", "creating the cluster's children")
    if observed.draining is not None:
        return _condition(PROGRESSING, True, "Draining", observed.draining)
    if nodes.replicas != target:
        return _condition(PROGRESSING, True, "Scaling", f"scaling to {target} storage nodes")
    if nodes.observed_generation < nodes.generation:
        return _condition(PROGRESSING, True, "Applying",
                          "the StatefulSet controller has not seen the latest node spec yet")
    if nodes.update_revision is not None and nodes.current_revision != nodes.update_revision:
        return _condition(PROGRESSING, True, "RollingUpdate",
                          f"{nodes.updated}/{target} storage nodes updated, one at a time")
    if not nodes.settled or not stores_ready:
        return _condition(PROGRESSING, True, "WaitingForPods", "waiting for pods to become ready")
    if observed.problems:
        return _condition(PROGRESSING, False, observed.problems[0].reason, observed.problems[0].message)
    return _condition(PROGRESSING, False, "Reconciled", "every child matches the spec")


def _with_waits(progressing: dict[str, Any], observed: Observed) -> dict[str, Any]:
    if progressing["status"] != "True" or not observed.waits:
        return progressing
    return {**progressing, "message": f"{progressing['message']}: {'; '.join(observed.waits)}"}


def _deadline(cluster: Cluster, progressing: dict[str, Any], previous: Sequence[Mapping[str, Any]],
              generation: int, now: datetime) -> dict[str, Any]:
    """``progressing`` turned into ``False``/``ProgressDeadlineExceeded`` once it has been ``True`` for longer
    than ``spec.progressDeadlineSeconds`` within one generation (as a Deployment's ``progressDeadlineSeconds``);
    it stays so until progress ends or the spec changes."""
    if progressing["status"] != "True":
        return progressing
    before = next((c for c in previous if c.get("type") == PROGRESSING), None)
    if before is None or before.get("observedGeneration") != generation:
        return progressing
    deadline = cluster.spec.progress_deadline_seconds
    message = (f"no progress within spec.progressDeadlineSeconds ({deadline} s): {progressing['message']}")
    if before.get("reason") == "ProgressDeadlineExceeded" and before.get("status") == "False":
        return _condition(PROGRESSING, False, "ProgressDeadlineExceeded", message)
    since = _parse_time(before.get("lastTransitionTime")) if before.get("status") == "True" else None
    if since is not None and (now - since).total_seconds() > deadline:
        return _condition(PROGRESSING, False, "ProgressDeadlineExceeded", message)
    return progressing


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def compute(
    cluster: Cluster,
    generation: int,
    observed: Observed,
    previous: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    """The status dict: ``observedGeneration``, ``phase``, ``message`` (the first condition that is not as it
    should be, else the Ready message), ``readyNodes``, ``nodes`` (``"ready/target"``), ``endpoint``,
    ``capacity`` and ``version`` when known, and ``conditions``.

    ``previous`` are the current conditions: a condition whose ``status`` did not change keeps its
    ``lastTransitionTime``, and the progress deadline counts from ``Progressing``'s. ``now`` (timezone-aware)
    stamps the others.
    """
    now = now or datetime.now().astimezone()
    nodes = observed.nodes
    target = observed.target_nodes if observed.target_nodes is not None else cluster.spec.replicas
    down = unhealthy_nodes(cluster, observed)
    ready_nodes = nodes.ready - len(down) if nodes is not None else 0
    metadata = _store_condition(METADATA_READY, "PostgreSQL", cluster.spec.metadata.managed, observed.metadata,
                                observed.problems, "spec.metadata.externalSecret")
    locks = _store_condition(LOCKS_READY, "Redis", cluster.spec.locks.managed, observed.locks,
                             observed.problems, "spec.locks.externalSecret")
    nodes_ready = _nodes_condition(cluster, observed, target, ready_nodes, down)
    stores_ready = metadata["status"] == "True" and locks["status"] == "True"
    progressing = _deadline(cluster, _with_waits(_progress(cluster, observed, target, stores_ready), observed),
                            previous, generation, now)

    blocking = [p for p in observed.problems if p.blocking]
    troubles = [*observed.problems, *observed.faults]
    if troubles:
        degraded = _condition(DEGRADED, True, troubles[0].reason, "; ".join(p.message for p in troubles))
    elif down:
        degraded = _condition(DEGRADED, True, "NodesDown", nodes_ready["message"])
    elif progressing["reason"] == "ProgressDeadlineExceeded":
        degraded = _condition(DEGRADED, True, "ProgressDeadlineExceeded", progressing["message"])
    else:
        degraded = _condition(DEGRADED, False, "AsExpected", "no problems found")

    parts = [metadata, locks, nodes_ready]
    not_ready = [c for c in parts if c["status"] != "True"]
    if blocking:
        ready = _condition(READY, False, blocking[0].reason, blocking[0].message)
    elif not_ready:
        reason = observed.faults[0].reason if observed.faults else \
            not_ready[0]["type"].replace("Ready", "NotReady")
        ready = _condition(READY, False, reason,
                           "; ".join([c["message"] for c in not_ready] + [p.message for p in observed.faults]))
    else:
        ready = _condition(READY, True, "ClusterReady", f"{ready_nodes} storage nodes serving at "
                           f"{names.endpoint(cluster)}")

    if observed.deletion_blocked is not None:
        phase = "Deleting"
    elif ready["status"] == "True":
        phase = "Running"
    elif blocking or down or observed.faults or progressing["reason"] == "ProgressDeadlineExceeded":
        phase = "Degraded"
    elif ready_nodes > 0 and progressing["status"] == "True":
        phase = "Updating"
    else:
        phase = "Pending"

    conditions = [ready, progressing, degraded, metadata, locks, nodes_ready]
    if observed.replication is not None:
        conditions.append(redundancy_condition(cluster, observed.replication))
    stamped = stamp(conditions, previous, generation, now)
    if observed.deletion_blocked is not None or (progressing["reason"] == "Draining"
                                                 and degraded["status"] != "True"):
        message = progressing["message"]
    elif degraded["status"] == "True":
        message = degraded["message"]
    else:
        message = ready["message"]
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase,
        "message": message,
        "readyNodes": ready_nodes,
        "nodes": f"{ready_nodes}/{target}",
        "endpoint": names.endpoint(cluster),
        "conditions": stamped,
    }
    if observed.capacity is not None:
        out["capacity"] = observed.capacity
    if observed.version is not None:
        out["version"] = observed.version
    return out


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
