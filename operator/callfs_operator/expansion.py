"""Growing the storage of a running cluster (pure): which claims to expand, and StatefulSets left applicable.

A StatefulSet's ``volumeClaimTemplates`` are immutable once created, so a larger ``spec.storage.size`` (or
``spec.metadata.storage.size``, ``spec.locks.storage.size``) cannot reach the claims through the StatefulSet.
As Rook and other storage operators do, the operator instead patches ``spec.resources.requests.storage`` of
each existing claim of the component (Kubernetes then expands the volume when its StorageClass has
``allowVolumeExpansion: true``) and applies the StatefulSet with the claim template it was created with, which
the API server accepts. A claim a later scale-up creates from that template is expanded by the next reconcile.

Shrinking is refused: the CRD rejects a smaller size when the spec is changed (a CEL transition rule), and the
operator never patches a claim to less than it requests (Kubernetes cannot shrink a volume); a spec that still
asks for less (an old CRD) is reported as ``StorageShrinkRejected``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callfs_operator import names
from callfs_operator.diagnosis import quantity_bytes
from callfs_operator.spec import Cluster, Storage
from callfs_operator.status import Problem


@dataclass(frozen=True)
class Expansion:
    """Claim ``claim`` (name) must request ``size`` (a quantity) instead of ``current``."""

    claim: str
    size: str
    current: str


def wanted_sizes(cluster: Cluster) -> dict[str, tuple[str, Storage]]:
    """Component label → (the spec field, its storage) of every StatefulSet with claims the spec wants."""
    out: dict[str, tuple[str, Storage]] = {names.NODE: ("spec.storage.size", cluster.spec.storage)}
    if cluster.spec.metadata.managed:
        out[names.POSTGRES] = ("spec.metadata.storage.size", cluster.spec.metadata.effective_storage)
    if cluster.spec.locks.managed:
        out[names.REDIS] = ("spec.locks.storage.size", cluster.spec.locks.effective_storage)
    return out


def plan(cluster: Cluster, claims: Iterable[Mapping[str, Any]]) -> tuple[list[Expansion], list[Problem]]:
    """The claims (API dicts of the cluster's PVCs) to grow to their component's spec size, and a
    non-blocking ``StorageShrinkRejected`` problem per claim whose spec size is smaller than it requests."""
    wanted = wanted_sizes(cluster)
    grow: list[Expansion] = []
    problems: list[Problem] = []
    for claim in sorted(claims, key=lambda c: str(c["metadata"]["name"])):
        component = (claim["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
        if component not in wanted or claim["metadata"].get("deletionTimestamp"):
            continue
        field, storage = wanted[component]
        current = str(((claim.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0"))
        want, have = quantity_bytes(storage.size), quantity_bytes(current)
        if want > have:
            grow.append(Expansion(str(claim["metadata"]["name"]), storage.size, current))
        elif want < have:
            problems.append(Problem(
                "StorageShrinkRejected",
                f"{field}: {storage.size} is less than the {current} PersistentVolumeClaim "
                f"{cluster.namespace}/{claim['metadata']['name']} requests; volumes cannot shrink, the claim keeps "
                f"{current}", field=field, blocking=False))
    return grow, problems


def keep_claim_templates(objs: Sequence[Mapping[str, Any]],
                         live: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """``objs`` with each StatefulSet's ``volumeClaimTemplates`` replaced by those of the live StatefulSet of
    the same name in ``live`` (name → its ``spec.volumeClaimTemplates``), which the API server will not let
    change. StatefulSets not yet created keep the built templates."""
    out = []
    for obj in objs:
        templates = live.get(obj["metadata"]["name"]) if obj["kind"] == "StatefulSet" else None
        if templates:
            kept = [_template(t) for t in templates]
            obj = {**obj, "spec": {**obj["spec"], "volumeClaimTemplates": kept}}
        out.append(dict(obj))
    return out


def _template(live: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a live claim template the builders set (the API server adds defaults such as
    ``volumeMode`` and ``status``, which are not ours to apply)."""
    spec = live.get("spec") or {}
    meta = live.get("metadata") or {}
    out_spec: dict[str, Any] = {"accessModes": list(spec.get("accessModes") or []),
                                "resources": {"requests": dict((spec.get("resources") or {}).get("requests") or {})}}
    if spec.get("storageClassName") is not None:
        out_spec["storageClassName"] = spec["storageClassName"]
    out_meta: dict[str, Any] = {"name": meta.get("name")}
    if meta.get("labels"):
        out_meta["labels"] = dict(meta["labels"])
    return {"metadata": out_meta, "spec": out_spec}
