"""The CallFSCluster CRD: the chart's copy and the manifests' copy agree, and its defaults and enums are the
ones the operator's typed spec assumes."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from callfs_operator import names
from callfs_operator.spec import Backend, ClusterSpec, parse_cluster

REPO = Path(__file__).resolve().parents[2]
CHART_CRD = REPO / "charts" / "callfs" / "crds" / "callfsclusters.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CHART_CRD.read_text())  # type: ignore[no-any-return]


def spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["callfsclusters.yaml", "kopfpeerings.yaml"])
def test_manifests_copy_is_identical_to_the_charts(name: str) -> None:
    chart = REPO / "charts" / "callfs" / "crds" / name
    assert (REPO / "manifests" / "crds" / name).read_bytes() == chart.read_bytes()


def test_peering_resources_are_the_ones_kopf_uses() -> None:
    from kopf._cogs.structs import references

    docs = list(yaml.safe_load_all((REPO / "charts" / "callfs" / "crds" / "kopfpeerings.yaml").read_text()))
    served = {(d["spec"]["group"], d["spec"]["versions"][0]["name"], d["spec"]["names"]["plural"],
               d["spec"]["scope"]) for d in docs}
    expected = {(r.group, r.version, r.any_name, scope) for r, scope in (
        (references.CLUSTER_PEERINGS_K, "Cluster"), (references.NAMESPACED_PEERINGS_K, "Namespaced"))}
    assert served == expected


def test_identity(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == f"{names.PLURAL}.{names.GROUP}"
    assert crd["spec"]["group"] == names.GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == names.KIND
    assert crd["spec"]["names"]["shortNames"] == ["cfs"]
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == (names.VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns(crd: dict[str, Any]) -> None:
    columns = {c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns == {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Nodes": ".status.nodes",
        "Phase": ".status.phase",
        "Capacity": ".status.capacity",
        "Version": ".status.version",
        "Message": ".status.message",
        "Endpoint": ".status.endpoint",
        "Age": ".metadata.creationTimestamp",
    }
    # Every column but the endpoint shows by default; each reads a field the operator writes.
    status_fields = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        assert column.get("priority", 0) == (1 if column["name"] == "Endpoint" else 0)
        if column["jsonPath"].startswith(".status.") and "[" not in column["jsonPath"]:
            assert column["jsonPath"].removeprefix(".status.") in status_fields


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """The API server's defaulting: a missing property with a ``default`` gets it, recursively."""
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = sub["default"]
        if key in out:
            out[key] = apply_defaults(sub, out[key])
    return out


def test_crd_defaults_equal_the_typed_spec_defaults(crd: dict[str, Any]) -> None:
    defaulted = apply_defaults(spec_schema(crd), {})
    assert parse_cluster("demo", "ns", defaulted) == parse_cluster("demo", "ns", {})
    assert defaulted["replicas"] == ClusterSpec().replicas


def test_every_crd_field_is_known_to_the_typed_spec(crd: dict[str, Any]) -> None:
    """A CR using every property the schema allows parses (the typed spec forbids unknown fields)."""
    spec = {
        "replicas": 2, "port": 9443, "s3Port": 9444, "image": "i:1", "imagePullPolicy": "Never",
        "imagePullSecrets": [{"name": "r"}],
        "logLevel": "debug", "clusterDomain": "c.local", "storage": {"size": "1Gi", "storageClassName": "s"},
        "backend": {"type": "s3", "bucket": "bkt", "endpoint": "http://e", "region": "r", "forcePathStyle": False,
                    "credentialsSecret": "c"},
        "metadata": {"image": "pg", "imagePullPolicy": "Always", "storage": {"size": "1Gi"},
                     "resources": {"limits": {"memory": "1Gi"}}},
        "locks": {"externalSecret": {"name": "r", "addressKey": "a", "passwordKey": "p"}},
        "tls": {"secretName": "t"}, "auth": {"apiKeysSecret": "k"}, "resources": {"requests": {"cpu": "1"}},
        "nodeSelector": {"a": "b"}, "tolerations": [{"key": "k"}], "affinity": {}, "deletionPolicy": "Delete",
        "priorityClassName": "p", "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}],
        "progressDeadlineSeconds": 300,
    }
    schema = spec_schema(crd)
    assert set(spec) == set(schema["properties"])
    parse_cluster("demo", "ns", apply_defaults(schema, spec))


@pytest.mark.parametrize(
    ("path", "annotation"),
    [
        (("imagePullPolicy",), ClusterSpec.model_fields["image_pull_policy"].annotation),
        (("logLevel",), ClusterSpec.model_fields["log_level"].annotation),
        (("deletionPolicy",), ClusterSpec.model_fields["deletion_policy"].annotation),
        (("backend", "type"), Backend.model_fields["type"].annotation),
    ],
)
def test_enums_match_the_typed_spec(crd: dict[str, Any], path: tuple[str, ...], annotation: Any) -> None:
    schema = spec_schema(crd)
    for key in path[:-1]:
        schema = schema["properties"][key]
    assert set(schema["properties"][path[-1]]["enum"]) == set(typing.get_args(annotation))


def test_replicas_bounds_match(crd: dict[str, Any]) -> None:
    replicas = spec_schema(crd)["properties"]["replicas"]
    assert (replicas["minimum"], replicas["maximum"]) == (1, 64)


def test_status_conditions_are_a_map_keyed_by_type(crd: dict[str, Any]) -> None:
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == ["type"]
