"""The managed PostgreSQL (metadata store): a one-replica StatefulSet of the official image and its Service.

Built only when ``spec.metadata.externalSecret`` is absent. The password comes from the ``<name>-postgres``
Secret (:func:`.secrets.postgres_secret`), the data from the pod's own PVC.
"""

from __future__ import annotations

from typing import Any

from callfs_operator import names
from callfs_operator.builders.statefulset import DATA_VOLUME, claim_template, retention_policy, scheduling
from callfs_operator.spec import Cluster

DATA_PATH = "/var/lib/postgresql/data"


def postgres_statefulset(cluster: Cluster) -> dict[str, Any]:
    """``<name>-postgres``; readiness is ``pg_isready`` on the pod's own socket."""
    meta = cluster.spec.metadata
    container: dict[str, Any] = {
        "name": "postgres",
        "image": meta.effective_image,
        "imagePullPolicy": meta.image_pull_policy or cluster.spec.image_pull_policy,
        "env": [
            {"name": "POSTGRES_USER", "value": names.POSTGRES_USER},
            {"name": "POSTGRES_DB", "value": names.POSTGRES_DB},
            {
                "name": "POSTGRES_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": names.postgres(cluster), "key": names.PASSWORD}},
            },
            # A subdirectory: the volume's root may hold lost+found, which initdb refuses.
            {"name": "PGDATA", "value": f"{DATA_PATH}/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": names.POSTGRES_PORT, "protocol": "TCP"}],
        "volumeMounts": [{"name": DATA_VOLUME, "mountPath": DATA_PATH}],
        "readinessProbe": {
            "exec": {"command": ["pg_isready", "-U", names.POSTGRES_USER, "-d", names.POSTGRES_DB]},
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "exec": {"command": ["pg_isready", "-U", names.POSTGRES_USER, "-d", names.POSTGRES_DB]},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }
    resources = meta.resources.manifest()
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": names.postgres(cluster),
            "namespace": cluster.namespace,
            "labels": names.labels(cluster, names.POSTGRES),
        },
        "spec": {
            "replicas": 1,
            "serviceName": names.postgres(cluster),
            "persistentVolumeClaimRetentionPolicy": retention_policy(cluster),
            "selector": {"matchLabels": names.selector(cluster, names.POSTGRES)},
            "template": {
                "metadata": {"labels": names.labels(cluster, names.POSTGRES)},
                "spec": {"containers": [container], "enableServiceLinks": False, **scheduling(cluster)},
            },
            "volumeClaimTemplates": [claim_template(cluster, names.POSTGRES, meta.effective_storage)],
        },
    }


def postgres_service(cluster: Cluster) -> dict[str, Any]:
    """``<name>-postgres``: the ClusterIP Service the nodes' DSN points at."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.postgres(cluster),
            "namespace": cluster.namespace,
            "labels": names.labels(cluster, names.POSTGRES),
        },
        "spec": {
            "selector": names.selector(cluster, names.POSTGRES),
            "ports": [{"name": "postgres", "port": names.POSTGRES_PORT, "targetPort": "postgres", "protocol": "TCP"}],
        },
    }
