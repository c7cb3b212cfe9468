"""Which children the spec no longer wants (pure): what to delete after a spec change, and what to keep.

Children carry the labels ``app.kubernetes.io/managed-by: callfs-operator`` and
``app.kubernetes.io/instance: <cluster>`` (:func:`callfs_operator.names.labels`). Switching
``spec.metadata``/``spec.locks`` to an external store, or ``spec.auth`` to the user's own Secret, leaves such
children behind; they are deleted, except what holds data or opens it:

* PersistentVolumeClaims are never deleted here: a StatefulSet's ``persistentVolumeClaimRetentionPolicy``
  (``whenDeleted`` from ``spec.deletionPolicy``) decides whether its claims go with it;
* under ``deletionPolicy: Retain`` the cluster's Secrets are kept as well (the retained data of a managed
  PostgreSQL is only readable with its password).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from callfs_operator.spec import Cluster

PRUNABLE_KINDS = ("StatefulSet", "Service", "ConfigMap", "Secret", "PodDisruptionBudget")
"""Kinds of children the operator builds, in the order they are deleted (pods' users first)."""


@dataclass(frozen=True)
class Unwanted:
    """A live child the spec does not produce: delete it unless ``kept`` says why not."""

    kind: str
    name: str
    kept: str | None = None


def unwanted(cluster: Cluster, desired: Iterable[Mapping[str, Any]],
             live: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Unwanted]:
    """The ``live`` children (``(kind, API dict)`` of the cluster's labelled objects) absent from ``desired``
    (the builders' manifests), in :data:`PRUNABLE_KINDS` order. Objects another controller owns (an
    ``ownerReference`` with ``controller: true`` to something other than a ``CallFSCluster``) are skipped."""
    wanted = {(obj["kind"], obj["metadata"]["name"]) for obj in desired}
    out = []
    for kind, obj in sorted(live, key=lambda item: (PRUNABLE_KINDS.index(item[0]), item[1]["metadata"]["name"])):
        meta = obj["metadata"]
        if (kind, meta["name"]) in wanted or meta.get("deletionTimestamp"):
            continue
        controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
        if any(r.get("kind") != "CallFSCluster" for r in controllers):
            continue
        kept = None
        if kind == "Secret" and cluster.spec.deletion_policy == "Retain":
            kept = "deletionPolicy Retain keeps the credentials of retained data"
        out.append(Unwanted(kind, str(meta["name"]), kept))
    return out


def message(cluster: Cluster, removed: list[Unwanted]) -> str:
    """The Event message of a prune: what was deleted, what was kept and why, and what happens to claims."""
    deleted = [f"{u.kind} {u.name}" for u in removed if u.kept is None]
    kept = [f"{u.kind} {u.name}" for u in removed if u.kept is not None]
    parts = []
    if deleted:
        parts.append(f"deleted {', '.join(deleted)}, which the spec no longer wants")
    if kept:
        reason = next(u.kept for u in removed if u.kept is not None)
        parts.append(f"kept {', '.join(kept)} ({reason})")
    if any(u.kind == "StatefulSet" for u in removed if u.kept is None):
        fate = "deleted with them" if cluster.spec.deletion_policy == "Delete" else "retained"
        parts.append(f"their PersistentVolumeClaims are {fate} (deletionPolicy {cluster.spec.deletion_policy})")
    return "; ".join(parts)
