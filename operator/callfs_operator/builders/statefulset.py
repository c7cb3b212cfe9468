"""The storage nodes' StatefulSet, plus the pieces every StatefulSet of a cluster shares (claim templates,
scheduling constraints, the PVC retention policy).

A node pod runs ``callfs server -c /etc/callfs/config.yaml`` with the ConfigMap of :mod:`.configmap` mounted
there, its PVC at ``/var/lib/callfs``, and its identity and secrets in ``CALLFS_*`` variables:
``instance_discovery.instance_id`` is the pod name, ``server.external_url`` the pod's stable DNS name in the
headless Service. Readiness is ``/ready``, liveness ``/health`` (docs/rest-api.md, "Health").
"""

from __future__ import annotations

from typing import Any

from callfs_operator import names
from callfs_operator.builders import security
from callfs_operator.spec import Cluster, Resources, Storage

DATA_VOLUME = "data"
CONFIG_VOLUME = "config"
TLS_VOLUME = "tls"
TERMINATION_GRACE_SECONDS = 30
DEFAULT_NODE_RESOURCES = Resources(requests={"cpu": "250m", "memory": "512Mi"}, limits={"memory": "2Gi"})
"""A node's resources when ``spec.resources`` sets none."""


def claim_template(cluster: Cluster, component: str, storage: Storage) -> dict[str, Any]:
    """The ``data`` volumeClaimTemplate: one ReadWriteOnce PVC of ``storage.size`` per pod."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name is not None:
        spec["storageClassName"] = storage.storage_class_name
    return {"metadata": {"name": DATA_VOLUME, "labels": names.selector(cluster, component)}, "spec": spec}


def retention_policy(cluster: Cluster) -> dict[str, str]:
    """``persistentVolumeClaimRetentionPolicy`` from ``spec.deletionPolicy``: data PVCs are deleted with the
    StatefulSet only under ``Delete``; scaling down always keeps them (a node scaled back up finds its data)."""
    return {"whenDeleted": cluster.spec.deletion_policy, "whenScaled": "Retain"}


def scheduling(cluster: Cluster) -> dict[str, Any]:
    """The pod-spec fields from ``nodeSelector``, ``tolerations``, ``affinity``, ``priorityClassName`` and
    ``imagePullSecrets`` (every managed pod's)."""
    spec = cluster.spec
    out: dict[str, Any] = {}
    if spec.priority_class_name:
        out["priorityClassName"] = spec.priority_class_name
    if spec.node_selector:
        out["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        out["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.affinity:
        out["affinity"] = dict(spec.affinity)
    if spec.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": ref.name} for ref in spec.image_pull_secrets]
    return out


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def node_env(cluster: Cluster) -> list[dict[str, Any]]:
    """The node container's environment (order matters: ``$(POD_NAME)`` must be defined before its use)."""
    spec = cluster.spec
    headless = names.service_fqdn(cluster, names.headless_service(cluster))
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "CALLFS_INSTANCE_DISCOVERY__INSTANCE_ID", "value": "$(POD_NAME)"},
        {"name": "CALLFS_SERVER__EXTERNAL_URL", "value": f"{spec.scheme}://$(POD_NAME).{headless}:{spec.port}"},
        _secret_env("CALLFS_AUTH__API_KEY_USERS__ROOT", names.api_key_secret(cluster), names.API_KEY),
        _secret_env("CALLFS_AUTH__INTERNAL_PROXY_SECRET", names.internal_secret(cluster), names.INTERNAL_PROXY_SECRET),
        _secret_env("CALLFS_AUTH__SINGLE_USE_LINK_SECRET", names.internal_secret(cluster), names.LINK_SECRET),
    ]
    if spec.s3_listen_port:
        # The root user's S3 secret; its access key id and user are in the ConfigMap.
        key = names.S3_ROOT_ACCESS_KEY_ID.upper()
        env.append(_secret_env(f"CALLFS_AUTH__S3_CREDENTIALS__{key}__SECRET", names.internal_secret(cluster),
                               names.S3_ROOT_SECRET))
    db = spec.metadata.external_secret
    if db is None:
        env.append(_secret_env("CALLFS_METADATA_STORE__DSN", names.postgres(cluster), names.DSN))
    else:
        env.append(_secret_env("CALLFS_METADATA_STORE__DSN", db.name, db.key))
    locks = spec.locks.external_secret
    if locks is None:
        env.append(_secret_env("CALLFS_DLM__REDIS_ADDR", names.redis(cluster), names.ADDRESS))
        env.append(_secret_env("CALLFS_DLM__REDIS_PASSWORD", names.redis(cluster), names.PASSWORD))
    else:
        env.append(_secret_env("CALLFS_DLM__REDIS_ADDR", locks.name, locks.address_key))
        env.append(_secret_env("CALLFS_DLM__REDIS_PASSWORD", locks.name, locks.password_key, optional=True))
    if spec.backend.type == "s3":
        creds = spec.backend.credentials_secret
        assert creds is not None  # the spec model requires it for s3
        env.append(_secret_env("CALLFS_BACKEND__S3_ACCESS_KEY", creds, "accessKey"))
        env.append(_secret_env("CALLFS_BACKEND__S3_SECRET_KEY", creds, "secretKey"))
    return env


