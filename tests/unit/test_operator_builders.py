"""The pure builders: one CallFSCluster spec → its children's manifests."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
import yaml

from callfs_operator import names
from callfs_operator.builders import children, configmap, pdb, postgres, redis, secrets, services, statefulset
from callfs_operator.spec import Cluster, parse_cluster


def cluster(**spec: Any) -> Cluster:
    return parse_cluster("demo", "ns1", spec)


def counter() -> secrets.Token:
    numbers = itertools.count()
    return lambda: f"generated-token-{next(numbers):04d}"


def by_kind_name(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def env_of(sts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_default_cluster_has_every_child() -> None:
    objs = by_kind_name(children(cluster(), {}, counter()))
    assert set(objs) == {
        ("Secret", "demo-api-key"), ("Secret", "demo-internal"), ("Secret", "demo-postgres"),
        ("Secret", "demo-redis"), ("ConfigMap", "demo-config"), ("Service", "demo-postgres"),
        ("StatefulSet", "demo-postgres"), ("Service", "demo-redis"), ("StatefulSet", "demo-redis"),
        ("Service", "demo-nodes"), ("Service", "demo"), ("StatefulSet", "demo-node"),
        ("PodDisruptionBudget", "demo-node"), ("PodDisruptionBudget", "demo-postgres"),
        ("PodDisruptionBudget", "demo-redis"),
    }


def test_managed_stores_cannot_be_evicted_by_a_drain() -> None:
    objs = by_kind_name(children(cluster(), {}, counter()))
    for component in ("postgres", "redis"):
        budget = objs[("PodDisruptionBudget", f"demo-{component}")]
        assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {
            "app.kubernetes.io/name": "callfs", "app.kubernetes.io/instance": "demo",
            "app.kubernetes.io/component": component}}}
        pods = objs[("StatefulSet", f"demo-{component}")]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()


def test_every_child_is_in_the_clusters_namespace_with_its_labels() -> None:
    for obj in children(cluster(), {}, counter()):
        assert obj["metadata"]["namespace"] == "ns1"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "callfs-operator"


def test_secrets_and_configmap_come_before_the_statefulsets() -> None:
    kinds = [o["kind"] for o in children(cluster(), {}, counter())]
    first_sts = kinds.index("StatefulSet")
    assert "Secret" not in kinds[first_sts:] and "ConfigMap" not in kinds[first_sts:]


def test_children_are_json_serialisable_and_deterministic() -> None:
    a = children(cluster(replicas=5), {}, counter())
    b = children(cluster(replicas=5), {}, counter())
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_external_stores_drop_the_managed_children() -> None:
    objs = by_kind_name(children(cluster(metadata={"externalSecret": {"name": "db"}},
                                         locks={"externalSecret": {"name": "rd"}}), {}, counter()))
    assert not [key for key in objs if key[1] in ("demo-postgres", "demo-redis")]


def test_users_api_key_secret_is_not_built() -> None:
    objs = by_kind_name(children(cluster(auth={"apiKeysSecret": "mine"}), {}, counter()))
    assert ("Secret", "demo-api-key") not in objs and ("Secret", "mine") not in objs
    env = env_of(objs[("StatefulSet", "demo-node")])
    assert env["CALLFS_AUTH__API_KEY_USERS__ROOT"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "api-key"}
    with pytest.raises(ValueError, match="apiKeysSecret"):
        secrets.api_key_secret(cluster(auth={"apiKeysSecret": "mine"}), None)


# --- secrets -------------------------------------------------------------------------------------------------


def test_complete_keeps_existing_values_and_fills_missing_ones() -> None:
    out = secrets.complete({"a": "kept", "b": "", "stray": "x"}, ["a", "b", "c"], counter())
    assert out == {"a": "kept", "b": "generated-token-0000", "c": "generated-token-0001"}


def test_existing_secret_values_are_never_rotated() -> None:
    first = secrets.owned_secrets(cluster(), {}, counter())
    existing = {s["metadata"]["name"]: secrets.decode(s["data"]) for s in first}
    again = secrets.owned_secrets(cluster(), existing, lambda: "a-different-fresh-token")
    assert again == first


def test_the_api_key_secret_advertises_the_endpoint_the_csi_driver_uses() -> None:
    data = secrets.decode(secrets.api_key_secret(cluster(), None, counter())["data"])
    assert data["serverURL"] == "http://demo.ns1.svc.cluster.local:8443"
    assert "ca.crt" not in data


@pytest.mark.parametrize(("tls", "ca"), [({"ca.crt": "CA", "tls.crt": "CERT"}, "CA"), ({"tls.crt": "SELF"}, "SELF")])
def test_a_tls_cluster_api_key_secret_carries_its_https_endpoint_and_ca(tls: dict[str, str], ca: str) -> None:
    tls_cluster = cluster(tls={"secretName": "certs"})
    built = {s["metadata"]["name"]: secrets.decode(s["data"])
             for s in secrets.owned_secrets(tls_cluster, {"certs": tls}, counter())}
    data = built["demo-api-key"]
    assert data["serverURL"] == "https://demo.ns1.svc.cluster.local:8443"
    assert data["ca.crt"] == ca
    assert "certs" not in built  # the TLS Secret is the user's: read, never written


def test_generated_secrets_are_distinct_and_long() -> None:
    values = [secrets.new_token() for _ in range(20)]
    assert len(set(values)) == 20 and min(len(v) for v in values) >= 40


def test_postgres_secret_holds_a_dsn_to_the_managed_service() -> None:
    secret = secrets.postgres_secret(cluster(), {"password": "pw-0123456789abcdef"})
    data = secrets.decode(secret["data"])
    assert data == {
        "password": "pw-0123456789abcdef",
        "dsn": "postgresql://callfs:pw-0123456789abcdef@demo-postgres.ns1.svc.cluster.local:5432/callfs",
    }


def test_redis_secret_holds_the_managed_address() -> None:
    data = secrets.decode(secrets.redis_secret(cluster(clusterDomain="k8s.example"), None, counter())["data"])
    assert data["address"] == "demo-redis.ns1.svc.k8s.example:6379"
    assert data["password"] == "generated-token-0000"


def test_secret_data_is_base64() -> None:
    secret = secrets.internal_secret(cluster(), {"internal-proxy-secret": "é-unicode-secret-value"}, counter())
    assert base64.b64decode(secret["data"]["internal-proxy-secret"]).decode() == "é-unicode-secret-value"
    assert secret["type"] == "Opaque"


# --- configmap -----------------------------------------------------------------------------------------------


def test_config_is_yaml_of_the_node_config() -> None:
    cm = configmap.configmap(cluster())
    assert yaml.safe_load(cm["data"]["config.yaml"]) == configmap.node_config(cluster())


def test_config_listens_on_all_interfaces_with_explicit_http() -> None:
    server = configmap.node_config(cluster(port=9000))["server"]
    assert server["listen_addr"] == "0.0.0.0:9000"
    assert server["protocol"] == "http"
    assert "cert_file" not in server


def test_tls_config_serves_https_from_the_mounted_secret() -> None:
    server = configmap.node_config(cluster(tls={"secretName": "certs"}))["server"]
    assert server["protocol"] == "https"
    assert (server["cert_file"], server["key_file"]) == ("/etc/callfs/tls/tls.crt", "/etc/callfs/tls/tls.key")


def test_config_uses_postgres_redis_and_the_headless_service() -> None:
    config = configmap.node_config(cluster())
    assert config["metadata_store"] == {"type": "postgres"}
    assert config["dlm"] == {"type": "redis"}
    assert config["instance_discovery"] == {"dns_name": "demo-nodes.ns1.svc.cluster.local"}
    assert config["data_dir"] == "/var/lib/callfs"


def test_s3_backend_config() -> None:
    backend = configmap.node_config(cluster(backend={"type": "s3", "bucket": "bk", "endpoint": "http://minio:9000",
                                                    "region": "eu-west-1", "credentialsSecret": "s3"}))["backend"]
    assert backend == {"default_backend": "s3", "s3_bucket_name": "bk", "s3_region": "eu-west-1",
                       "s3_force_path_style": True, "s3_endpoint": "http://minio:9000"}


def test_config_hash_changes_with_the_config_only() -> None:
    assert configmap.config_hash(cluster()) == configmap.config_hash(cluster(replicas=7, image="other:1"))
    assert configmap.config_hash(cluster()) != configmap.config_hash(cluster(logLevel="debug"))


def test_config_values_cannot_inject_yaml() -> None:
    hostile = cluster(backend={"type": "s3", "bucket": "bkt\nserver: {listen_addr: evil}", "credentialsSecret": "s"})
    loaded = yaml.safe_load(configmap.config_text(hostile))
    assert loaded["backend"]["s3_bucket_name"] == "bkt\nserver: {listen_addr: evil}"
    assert loaded["server"]["listen_addr"] == "0.0.0.0:8443"


# --- services ------------------------------------------------------------------------------------------------


def test_headless_service_publishes_not_ready_nodes() -> None:
    svc = services.headless_service(cluster())
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == names.selector(cluster(), "node")


def test_client_service_port_follows_the_scheme() -> None:
    plain = services.client_service(cluster(port=9000))["spec"]["ports"][0]
    tls = services.client_service(cluster(tls={"secretName": "c"}))["spec"]["ports"][0]
    assert (plain["name"], plain["port"]) == ("http", 9000)
    assert tls["name"] == "https"


def test_endpoint_is_the_client_service_url() -> None:
    assert names.endpoint(cluster()) == "http://demo.ns1.svc.cluster.local:8443"
    assert names.endpoint(cluster(tls={"secretName": "c"}, port=443)) == "https://demo.ns1.svc.cluster.local:443"


# --- node statefulset ----------------------------------------------------------------------------------------


def nodes(**spec: Any) -> dict[str, Any]:
    return statefulset.nodes_statefulset(cluster(**spec), "hash-1")


def test_nodes_statefulset_shape() -> None:
    sts = nodes(replicas=4)
    assert sts["spec"]["replicas"] == 4
    assert sts["spec"]["serviceName"] == "demo-nodes"
    assert sts["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert sts["spec"]["selector"]["matchLabels"] == names.selector(cluster(), "node")
    template_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert names.selector(cluster(), "node").items() <= template_labels.items()
    assert sts["spec"]["template"]["metadata"]["annotations"] == {"callfs.io/config-hash": "hash-1"}


def test_node_container_runs_callfs_server_with_the_mounted_config() -> None:
    container = nodes()["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["callfs", "server", "-c", "/etc/callfs/config.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"config": "/etc/callfs", "data": "/var/lib/callfs", "tmp": "/tmp"}
    volumes = nodes()["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "config", "configMap": {"name": "demo-config"}}, {"name": "tmp", "emptyDir": {}}]


def test_node_probes_use_ready_and_health() -> None:
    container = nodes(tls={"secretName": "c"})["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "https", "scheme": "HTTPS"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "https", "scheme": "HTTPS"}


def test_tls_secret_is_mounted() -> None:
    pod = nodes(tls={"secretName": "certs"})["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "certs"}} in pod["volumes"]
    assert {"name": "tls", "mountPath": "/etc/callfs/tls", "readOnly": True} in pod["containers"][0]["volumeMounts"]


def test_node_identity_comes_from_the_pod_name() -> None:
    env = list(env_of(nodes()))
    spec_env = env_of(nodes())
    assert spec_env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert spec_env["CALLFS_INSTANCE_DISCOVERY__INSTANCE_ID"]["value"] == "$(POD_NAME)"
    assert spec_env["CALLFS_SERVER__EXTERNAL_URL"]["value"] == "http://$(POD_NAME).demo-nodes.ns1.svc.cluster.local:8443"
    assert env.index("POD_NAME") < env.index("CALLFS_INSTANCE_DISCOVERY__INSTANCE_ID")


def test_secrets_reach_the_node_only_through_secret_refs() -> None:
    for var in env_of(nodes()).values():
        if var["name"].startswith(("CALLFS_AUTH__", "CALLFS_METADATA_STORE__", "CALLFS_DLM__")):
            assert "secretKeyRef" in var["valueFrom"], var


def test_managed_store_env_points_at_the_managed_secrets() -> None:
    env = env_of(nodes())
    assert env["CALLFS_METADATA_STORE__DSN"]["valueFrom"]["secretKeyRef"] == {"name": "demo-postgres", "key": "dsn"}
    assert env["CALLFS_DLM__REDIS_ADDR"]["valueFrom"]["secretKeyRef"] == {"name": "demo-redis", "key": "address"}
    assert env["CALLFS_DLM__REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "demo-redis", "key": "password"}


def test_external_store_env_points_at_the_users_secrets() -> None:
    env = env_of(nodes(metadata={"externalSecret": {"name": "db", "key": "url"}},
                       locks={"externalSecret": {"name": "rd", "addressKey": "hostport"}}))
    assert env["CALLFS_METADATA_STORE__DSN"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}
    assert env["CALLFS_DLM__REDIS_ADDR"]["valueFrom"]["secretKeyRef"] == {"name": "rd", "key": "hostport"}
    assert env["CALLFS_DLM__REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "rd", "key": "password", "optional": True}


def test_s3_credentials_come_from_the_credentials_secret() -> None:
    env = env_of(nodes(backend={"type": "s3", "bucket": "bk", "credentialsSecret": "s3c"}))
    assert env["CALLFS_BACKEND__S3_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s3c", "key": "accessKey"}
    assert env["CALLFS_BACKEND__S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s3c", "key": "secretKey"}
    assert "CALLFS_BACKEND__S3_ACCESS_KEY" not in env_of(nodes())


def test_claim_template_follows_spec_storage() -> None:
    claim = nodes(storage={"size": "2Ti", "storageClassName": "fast"})["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Ti"}},
                             "storageClassName": "fast"}
    assert "storageClassName" not in nodes()["spec"]["volumeClaimTemplates"][0]["spec"]


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_policy_sets_the_pvc_retention_policy(policy: str) -> None:
    assert nodes(deletionPolicy=policy)["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": policy, "whenScaled": "Retain"}


def test_scheduling_fields_are_passed_through() -> None:
    toleration = {"key": "dedicated", "operator": "Equal", "value": "storage", "effect": "NoSchedule"}
    affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    pod = nodes(nodeSelector={"disk": "ssd"}, tolerations=[toleration], affinity=affinity,
                imagePullSecrets=[{"name": "reg"}])["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [toleration]
    assert pod["affinity"] == affinity
    assert pod["imagePullSecrets"] == [{"name": "reg"}]
    bare = nodes()["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity", "imagePullSecrets"} & set(bare)


def test_resources_are_strings() -> None:
    container = nodes(resources={"requests": {"cpu": 1, "memory": "1Gi"}})["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}}



def managed_pod_specs(**spec: Any) -> dict[str, dict[str, Any]]:
    """The pod template spec of each managed StatefulSet (nodes, PostgreSQL, Redis) by its component label."""
    return {o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]["template"]["spec"]
            for o in children(cluster(**spec), {}, counter()) if o["kind"] == "StatefulSet"}


def test_every_managed_pod_meets_the_restricted_pod_security_profile() -> None:
    specs = managed_pod_specs()
    assert set(specs) == {"node", "postgres", "redis"}
    users = {"node": 65532, "postgres": 70, "redis": 999}
    for component, pod in specs.items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == users[component], component
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
            writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
            assert "/tmp" in writable
            empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            assert {m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"} <= empty_dirs
    postgres_dirs = {m["mountPath"] for m in specs["postgres"]["containers"][0]["volumeMounts"]}
    assert "/var/run/postgresql" in postgres_dirs  # its socket and lock file


def test_managed_pods_get_default_resources_unless_the_spec_sets_them() -> None:
    for component, pod in managed_pod_specs().items():
        resources = pod["containers"][0]["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"], component
        assert resources["limits"]["memory"], component  # Burstable, not BestEffort
    pods = managed_pod_specs(resources={"limits": {"memory": "3Gi"}},
                             metadata={"resources": {"requests": {"memory": "2Gi"}}})
    assert pods["node"]["containers"][0]["resources"] == {"limits": {"memory": "3Gi"}}
    assert pods["postgres"]["containers"][0]["resources"] == {"requests": {"memory": "2Gi"}}


def test_priority_class_goes_to_every_managed_pod_and_spread_to_the_nodes() -> None:
    constraint = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
    pods = managed_pod_specs(priorityClassName="storage", topologySpreadConstraints=[constraint])
    assert {c: p.get("priorityClassName") for c, p in pods.items()} == dict.fromkeys(pods, "storage")
    (spread,) = pods["node"]["topologySpreadConstraints"]
    node_pods = {"app.kubernetes.io/name": "callfs", "app.kubernetes.io/instance": "demo",
                 "app.kubernetes.io/component": "node"}
    assert spread == {**constraint, "labelSelector": {"matchLabels": node_pods}}
    assert "topologySpreadConstraints" not in pods["postgres"]
    assert "priorityClassName" not in managed_pod_specs()["node"]


def test_image_and_pull_policy() -> None:
    container = nodes(image="reg/callfs:2", imagePullPolicy="Always")["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == ("reg/callfs:2", "Always")


# --- postgres / redis / pdb ----------------------------------------------------------------------------------


def test_postgres_statefulset_uses_the_password_secret_and_its_own_pvc() -> None:
    sts = postgres.postgres_statefulset(cluster(metadata={"image": "pg:15", "storage": {"size": "1Gi"}}))
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "pg:15"
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "demo-postgres", "key": "password"}
    assert env["POSTGRES_USER"]["value"] == "callfs" and env["POSTGRES_DB"]["value"] == "callfs"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert sts["spec"]["replicas"] == 1
    assert container["readinessProbe"]["exec"]["command"][0] == "pg_isready"


def test_postgres_service_selects_the_postgres_pod() -> None:
    svc = postgres.postgres_service(cluster())
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "postgres"
    assert svc["spec"]["ports"][0]["port"] == 5432


def test_redis_password_never_appears_in_the_pod_spec() -> None:
    token = "redis-password-that-must-stay-secret"
    objs = by_kind_name(children(cluster(), {"demo-redis": {"password": token}}, counter()))
    assert token not in json.dumps(objs[("StatefulSet", "demo-redis")])
    assert token not in json.dumps(objs[("StatefulSet", "demo-node")])
    assert token not in json.dumps(objs[("ConfigMap", "demo-config")])


def test_redis_statefulset_defaults() -> None:
    sts = redis.redis_statefulset(cluster())
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/library/redis:7-alpine"
    assert "--requirepass" in container["command"][2]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert redis.redis_service(cluster())["spec"]["ports"][0]["port"] == 6379


def test_pdb_allows_one_node_down() -> None:
    budget = pdb.pod_disruption_budget(cluster())
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": names.selector(cluster(), "node")}}


def test_node_replicas_override_holds_the_statefulset_size() -> None:
    objs = by_kind_name(children(cluster(replicas=2), {}, counter(), node_replicas=4))
    assert objs[("StatefulSet", "demo-node")]["spec"]["replicas"] == 4
    assert by_kind_name(children(cluster(replicas=2), {}, counter()))[("StatefulSet", "demo-node")]["spec"][
        "replicas"] == 2


# --- S3 listener -----------------------------------------------------------------------------------------------


def test_s3_listener_is_on_by_default_on_port_9000() -> None:
    config = configmap.node_config(cluster())
    assert config["s3"] == {"listen_addr": "0.0.0.0:9000"}
    assert config["auth"] == {"s3_credentials": {"root": {"user": "root"}}}
    ports = services.client_service(cluster())["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in ports] == [("http", 8443), ("s3", 9000)]
    env = env_of(nodes())
    assert env["CALLFS_AUTH__S3_CREDENTIALS__ROOT__SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "demo-internal", "key": "s3-root-secret-access-key"}


def test_s3_port_moves_aside_from_the_api_port_and_turns_off_with_zero() -> None:
    assert configmap.node_config(cluster(port=9000))["s3"] == {"listen_addr": "0.0.0.0:9001"}
    off = cluster(s3Port=0)
    assert configmap.node_config(off)["s3"] == {}
    assert [p["name"] for p in services.client_service(off)["spec"]["ports"]] == ["http"]
    assert "CALLFS_AUTH__S3_CREDENTIALS__ROOT__SECRET" not in env_of(nodes(s3Port=0))
