"""The node rollout's health gate: one node at a time, the next only once the last is healthy."""

from __future__ import annotations

from typing import Any

from callfs_operator.builders import children
from callfs_operator.rollout import TEMPLATE_HASH_ANNOTATION, gated, partition, template_hash
from callfs_operator.spec import parse_cluster


def built(image: str = "reg.example/node:2", replicas: int = 3) -> dict[str, Any]:
    cluster = parse_cluster("demo", "ns1", {"replicas": replicas, "image": image})
    return next(o for o in children(cluster, {}) if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "demo-node")


def live(of: dict[str, Any], at: int, revision: str = "new") -> dict[str, Any]:
    out = gated(of, at)
    return {**out, "status": {"updateRevision": revision, "currentRevision": "old"}}


def pod(ordinal: int, revision: str, ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": f"demo-node-{ordinal}", "labels": {"controller-revision-hash": revision}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_a_new_template_starts_at_the_highest_ordinal() -> None:
    old, new = built("reg.example/node:1"), built("reg.example/node:2")
    assert template_hash(old) != template_hash(new)
    assert partition(new, None, [], None) == 0  # creation: every pod at once
    assert partition(new, live(old, 0), [pod(i, "old") for i in range(3)], None) == 2
    assert gated(new, 2)["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    assert gated(new, 2)["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] == template_hash(new)


def test_the_partition_comes_down_only_past_healthy_updated_nodes() -> None:
    new = built()
    rolling = live(new, 2)
    # demo-node-2 not yet replaced, or replaced but not ready: hold.
    assert partition(new, rolling, [pod(0, "old"), pod(1, "old"), pod(2, "old")], None) == 2
    assert partition(new, rolling, [pod(0, "old"), pod(1, "old"), pod(2, "new", ready=False)], None) == 2
    pods = [pod(0, "old"), pod(1, "old"), pod(2, "new")]
    assert partition(new, rolling, pods, None) == 1
    # When the nodes can be asked, the replaced node must also be reported up.
    assert partition(new, rolling, pods, {"demo-node-2": "down"}) == 2
    assert partition(new, rolling, pods, {"demo-node-2": "up"}) == 1
    # Down to 0, then it stays there.
    assert partition(new, live(new, 1), [pod(0, "old"), pod(1, "new"), pod(2, "new")], None) == 0
    assert partition(new, live(new, 0), [pod(i, "new") for i in range(3)], None) == 0
