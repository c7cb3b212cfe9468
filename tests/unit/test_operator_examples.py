"""The examples parse into the typed spec and build children (the API server's check is in the e2e suite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from callfs_operator.builders import children
from callfs_operator.spec import parse_cluster

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_are_minimal_and_full_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"minimal.yaml", "full.yaml"}


def cluster_of(path: Path) -> dict[str, Any]:
    """The one CallFSCluster of an example (which may also hold what it needs, e.g. Secrets)."""
    (body,) = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "CallFSCluster"]
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_builds(path: Path) -> None:
    body = cluster_of(path)
    assert (body["apiVersion"], body["kind"]) == ("callfs.io/v1alpha1", "CallFSCluster")
    cluster = parse_cluster(body["metadata"]["name"], "default", body["spec"])
    assert any(o["kind"] == "StatefulSet" for o in children(cluster, {}))


def test_full_example_sets_every_spec_field() -> None:
    crd = yaml.safe_load((EXAMPLES[0].parents[1] / "charts/callfs/crds/callfsclusters.yaml").read_text())
    fields = set(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])
    full = yaml.safe_load(next(p for p in EXAMPLES if p.name == "full.yaml").read_text())
    assert set(full["spec"]) == fields


def test_ha_example_brings_its_own_stores() -> None:
    path = next(p for p in EXAMPLES if p.name == "ha-external.yaml")
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(path.read_text()) if d}
    cluster = parse_cluster("prod-ha", "default", cluster_of(path)["spec"])
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