def node_container(cluster: Cluster) -> dict[str, Any]:
    """The ``callfs`` container of a node pod."""
    spec = cluster.spec
    scheme = spec.scheme.upper()
    mounts = [
        {"name": CONFIG_VOLUME, "mountPath": names.CONFIG_DIR, "readOnly": True},
        {"name": DATA_VOLUME, "mountPath": names.DATA_DIR},
    ]
    if spec.tls is not None:
        mounts.append({"name": TLS_VOLUME, "mountPath": names.TLS_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": "callfs",
        "image": cluster.node_image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["callfs", "server", "-c", f"{names.CONFIG_DIR}/{names.CONFIG_FILE}"],
        "env": node_env(cluster),
        "ports": [{"name": spec.scheme, "containerPort": spec.port, "protocol": "TCP"}]
        + ([{"name": "s3", "containerPort": spec.s3_listen_port, "protocol": "TCP"}] if spec.s3_listen_port else []),
        "volumeMounts": mounts,
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": spec.scheme, "scheme": scheme},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": spec.scheme, "scheme": scheme},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }
    container["resources"] = security.resources(spec.resources, DEFAULT_NODE_RESOURCES)
    return container


def topology_spread(cluster: Cluster) -> list[dict[str, Any]]:
    """``spec.topologySpreadConstraints`` of the node pods; a constraint without ``labelSelector`` counts the
    cluster's node pods (the usual intent: spread *these* pods)."""
    selector = {"matchLabels": names.selector(cluster, names.NODE)}
    return [{"labelSelector": selector, **c} for c in cluster.spec.topology_spread_constraints]


def nodes_statefulset(cluster: Cluster, config_hash: str, replicas: int | None = None) -> dict[str, Any]:
    """``<name>-node``: ``replicas`` (default ``spec.replicas``) storage nodes, rolled one at a time
    (``RollingUpdate``); the operator passes fewer or more only when it holds back a scale-down.

    ``config_hash`` (see :func:`.configmap.config_hash`) is a pod-template annotation, so a changed config
    rolls the nodes like a changed image does.
    """
    spec = cluster.spec
    volumes: list[dict[str, Any]] = [{"name": CONFIG_VOLUME, "configMap": {"name": names.config_map(cluster)}}]
    if spec.tls is not None:
        volumes.append({"name": TLS_VOLUME, "secret": {"secretName": spec.tls.secret_name}})
    pod_spec: dict[str, Any] = {
        "containers": [node_container(cluster)],
        "volumes": volumes,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "enableServiceLinks": False,
        **scheduling(cluster),
    }
    if spec.topology_spread_constraints:
        pod_spec["topologySpreadConstraints"] = topology_spread(cluster)
    pod_spec = security.harden(pod_spec, security.NODE_USER)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": names.nodes_statefulset(cluster),
            "namespace": cluster.namespace,
            "labels": names.labels(cluster, names.NODE),
        },
        "spec": {
            "replicas": spec.replicas if replicas is None else replicas,
            "serviceName": names.headless_service(cluster),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": retention_policy(cluster),
            "selector": {"matchLabels": names.selector(cluster, names.NODE)},
            "template": {
                "metadata": {
                    "labels": names.labels(cluster, names.NODE),
                    "annotations": {names.CONFIG_HASH_ANNOTATION: config_hash},
                },
                "spec": pod_spec,
            },
            "volumeClaimTemplates": [claim_template(cluster, names.NODE, spec.storage)],
        },
    }
