"""Growing a running cluster's storage: claims to expand, shrinks refused, StatefulSets kept applicable."""

from __future__ import annotations

from typing import Any

from callfs_operator.builders import children
from callfs_operator.expansion import Expansion, keep_claim_templates, plan
from callfs_operator.spec import parse_cluster


def claim(name: str, component: str, size: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app.kubernetes.io/component": component}},
            "spec": {"resources": {"requests": {"storage": size}}}}


def test_claims_below_the_spec_size_are_grown() -> None:
    cluster = parse_cluster("demo", "ns1", {"storage": {"size": "20Gi"}, "metadata": {"storage": {"size": "8Gi"}}})
    claims = [claim("data-demo-node-1", "node", "10Gi"), claim("data-demo-node-0", "node", "20Gi"),
              claim("data-demo-postgres-0", "postgres", "5Gi"), claim("data-demo-redis-0", "redis", "5Gi"),
              claim("unrelated", "other", "1Gi")]
    grow, problems = plan(cluster, claims)
    assert grow == [Expansion("data-demo-node-1", "20Gi", "10Gi"), Expansion("data-demo-postgres-0", "8Gi", "5Gi")]
    assert problems == []


def test_a_smaller_spec_never_shrinks_a_claim() -> None:
    cluster = parse_cluster("demo", "ns1", {"storage": {"size": "10Gi"}, "locks": {"externalSecret": {"name": "r"}}})
    grow, (problem,) = plan(cluster, [claim("data-demo-node-0", "node", "20Gi"),
                                      claim("data-demo-redis-0", "redis", "5Gi")])
    assert grow == []
    assert (problem.reason, problem.field, problem.blocking) == ("StorageShrinkRejected", "spec.storage.size", False)
    assert problem.message == ("spec.storage.size: 10Gi is less than the 20Gi PersistentVolumeClaim "
                               "ns1/data-demo-node-0 requests; volumes cannot shrink, the claim keeps 20Gi")


def test_live_statefulsets_keep_their_claim_templates() -> None:
    cluster = parse_cluster("demo", "ns1", {"storage": {"size": "20Gi", "storageClassName": "fast"}})
    objs = children(cluster, {})
    live = {"demo-node": [{"metadata": {"name": "data", "labels": {"a": "b"}},
                           "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                                    "storageClassName": "fast", "resources": {"requests": {"storage": "10Gi"}}},
                           "status": {"phase": "Pending"}}]}
    kept = {o["metadata"]["name"]: o for o in keep_claim_templates(objs, live) if o["kind"] == "StatefulSet"}
    assert kept["demo-node"]["spec"]["volumeClaimTemplates"] == [
        {"metadata": {"name": "data", "labels": {"a": "b"}},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                  "resources": {"requests": {"storage": "10Gi"}}}}]
    # Not created yet: the built template (the spec's size) is used.
    assert kept["demo-postgres"]["spec"]["volumeClaimTemplates"] == next(
        o for o in objs if o["metadata"]["name"] == "demo-postgres" and o["kind"] == "StatefulSet"
    )["spec"]["volumeClaimTemplates"]
    # The rest of the StatefulSet is the built one.
    built = next(o for o in objs if o["metadata"]["name"] == "demo-node" and o["kind"] == "StatefulSet")
    assert kept["demo-node"]["spec"]["template"] == built["spec"]["template"]
