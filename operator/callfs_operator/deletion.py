"""Which PersistentVolumes keep a ``CallFSCluster`` from being deleted (pure).

Deleting a cluster while volumes still live on it would strand their pods' mounts; we block instead. A
PersistentVolume of the ``csi.callfs.io`` driver points at a cluster through the volume attribute
``cluster: <namespace>/<name>`` or, failing that, through the ``cluster`` parameter of its StorageClass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from callfs_operator.names import CSI_DRIVER

CLUSTER_KEY = "cluster"


def volumes_using(
    cluster_ref: str, volumes: Iterable[Mapping[str, Any]], storage_classes: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Names (sorted) of the PersistentVolumes among ``volumes`` (API dicts) that use ``cluster_ref``.

    ``storage_classes`` maps StorageClass name → its API dict. Only volumes of :data:`CSI_DRIVER` count; a
    volume's own ``volumeAttributes.cluster`` wins over its StorageClass's ``parameters.cluster``.
    """
    out = []
    for pv in volumes:
        spec = pv.get("spec") or {}
        csi = spec.get("csi") or {}
        if csi.get("driver") != CSI_DRIVER:
            continue
        target = (csi.get("volumeAttributes") or {}).get(CLUSTER_KEY)
        if target is None and spec.get("storageClassName"):
            target = ((storage_classes.get(spec["storageClassName"]) or {}).get("parameters") or {}).get(CLUSTER_KEY)
        if target == cluster_ref:
            out.append(str(pv["metadata"]["name"]))
    return sorted(out)


def blocked_message(cluster_ref: str, volumes: list[str], shown: int = 5) -> str:
    """The DeletionBlocked message: how many volumes, the first ``shown`` names, what to do."""
    listed = ", ".join(volumes[:shown]) + (f" and {len(volumes) - shown} more" if len(volumes) > shown else "")
    return (f"deletion of {cluster_ref} waits for {len(volumes)} PersistentVolume(s) of {CSI_DRIVER} that still "
            f"use it ({listed}); delete those volumes first")
