"""The examples parse into the typed spec and build children (the API server's check is in the e2e suite), and
the full example names everything it refers to: each Secret (with the keys the operator reads) in a
``kubectl create secret`` command of its header, each StorageClass as an object of the file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from callfs_operator.builders import children
from callfs_operator.spec import parse_cluster

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
FULL = next(p for p in EXAMPLES if p.name == "full.yaml")


def callfs_cluster(path: Path) -> dict[str, Any]:
    """The one CallFSCluster of an example file."""
    (body,) = (d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "CallFSCluster")
    return body  # type: ignore[no-any-return]


def header_secrets(path: Path) -> dict[str, tuple[str, set[str]]]:
    """``name -> (type, keys)`` of each ``kubectl create secret`` in the file's leading comment (continued lines
    joined): type generic, tls or docker-registry; keys from ``--from-literal=KEY=`` (tls: tls.crt and tls.key,
    docker-registry: .dockerconfigjson)."""
    header = "".join(line.removeprefix("#").strip() + " " for line in path.read_text().splitlines()
                     if line.startswith("#")).replace("\\ ", "")
    out = {}
    for command in re.findall(r"kubectl create secret (.*?)(?=kubectl |$)", header):
        words = shlex.split(command.split("#")[0])
        kind, name = words[0], words[1]
        keys = {w.split("=", 2)[1] for w in words if w.startswith("--from-literal=")}
        keys |= {"tls": {"tls.crt", "tls.key"}, "docker-registry": {".dockerconfigjson"}}.get(kind, set())
        out[name] = (kind, keys)
    return out


def test_there_are_minimal_and_full_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"minimal.yaml", "full.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_builds(path: Path) -> None:
    body = callfs_cluster(path)
    assert (body["apiVersion"], body["kind"]) == ("callfs.io/v1alpha1", "CallFSCluster")
    cluster = parse_cluster(body["metadata"]["name"], "default", body["spec"])
    assert any(o["kind"] == "StatefulSet" for o in children(cluster, {}))


def test_full_example_sets_every_spec_field() -> None:
    crd = yaml.safe_load((EXAMPLES[0].parents[1] / "charts/callfs/crds/callfsclusters.yaml").read_text())
    fields = set(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])
    assert set(callfs_cluster(FULL)["spec"]) == fields


def test_full_example_creates_every_secret_it_refers_to_with_the_keys_read() -> None:
    spec = callfs_cluster(FULL)["spec"]
    locks = spec["locks"]["externalSecret"]
    wanted = {
        spec["auth"]["apiKeysSecret"]: ("generic", {"api-key"}),
        spec["backend"]["credentialsSecret"]: ("generic", {"accessKey", "secretKey"}),
        locks["name"]: ("generic", {locks["addressKey"], locks["passwordKey"]}),
        spec["tls"]["secretName"]: ("tls", {"tls.crt", "tls.key"}),
        **{ref["name"]: ("docker-registry", {".dockerconfigjson"}) for ref in spec["imagePullSecrets"]},
    }
    assert header_secrets(FULL) == wanted


def test_full_example_defines_the_storage_and_priority_classes_it_names() -> None:
    docs = [d for d in yaml.safe_load_all(FULL.read_text()) if d]
    spec = callfs_cluster(FULL)["spec"]
    named = {spec["storage"]["storageClassName"], spec["metadata"]["storage"]["storageClassName"]}
    defined = {d["metadata"]["name"] for d in docs if d["kind"] == "StorageClass"}
    assert named <= defined
    priority_classes = {d["metadata"]["name"] for d in docs if d["kind"] == "PriorityClass"}
    assert spec["priorityClassName"] in priority_classes


def test_ha_example_brings_its_own_stores() -> None:
    path = next(p for p in EXAMPLES if p.name == "ha-external.yaml")
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(path.read_text()) if d}
    cluster = parse_cluster("prod-ha", "default", callfs_cluster(path)["spec"])
    assert not cluster.spec.metadata.managed and not cluster.spec.locks.managed
    objs = children(cluster, {})
    assert not [o for o in objs if o["metadata"]["name"] in ("prod-ha-postgres", "prod-ha-redis")]
    # The DSN comes from the Secret CloudNativePG writes for the Cluster of the example (<cluster>-app, key uri).
    db = docs[("Cluster", "callfs-db")]
    assert db["apiVersion"] == "postgresql.cnpg.io/v1" and db["spec"]["instances"] >= 3
    external = cluster.spec.metadata.external_secret
    assert external is not None and (external.name, external.key) == ("callfs-db-app", "uri")
    redis = cluster.spec.locks.external_secret
    assert redis is not None and set(docs[("Secret", redis.name)]["stringData"]) == {"address", "password"}
