"""The managed Redis (lock service): a one-replica StatefulSet of the official image and its Service.

Built only when ``spec.locks.externalSecret`` is absent. The password comes from the ``<name>-redis`` Secret
(:func:`.secrets.redis_secret`); append-only persistence on the pod's own PVC.
"""

from __future__ import annotations

from typing import Any

from callfs_operator import names
from callfs_operator.builders.statefulset import DATA_VOLUME, claim_template, retention_policy, scheduling
from callfs_operator.spec import Cluster

DATA_PATH = "/data"
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
    resources = locks.resources.manifest()
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": names.redis(cluster),
            "namespace": cluster.namespace,
            "labels": names.labels(cluster, names.REDIS),
        },
        "spec": {
            "replicas": 1,
            "serviceName": names.redis(cluster),
            "persistentVolumeClaimRetentionPolicy": retention_policy(cluster),
            "selector": {"matchLabels": names.selector(cluster, names.REDIS)},
            "template": {
                "metadata": {"labels": names.labels(cluster, names.REDIS)},
                "spec": {"containers": [container], "enableServiceLinks": False, **scheduling(cluster)},
            },
            "volumeClaimTemplates": [claim_template(cluster, names.REDIS, locks.effective_storage)],
        },
    }


def redis_service(cluster: Cluster) -> dict[str, Any]:
    """``<name>-redis``: the ClusterIP Service the nodes' lock address points at."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.redis(cluster),
            "namespace": cluster.namespace,
            "labels": names.labels(cluster, names.REDIS),
        },
        "spec": {
            "selector": names.selector(cluster, names.REDIS),
            "ports": [{"name": "redis", "port": names.REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
        },
    }
