"""The health gate of a node rollout (pure): one node at a time, the next only once the last is healthy.

A StatefulSet's ``RollingUpdate`` replaces pods from the highest ordinal down and waits for each to pass its
readiness probe. The operator holds it tighter, as Rook does for Ceph daemons, through
``updateStrategy.rollingUpdate.partition`` (pods with an ordinal at or above it get the new revision): a new
pod template starts the rollout with the partition at the highest ordinal, and the partition comes down by one
only once every pod at or above it runs the update revision, is Ready, and — when the operator can ask the
cluster — is reported ``up`` by the nodes themselves (its heartbeats reach the metadata store). A node that
never gets healthy halts the rollout with the others untouched.

The StatefulSet carries the hash of the pod template it was last given (annotation
:data:`TEMPLATE_HASH_ANNOTATION`), so the operator knows when a rollout starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

TEMPLATE_HASH_ANNOTATION = "callfs.io/template-hash"
REVISION_LABEL = "controller-revision-hash"


def template_hash(sts: Mapping[str, Any]) -> str:
    """A hash (16 hex digits) of a built StatefulSet's pod template."""
    text = json.dumps(sts["spec"]["template"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _ordinal(pod: Mapping[str, Any]) -> int:
    return int(str(pod["metadata"]["name"]).rsplit("-", 1)[1])


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def partition(built: Mapping[str, Any], live: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]],
              reported: Mapping[str, str] | None) -> int:
    """The partition to apply with ``built`` (the node StatefulSet the builders made) given the ``live`` one
    (API dict, ``None``: not created), its ``pods`` (API dicts) and the nodes' own report (pod name →
    ``up``/``down``/``unknown``; ``None``: unknown, readiness alone counts)."""
    replicas = int(built["spec"]["replicas"])
    if live is None:
        return 0
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if annotations.get(TEMPLATE_HASH_ANNOTATION) != template_hash(built):
        return max(replicas - 1, 0)
    current = int((((live.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {})
                  .get("partition") or 0)
    current = min(current, max(replicas - 1, 0))
    if current == 0:
        return 0
    revision = (live.get("status") or {}).get("updateRevision")
    by_ordinal = {_ordinal(p): p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")}
    for ordinal in range(current, replicas):
        pod = by_ordinal.get(ordinal)
        if pod is None or revision is None or (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) != revision:
            return current
        if not _ready(pod) or (reported is not None and reported.get(pod["metadata"]["name"]) != "up"):
            return current
    return current - 1


def gated(built: Mapping[str, Any], value: int) -> dict[str, Any]:
    """``built`` with ``partition`` ``value`` and the template hash annotation."""
    meta = dict(built["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), TEMPLATE_HASH_ANNOTATION: template_hash(built)}
    spec = dict(built["spec"])
    spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": value}}
    return {**built, "metadata": meta, "spec": spec}
