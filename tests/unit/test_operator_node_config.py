"""The node configuration the operator generates is one the storage node accepts.

The ConfigMap's file plus the node container's environment (resolved as the kubelet would, from the Secrets
the builders produce) go through ``callfs.config.load_config``, the function ``callfs server -c`` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callfs.config import ConfigError, load_config
from callfs_operator import container_env
from callfs_operator.builders import children, secrets
from callfs_operator.spec import parse_cluster

POD = "demo-node-1"


def load(tmp_path: Path, spec: dict[str, Any], extra_secrets: dict[str, dict[str, str]] | None = None) -> Any:
    cluster = parse_cluster("demo", "ns1", spec)
    objs = children(cluster, {})
    plain = {o["metadata"]["name"]: secrets.decode(o["data"]) for o in objs if o["kind"] == "Secret"}
    plain.update(extra_secrets or {})
    config_map = next(o for o in objs if o["kind"] == "ConfigMap")
    sts = next(o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "demo-node")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = container_env.resolve(container, {"metadata.name": POD}, plain)
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"])
    return load_config(path, environ=env), plain


def test_generated_config_loads_with_the_generated_secrets(tmp_path: Path) -> None:
    config, plain = load(tmp_path, {})
    assert config.server.listen_addr == "0.0.0.0:8443"
    assert config.server.protocol == "http"
    assert config.server.external_url == f"http://{POD}.demo-nodes.ns1.svc.cluster.local:8443"
    assert config.instance_discovery.instance_id == POD
    assert config.instance_discovery.dns_name == "demo-nodes.ns1.svc.cluster.local"
    assert config.metadata_store.type == "postgres"
    assert config.metadata_store.dsn == plain["demo-postgres"]["dsn"]
    assert config.dlm.type == "redis"
    assert config.dlm.redis_addr == "demo-redis.ns1.svc.cluster.local:6379"
    assert config.dlm.redis_password == plain["demo-redis"]["password"]
    assert config.auth.users_by_key() == {plain["demo-api-key"]["api-key"]: "root"}
    assert config.auth.internal_proxy_secret == plain["demo-internal"]["internal-proxy-secret"]
    assert config.auth.single_use_link_secret == plain["demo-internal"]["single-use-link-secret"]
    assert str(config.data_dir) == "/var/lib/callfs"
    assert config.log.format == "json"


@pytest.mark.parametrize(("resources", "workers"), [
    ({}, 1),
    ({"requests": {"cpu": "250m"}}, 1),
    ({"requests": {"cpu": "1500m"}}, 2),
    ({"requests": {"cpu": "1"}, "limits": {"cpu": "4"}}, 4),
    ({"limits": {"cpu": 3}}, 3),
    ({"limits": {"cpu": "1e3"}}, 256),
    ({"limits": {"cpu": "2k"}}, 1),
])
def test_node_workers_follow_the_pod_cpu_not_the_host(tmp_path: Path, resources: dict[str, Any], workers: int) -> None:
    config, _ = load(tmp_path, {"resources": resources} if resources else {})
    assert config.server.workers == workers


def test_tls_config_loads(tmp_path: Path) -> None:
    config, _ = load(tmp_path, {"tls": {"secretName": "certs"}, "port": 443})
    assert config.server.protocol == "https" and config.uses_tls
    assert config.server.external_url == f"https://{POD}.demo-nodes.ns1.svc.cluster.local:443"


def test_s3_config_loads_with_the_credentials_secret(tmp_path: Path) -> None:
    config, _ = load(
        tmp_path,
        {"backend": {"type": "s3", "bucket": "bk", "endpoint": "http://minio:9000", "credentialsSecret": "s3"}},
        {"s3": {"accessKey": "AKIAEXAMPLE", "secretKey": "very-secret-key"}},
    )
    assert config.backend.default_backend == "s3"
    assert (config.backend.s3_bucket_name, config.backend.s3_endpoint) == ("bk", "http://minio:9000")
    assert (config.backend.s3_access_key, config.backend.s3_secret_key) == ("AKIAEXAMPLE", "very-secret-key")


def test_external_redis_without_password_loads(tmp_path: Path) -> None:
    config, _ = load(
        tmp_path,
        {"metadata": {"externalSecret": {"name": "db"}}, "locks": {"externalSecret": {"name": "rd"}}},
        {"db": {"dsn": "postgresql://u:p@db.example:5432/callfs"}, "rd": {"address": "redis.example:6380"}},
    )
    assert config.metadata_store.dsn == "postgresql://u:p@db.example:5432/callfs"
    assert (config.dlm.redis_addr, config.dlm.redis_password) == ("redis.example:6380", None)


def test_secret_values_are_taken_verbatim(tmp_path: Path) -> None:
    odd = "pass #1: [not, a, list]"
    config, _ = load(tmp_path, {"locks": {"externalSecret": {"name": "rd"}}},
                     {"rd": {"address": "r:6379", "password": odd}})
    assert config.dlm.redis_password == odd


def test_short_user_api_key_is_rejected_by_the_node(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load(tmp_path, {"auth": {"apiKeysSecret": "mine"}}, {"mine": {"api-key": "short"}})


def test_missing_external_secret_key_is_reported(tmp_path: Path) -> None:
    with pytest.raises(container_env.EnvError, match="CALLFS_METADATA_STORE__DSN: Secret db has no key 'dsn'"):
        load(tmp_path, {"metadata": {"externalSecret": {"name": "db"}}}, {"db": {"url": "x"}})


def test_storage_replicas_reach_the_nodes_backend_replicas(tmp_path: Path) -> None:
    config, _ = load(tmp_path, {})
    assert config.backend.replicas is None  # the node's default: 2 in a cluster, 1 alone
    config, _ = load(tmp_path, {"storage": {"size": "1Gi", "replicas": 3}})
    assert config.backend.replicas == 3
    with pytest.raises(ValueError, match="replicas"):
        parse_cluster("demo", "ns1", {"storage": {"replicas": 0}})
