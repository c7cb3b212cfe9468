"""The common shape of the managed dependencies (PostgreSQL, Redis): one replica, one PVC, one Service."""

from __future__ import annotations

from typing import Any

from callfs_operator import names
from callfs_operator.builders import security
from callfs_operator.builders.statefulset import claim_template, retention_policy, scheduling
from callfs_operator.spec import Cluster, Storage


def dependency_statefulset(
    cluster: Cluster, component: str, name: str, container: dict[str, Any], storage: Storage,
    user: security.RunAs, writable: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A one-replica StatefulSet ``name`` running ``container`` as ``user`` with its own PVC of ``storage`` and
    an ``emptyDir`` for each ``{volume name: path}`` of ``writable`` (see :func:`.security.harden`)."""
    pod_spec = {"containers": [container], "enableServiceLinks": False, **scheduling(cluster)}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": cluster.namespace, "labels": names.labels(cluster, component)},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "persistentVolumeClaimRetentionPolicy": retention_policy(cluster),
            "selector": {"matchLabels": names.selector(cluster, component)},
            "template": {
                "metadata": {"labels": names.labels(cluster, component)},
                "spec": security.harden(pod_spec, user, writable),
            },
            "volumeClaimTemplates": [claim_template(cluster, component, storage)],
        },
    }


def dependency_service(cluster: Cluster, component: str, name: str, port_name: str, port: int) -> dict[str, Any]:
    """A ClusterIP Service ``name`` exposing the dependency's one TCP port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": cluster.namespace, "labels": names.labels(cluster, component)},
        "spec": {
            "selector": names.selector(cluster, component),
            "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
        },
    }
