"""Parsing a CallFSCluster spec into the typed model: defaults, and errors that name the field."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import pytest

from callfs_operator.spec import (
    DEFAULT_NODE_IMAGE,
    DEFAULT_POSTGRES_IMAGE,
    DEFAULT_REDIS_IMAGE,
    SpecError,
    parse_cluster,
)


def test_empty_spec_gets_the_crd_defaults() -> None:
    spec = parse_cluster("demo", "ns", {}).spec
    assert spec.replicas == 3
    assert spec.port == 8443
    assert spec.image is None and spec.progress_deadline_seconds == 600
    assert spec.image_pull_policy == "IfNotPresent"
    assert spec.storage.size == "10Gi" and spec.storage.storage_class_name is None
    assert spec.backend.type == "localfs"
    assert spec.metadata.managed and spec.metadata.effective_image == DEFAULT_POSTGRES_IMAGE
    assert spec.metadata.effective_storage.size == "5Gi"
    assert spec.locks.managed and spec.locks.effective_image == DEFAULT_REDIS_IMAGE
    assert spec.tls is None and spec.scheme == "http"
    assert spec.auth.api_keys_secret is None
    assert spec.deletion_policy == "Retain"


def test_none_spec_is_the_empty_spec() -> None:
    assert parse_cluster("demo", "ns", None) == parse_cluster("demo", "ns", {})


def test_camel_case_fields_are_read() -> None:
    spec = parse_cluster(
        "demo",
        "ns",
        {
            "imagePullPolicy": "Always",
            "imagePullSecrets": [{"name": "regcred"}],
            "storage": {"size": "1Ti", "storageClassName": "fast"},
            "nodeSelector": {"disk": "ssd"},
            "deletionPolicy": "Delete",
            "auth": {"apiKeysSecret": "keys"},
            "tls": {"secretName": "certs"},
        },
    ).spec
    assert spec.image_pull_policy == "Always"
    assert spec.image_pull_secrets[0].name == "regcred"
    assert spec.storage.storage_class_name == "fast"
    assert spec.node_selector == {"disk": "ssd"}
    assert spec.deletion_policy == "Delete"
    assert spec.auth.api_keys_secret == "keys"
    assert spec.scheme == "https"


def test_s3_backend_is_parsed() -> None:
    backend = parse_cluster(
        "demo", "ns", {"backend": {"type": "s3", "bucket": "b1", "endpoint": "http://s3:9000",
                                   "credentialsSecret": "s3"}}
    ).spec.backend
    assert (backend.type, backend.bucket, backend.endpoint, backend.credentials_secret) == (
        "s3", "b1", "http://s3:9000", "s3")
    assert backend.region == "us-east-1" and backend.force_path_style


def test_external_stores_are_parsed() -> None:
    spec = parse_cluster(
        "demo", "ns", {"metadata": {"externalSecret": {"name": "db"}},
                       "locks": {"externalSecret": {"name": "rd", "addressKey": "addr"}}}
    ).spec
    assert not spec.metadata.managed and spec.metadata.external_secret is not None
    assert spec.metadata.external_secret.key == "dsn"
    assert spec.locks.external_secret is not None
    assert (spec.locks.external_secret.address_key, spec.locks.external_secret.password_key) == ("addr", "password")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"replicas": 0}, "spec.replicas: Input should be greater than or equal to 1"),
        ({"replicas": 65}, "spec.replicas: Input should be less than or equal to 64"),
        ({"replicas": "three"}, "spec.replicas: Input should be a valid integer"),
        ({"port": 70000}, "spec.port: Input should be less than or equal to 65535"),
        ({"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy: Input should be 'Always', 'IfNotPresent' or 'Never'"),
        ({"storage": {"size": "ten"}}, "spec.storage.size: 'ten' is not a storage quantity"),
        ({"metadata": {"storage": {"size": "-1Gi"}}}, "spec.metadata.storage.size: '-1Gi' is not a storage quantity"),
        ({"backend": {"type": "s3", "credentialsSecret": "s"}}, "spec.backend: bucket is required when type is s3"),
        ({"backend": {"type": "s3", "bucket": "b"}}, "spec.backend: credentialsSecret is required when type is s3"),
        ({"backend": {"bucket": "b"}}, "spec.backend: bucket, endpoint and credentialsSecret are only valid"),
        ({"backend": {"type": "nfs"}}, "spec.backend.type: Input should be 'localfs' or 's3'"),
        ({"metadata": {"externalSecret": {"name": "db"}, "image": "pg"}}, "spec.metadata: externalSecret excludes"),
        ({"locks": {"externalSecret": {"name": "r"}, "storage": {}}}, "spec.locks: externalSecret excludes"),
        ({"metadata": {"externalSecret": {"name": "db"}, "resources": {}}}, "spec.metadata: externalSecret excludes"),
        ({"locks": {"externalSecret": {}}}, "spec.locks.externalSecret.name: Field required"),
        ({"tls": {}}, "spec.tls.secretName: Field required"),
        ({"deletionPolicy": "Orphan"}, "spec.deletionPolicy: Input should be 'Retain' or 'Delete'"),
        ({"replicass": 3}, "spec.replicass: Extra inputs are not permitted"),
    ],
)
def test_invalid_spec_names_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_cluster("demo", "ns", spec)
    assert message in str(info.value)


def test_every_invalid_field_is_reported() -> None:
    with pytest.raises(SpecError) as info:
        parse_cluster("demo", "ns", {"replicas": 0, "port": 0})
    assert "spec.replicas" in str(info.value) and "spec.port" in str(info.value)


@pytest.mark.parametrize("name", ["Demo", "1demo", "demo-", "a" * 41, "de.mo"])
def test_name_must_be_a_short_dns_label(name: str) -> None:
    with pytest.raises(SpecError, match=r"metadata\.name: must be a DNS-1035 label"):
        parse_cluster(name, "ns", {})


def test_forty_character_name_is_accepted() -> None:
    assert parse_cluster("a" * 40, "ns", {}).name == "a" * 40


def test_parsed_spec_is_immutable() -> None:
    cluster = parse_cluster("demo", "ns", {})
    with pytest.raises(ValueError, match="frozen"):
        cluster.spec.replicas = 5  # type: ignore[misc]


def test_node_image_follows_the_operator_unless_pinned() -> None:
    assert f"ghcr.io/callfs/callfs-node:{metadata.version('callfs')}" == DEFAULT_NODE_IMAGE
    assert parse_cluster("demo", "ns", {}).node_image == DEFAULT_NODE_IMAGE
    assert parse_cluster("demo", "ns", {}, default_node_image="reg.example/node:9").node_image == "reg.example/node:9"
    pinned = parse_cluster("demo", "ns", {"image": "reg.example/node:1"}, default_node_image="reg.example/node:9")
    assert pinned.node_image == "reg.example/node:1"
