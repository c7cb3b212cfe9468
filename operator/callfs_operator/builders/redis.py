"""The managed Redis (lock service): a one-replica StatefulSet of the official image and its Service.

Built only when ``spec.locks.externalSecret`` is absent. The password comes from the ``<name>-redis`` Secret
(:func:`.secrets.redis_secret`); append-only persistence on the pod's own PVC.
"""

from __future__ import annotations

from typing import Any

from callfs_operator import names
from callfs_operator.builders import security
from callfs_operator.builders.dependency import dependency_service, dependency_statefulset
from callfs_operator.builders.statefulset import DATA_VOLUME
from callfs_operator.spec import Cluster, Resources

DATA_PATH = "/data"
DEFAULT_REDIS_RESOURCES = Resources(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"})
# The password is read from the environment by the shell, never written into the pod spec.
_SERVE = 'exec redis-server --requirepass "$REDIS_PASSWORD" --appendonly yes --dir /data --port 6379'
_PING = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -p 6379 ping | grep -q PONG'


def redis_statefulset(cluster: Cluster) -> dict[str, Any]:
    """``<name>-redis``; readiness is an authenticated ``PING``."""
    locks = cluster.spec.locks
    container: dict[str, Any] = {
        "name": "redis",
        "image": locks.effective_image,
        "imagePullPolicy": locks.image_pull_policy or cluster.spec.image_pull_policy,
        "command": ["sh", "-c", _SERVE],
        "env": [
            {
                "name": "REDIS_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": names.redis(cluster), "key": names.PASSWORD}},
            }
        ],
        "ports": [{"name": "redis", "containerPort": names.REDIS_PORT, "protocol": "TCP"}],
        "volumeMounts": [{"name": DATA_VOLUME, "mountPath": DATA_PATH}],
        "readinessProbe": {"exec": {"command": ["sh", "-c", _PING]}, "periodSeconds": 5},
        "livenessProbe": {
            "exec": {"command": ["sh", "-c", _PING]},
            "initialDelaySeconds": 15,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }
    container["resources"] = security.resources(locks.resources, DEFAULT_REDIS_RESOURCES)
    return dependency_statefulset(cluster, names.REDIS, names.redis(cluster), container, locks.effective_storage,
                                  security.REDIS_USER)


def redis_service(cluster: Cluster) -> dict[str, Any]:
    """``<name>-redis``: the ClusterIP Service the nodes' lock address points at."""
    return dependency_service(cluster, names.REDIS, names.redis(cluster), "redis", names.REDIS_PORT)
