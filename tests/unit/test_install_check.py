"""``callfs_operator.install_check`` (the chart's ``helm test``): what counts as up."""

from __future__ import annotations

from types import SimpleNamespace as Obj

from callfs_operator.install_check import daemon_set_problem, deployment_problem


def deployment(available: str | None, reason: str = "MinimumReplicasUnavailable") -> Obj:
    """A read Deployment as the API client returns it (the attributes the check reads)."""
    conditions = [] if available is None else [Obj(type="Available", status=available, reason=reason, message="m")]
    return Obj(status=Obj(conditions=conditions))


def daemon_set(desired: int, ready: int) -> Obj:
    return Obj(status=Obj(desired_number_scheduled=desired, number_ready=ready))


def test_available_deployment_is_up() -> None:
    assert deployment_problem("op", deployment("True")) is None


def test_unavailable_or_missing_deployment_says_why() -> None:
    assert deployment_problem("op", deployment("False")) == (
        "Deployment op: not available (MinimumReplicasUnavailable: m)")
    assert deployment_problem("op", deployment(None)) == "Deployment op: no Available condition yet"
    assert deployment_problem("op", None) == "Deployment op: not found"


def test_daemon_set_is_up_when_ready_on_every_scheduled_node() -> None:
    assert daemon_set_problem("node", daemon_set(3, 3)) is None
    assert daemon_set_problem("node", daemon_set(3, 2)) == "DaemonSet node: 2/3 pods ready"


def test_daemon_set_on_no_node_is_not_up() -> None:
    assert "scheduled to no node" in (daemon_set_problem("node", daemon_set(0, 0)) or "")
    assert daemon_set_problem("node", None) == "DaemonSet node: not found"
