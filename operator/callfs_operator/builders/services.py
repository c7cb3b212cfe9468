"""Services of the storage nodes: a headless one for node identity and peer discovery, and a client one."""

from __future__ import annotations

from typing import Any

from callfs_operator import names
from callfs_operator.spec import Cluster

S3_PORT_NAME = "s3"


def _port(cluster: Cluster) -> dict[str, Any]:
    return {"name": cluster.spec.scheme, "port": cluster.spec.port, "targetPort": cluster.spec.scheme,
            "protocol": "TCP"}


def _client_ports(cluster: Cluster) -> list[dict[str, Any]]:
    """The REST API port, and the S3 port unless ``spec.s3Port`` is 0."""
    ports = [_port(cluster)]
    if cluster.spec.s3_listen_port:
        ports.append({"name": S3_PORT_NAME, "port": cluster.spec.s3_listen_port, "targetPort": S3_PORT_NAME,
                      "protocol": "TCP"})
    return ports


def headless_service(cluster: Cluster) -> dict[str, Any]:
    """``<name>-nodes``: gives each pod the DNS name ``<pod>.<name>-nodes.<ns>.svc.<domain>``, and lists every
    node (ready or not: a starting node must find its peers) under the Service's own name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.headless_service(cluster),
            "namespace": cluster.namespace,
            "labels": names.labels(cluster, names.NODE),
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": names.selector(cluster, names.NODE),
            "ports": [_port(cluster)],
        },
    }


def client_service(cluster: Cluster) -> dict[str, Any]:
    """``<name>``: the ClusterIP Service clients (and the CSI driver) use, REST API and S3 (``spec.s3Port``); only
    ready nodes receive traffic."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.client_service(cluster),
            "namespace": cluster.namespace,
            "labels": names.labels(cluster, names.NODE),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector(cluster, names.NODE),
            "ports": _client_ports(cluster),
        },
    }
