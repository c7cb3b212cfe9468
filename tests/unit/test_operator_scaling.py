"""Scale-down only when the removed nodes are drained; scale-up and creation always."""

from __future__ import annotations

import pytest

from callfs_operator.scaling import DRAINED_ANNOTATION, drained_nodes, plan
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
