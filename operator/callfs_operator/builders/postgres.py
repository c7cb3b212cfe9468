"""The managed PostgreSQL (metadata store): a one-replica StatefulSet of the official image and its Service.

Built only when ``spec.metadata.externalSecret`` is absent. The password comes from the ``<name>-postgres``
Secret (:func:`.secrets.postgres_secret`), the data from the pod's own PVC.
"""

from __future__ import annotations

from typing import Any

from callfs_operator import names
from callfs_operator.builders import security
from callfs_operator.builders.dependency import dependency_service, dependency_statefulset
from callfs_operator.builders.statefulset import DATA_VOLUME
from callfs_operator.spec import Cluster, Resources

DATA_PATH = "/var/lib/postgresql/data"
DEFAULT_POSTGRES_RESOURCES = Resources(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "1Gi"})


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
    container["resources"] = security.resources(meta.resources, DEFAULT_POSTGRES_RESOURCES)
    return dependency_statefulset(cluster, names.POSTGRES, names.postgres(cluster), container, meta.effective_storage,
                                  security.POSTGRES_USER, {"run": "/var/run/postgresql"})


def postgres_service(cluster: Cluster) -> dict[str, Any]:
    """``<name>-postgres``: the ClusterIP Service the nodes' DSN points at."""
    return dependency_service(cluster, names.POSTGRES, names.postgres(cluster), "postgres", names.POSTGRES_PORT)
