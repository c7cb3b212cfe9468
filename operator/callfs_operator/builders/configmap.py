"""The node configuration: a ``callfs server -c`` config file in a ConfigMap.

The file holds everything that is not secret (``node-agent/callfs/config.py`` is the model). Secrets and
per-pod values come in as ``CALLFS_<SECTION>__<KEY>`` variables built by :mod:`.statefulset`, so the same
ConfigMap serves every node and no secret lands in a ConfigMap.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import yaml

from callfs_operator import names
from callfs_operator.spec import Cluster

SHUTDOWN_TIMEOUT = 25.0
"""Seconds a node drains in-flight requests on SIGTERM; under the pod's 30 s termination grace period."""


MAX_WORKERS = 256
"""The node's upper bound on ``server.workers``."""


def cpu_cores(quantity: str | int) -> float:
    """Cores of a Kubernetes CPU quantity (``"500m"`` → 0.5, ``"2"`` → 2.0). Raises ``ValueError`` otherwise."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def node_workers(cluster: Cluster) -> int:
    """Worker processes per node (``server.workers``): the node container's CPU limit, else its CPU request,
    rounded up, between 1 and :data:`MAX_WORKERS` (1 when neither is set). Without it a node would start one
    worker per CPU of the host, whatever the pod may use (memory grows with each worker)."""
    resources = cluster.spec.resources
    cpu = resources.limits.get("cpu", resources.requests.get("cpu"))
    if cpu is None:
        return 1
    try:
        return min(MAX_WORKERS, max(1, math.ceil(cpu_cores(cpu))))
    except ValueError:  # a quantity form not parsed here ("2k"): the API server judges it; one worker is safe
        return 1


def node_config(cluster: Cluster) -> dict[str, Any]:
    """The config file as data (section → settings), before the environment's overrides."""
    spec = cluster.spec
    server: dict[str, Any] = {
        "listen_addr": f"0.0.0.0:{spec.port}",
        # SECURITY: plain HTTP inside the cluster is a choice the user makes by leaving spec.tls unset;
        # the node refuses implicit plain HTTP on a non-loopback address, so say it explicitly.
        "protocol": "http",
        "shutdown_timeout": SHUTDOWN_TIMEOUT,
        "workers": node_workers(cluster),
    }
    if spec.tls is not None:
        server["protocol"] = "https"
        server["cert_file"] = f"{names.TLS_DIR}/tls.crt"
        server["key_file"] = f"{names.TLS_DIR}/tls.key"
    backend: dict[str, Any] = {"default_backend": spec.backend.type}
    if spec.storage.replicas is not None:
        backend["replicas"] = spec.storage.replicas
    if spec.backend.type == "s3":
        backend["s3_bucket_name"] = spec.backend.bucket
        backend["s3_region"] = spec.backend.region
        backend["s3_force_path_style"] = spec.backend.force_path_style
        if spec.backend.endpoint:
            backend["s3_endpoint"] = spec.backend.endpoint
    s3 = {"listen_addr": f"0.0.0.0:{spec.s3_listen_port}"} if spec.s3_listen_port else {}
    # The root user's S3 access key id; its secret comes from the environment (the internal Secret).
    auth = {"s3_credentials": {names.S3_ROOT_ACCESS_KEY_ID: {"user": "root"}}} if spec.s3_listen_port else {}
    return {
        "data_dir": names.DATA_DIR,
        "server": server,
        "s3": s3,
        "auth": auth,
        "log": {"level": spec.log_level, "format": "json"},
        "metrics": {"enabled": True},
        "backend": backend,
        "metadata_store": {"type": "postgres"},
        "dlm": {"type": "redis"},
        "instance_discovery": {"dns_name": names.service_fqdn(cluster, names.headless_service(cluster))},
    }


def config_text(cluster: Cluster) -> str:
    """The config file's YAML text (``yaml.safe_dump``: no value can inject YAML)."""
    return yaml.safe_dump(node_config(cluster), sort_keys=True)


def config_hash(cluster: Cluster) -> str:
    """SHA-256 (hex) of :func:`config_text`; a pod-template annotation, so a config change rolls the nodes."""
    return hashlib.sha256(config_text(cluster).encode()).hexdigest()


def configmap(cluster: Cluster) -> dict[str, Any]:
    """The ``<name>-config`` ConfigMap with the key ``config.yaml``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.config_map(cluster),
            "namespace": cluster.namespace,
            "labels": names.labels(cluster, names.NODE),
        },
        "data": {names.CONFIG_FILE: config_text(cluster)},
    }
