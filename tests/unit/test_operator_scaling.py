"""Scale-down only once the removed nodes are drained (by the nodes, or vouched for); scale-up and creation always."""

from __future__ import annotations

import pytest

from callfs.client import DrainInfo
from callfs_operator.scaling import DRAINED_ANNOTATION, DrainRequests, ReplicaPlan, drained_nodes, plan, requests
from callfs_operator.spec import Cluster, parse_cluster


def cluster(replicas: int) -> Cluster:
    return parse_cluster("demo", "ns1", {"replicas": replicas})


@pytest.mark.parametrize(("desired", "current"), [(3, None), (3, 3), (5, 3), (1, None)])
def test_create_and_scale_up_are_allowed(desired: int, current: int | None) -> None:
    result = plan(cluster(desired), current, ())
    assert (result.replicas, result.problem) == (desired, None)


def test_scale_down_of_undrained_nodes_keeps_the_current_size() -> None:
    result = plan(cluster(2), 4, ())
    assert result.replicas == 4
    assert result.problem is not None and result.problem.reason == "ScaleDownBlocked"
    assert not result.problem.blocking  # the cluster keeps serving on the nodes it has
    assert result.problem.message.startswith("spec.replicas: scaling from 4 to 2 would remove demo-node-2, demo-node-3")
    assert DRAINED_ANNOTATION in result.problem.message


def test_scale_down_waits_for_every_removed_node() -> None:
    result = plan(cluster(2), 4, {"demo-node-3"})
    assert result.replicas == 4
    assert result.problem is not None and "demo-node-2" in result.problem.message
    assert "demo-node-3" not in result.problem.message


def test_scale_down_of_drained_nodes_is_allowed() -> None:
    result = plan(cluster(2), 4, {"demo-node-2", "demo-node-3", "demo-node-0"})
    assert (result.replicas, result.problem) == (2, None)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (None, set()),
        ({}, set()),
        ({DRAINED_ANNOTATION: ""}, set()),
        ({DRAINED_ANNOTATION: "demo-node-2"}, {"demo-node-2"}),
        ({DRAINED_ANNOTATION: " demo-node-2 , demo-node-3,,"}, {"demo-node-2", "demo-node-3"}),
        ({"other": "demo-node-2"}, set()),
    ],
)
def test_drained_nodes_annotation(annotations: dict[str, str] | None, expected: set[str]) -> None:
    assert drained_nodes(annotations) == expected


def progress(pod: str, blocks: int = 0, files: int = 0) -> DrainInfo:
    return DrainInfo(pod, "drained" if blocks == files == 0 else "draining", blocks, files)


def test_requests_drain_the_removed_pods_not_vouched_for_and_keep_the_others() -> None:
    assert requests(cluster(2), 4, {"demo-node-3"}) == DrainRequests(("demo-node-2",), ("demo-node-0", "demo-node-1"))
    every = ("demo-node-0", "demo-node-1", "demo-node-2", "demo-node-3")
    assert requests(cluster(4), 2, ()) == DrainRequests((), every)
    assert requests(cluster(3), 3, ()) == DrainRequests((), ("demo-node-0", "demo-node-1", "demo-node-2"))
    assert requests(cluster(3), None, ()) == DrainRequests((), ())


def test_scale_down_waits_for_the_drains_and_says_what_is_left() -> None:
    drains = {"demo-node-2": progress("demo-node-2", blocks=12, files=3), "demo-node-3": progress("demo-node-3")}
    result = plan(cluster(2), 4, (), drains)
    assert (result.replicas, result.problem) == (4, None)
    assert result.draining == ("draining demo-node-2 (12 blocks, 3 files left) before scaling from 4 to 2 "
                               "storage nodes")


def test_scale_down_happens_once_every_removed_node_is_drained() -> None:
    drains = {"demo-node-2": progress("demo-node-2"), "demo-node-3": progress("demo-node-3")}
    assert plan(cluster(2), 4, (), drains) == ReplicaPlan(2)


def test_a_pod_the_cluster_never_registered_has_nothing_to_drain() -> None:
    assert plan(cluster(2), 3, (), {"demo-node-2": None}) == ReplicaPlan(2)


def test_a_pod_the_nodes_were_not_asked_about_is_not_drained() -> None:
    result = plan(cluster(2), 4, (), {"demo-node-3": progress("demo-node-3")})
    assert result.replicas == 4 and result.draining is not None
    assert "demo-node-2" in result.draining and "demo-node-3" not in result.draining


def test_the_annotation_overrides_a_drain_in_progress() -> None:
    drains = {"demo-node-2": progress("demo-node-2", blocks=5)}
    assert plan(cluster(2), 3, {"demo-node-2"}, drains) == ReplicaPlan(2)


def test_nodes_that_cannot_be_asked_block_the_scale_down() -> None:
    result = plan(cluster(2), 3, (), None)
    assert result.replicas == 3 and result.draining is None
    assert result.problem is not None and result.problem.reason == "ScaleDownBlocked"
    assert "cannot be asked to drain" in result.problem.message
