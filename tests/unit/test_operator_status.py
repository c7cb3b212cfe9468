"""Status computation: conditions, phase and counts from the children's state (Kubernetes API conventions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from callfs.client import ReplicationInfo
from callfs_operator.spec import Cluster, parse_cluster
from callfs_operator.status import Observed, Problem, Workload, compute, stamp, transitions

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = datetime(2026, 1, 2, 3, 9, 5, tzinfo=UTC)


def cluster(**spec: Any) -> Cluster:
    return parse_cluster("demo", "ns1", {"replicas": 3, **spec})


def sts(replicas: int = 3, ready: int = 3, updated: int | None = None, generation: int = 1, observed: int = 1,
        current: str = "r1", update: str = "r1") -> Workload:
    return Workload(replicas=replicas, ready=ready, updated=replicas if updated is None else updated,
                    generation=generation, observed_generation=observed, current_revision=current,
                    update_revision=update)


ONE = sts(replicas=1, ready=1)


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def summary(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {t: (c["status"], c["reason"]) for t, c in conditions(status).items()}


def test_all_ready_cluster_is_ready_and_running() -> None:
    status = compute(cluster(), 4, Observed(nodes=sts(), metadata=ONE, locks=ONE), now=NOW)
    assert summary(status) == {
        "Ready": ("True", "ClusterReady"), "Progressing": ("False", "Reconciled"),
        "Degraded": ("False", "AsExpected"), "MetadataReady": ("True", "Ready"), "LocksReady": ("True", "Ready"),
        "NodesReady": ("True", "AllNodesReady"),
    }
    assert status["phase"] == "Running"
    assert (status["readyNodes"], status["nodes"]) == (3, "3/3")
    assert status["observedGeneration"] == 4
    assert status["endpoint"] == "http://demo.ns1.svc.cluster.local:8443"


def test_conditions_carry_the_api_convention_fields() -> None:
    status = compute(cluster(), 4, Observed(nodes=sts(), metadata=ONE, locks=ONE), now=NOW)
    for condition in status["conditions"]:
        assert set(condition) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
        assert condition["status"] in ("True", "False")
        assert condition["reason"][0].isupper() and " " not in condition["reason"]
        assert condition["lastTransitionTime"] == "2026-01-02T03:04:05Z"
        assert condition["observedGeneration"] == 4


def test_nothing_created_yet_is_pending_and_progressing() -> None:
    status = compute(cluster(), 1, Observed(nodes=None, metadata=None, locks=None), now=NOW)
    assert status["phase"] == "Pending"
    s = summary(status)
    assert s["Progressing"] == ("True", "Creating")
    assert s["Ready"] == ("False", "MetadataNotReady")
    assert s["NodesReady"] == ("False", "Creating")
    assert status["readyNodes"] == 0


def test_partially_ready_nodes() -> None:
    status = compute(cluster(), 1, Observed(nodes=sts(ready=2), metadata=ONE, locks=ONE), now=NOW)
    s = summary(status)
    assert s["NodesReady"] == ("False", "NodesNotReady")
    assert conditions(status)["NodesReady"]["message"] == "2/3 storage nodes ready"
    assert s["Ready"] == ("False", "NodesNotReady")
    assert s["Progressing"] == ("True", "WaitingForPods")
    assert status["phase"] == "Updating" and status["nodes"] == "2/3"


def test_rolling_update_is_progressing_until_every_node_runs_the_new_revision() -> None:
    rolling = sts(ready=3, updated=1, current="r1", update="r2")
    status = compute(cluster(), 2, Observed(nodes=rolling, metadata=ONE, locks=ONE), now=NOW)
    assert summary(status)["Progressing"] == ("True", "RollingUpdate")
    assert "1/3 storage nodes updated" in conditions(status)["Progressing"]["message"]
    assert summary(status)["NodesReady"][0] == "False"
    done = compute(cluster(), 2, Observed(nodes=sts(current="r2", update="r2"), metadata=ONE, locks=ONE), now=NOW)
    assert summary(done)["Progressing"] == ("False", "Reconciled")


def test_scaling_is_progressing() -> None:
    observed = Observed(nodes=sts(replicas=3, ready=3), metadata=ONE, locks=ONE)
    status = compute(cluster(replicas=5), 3, observed, now=NOW)
    assert summary(status)["Progressing"] == ("True", "Scaling")
    assert status["nodes"] == "3/5"
    unobserved = Observed(nodes=sts(generation=3, observed=2), metadata=ONE, locks=ONE)
    assert summary(compute(cluster(), 3, unobserved, now=NOW))["Progressing"] == ("True", "Applying")


def test_managed_dependency_not_ready() -> None:
    down = sts(replicas=1, ready=0)
    status = compute(cluster(), 1, Observed(nodes=sts(), metadata=down, locks=ONE), now=NOW)
    s = summary(status)
    assert s["MetadataReady"] == ("False", "NotReady")
    assert s["Ready"] == ("False", "MetadataNotReady")
    assert s["LocksReady"] == ("True", "Ready")


def test_external_stores_count_as_ready() -> None:
    spec = {"metadata": {"externalSecret": {"name": "db"}}, "locks": {"externalSecret": {"name": "r"}}}
    status = compute(cluster(**spec), 1, Observed(nodes=sts(), metadata=None, locks=None), now=NOW)
    s = summary(status)
    assert s["MetadataReady"] == ("True", "External") and s["LocksReady"] == ("True", "External")
    assert s["Ready"] == ("True", "ClusterReady")


def test_problems_degrade_and_stop_progress() -> None:
    problems = (Problem("SecretNotFound", "spec.auth.apiKeysSecret: Secret ns1/keys does not exist"),
                Problem("StorageClassNotFound", "spec.storage.storageClassName: StorageClass x does not exist"))
    status = compute(cluster(), 1, Observed(nodes=sts(), metadata=ONE, locks=ONE, problems=problems), now=NOW)
    s = summary(status)
    assert s["Degraded"] == ("True", "SecretNotFound")
    assert conditions(status)["Degraded"]["message"] == "; ".join(p.message for p in problems)
    assert s["Progressing"] == ("False", "SecretNotFound")
    assert s["Ready"] == ("False", "SecretNotFound")
    assert status["phase"] == "Degraded"


def test_blocked_deletion() -> None:
    observed = Observed(nodes=None, metadata=None, locks=None, deletion_blocked="waits for 1 PersistentVolume")
    status = compute(cluster(), 1, observed, now=NOW)
    assert status["phase"] == "Deleting"
    assert summary(status)["Progressing"] == ("False", "DeletionBlocked")
    assert conditions(status)["Progressing"]["message"] == "waits for 1 PersistentVolume"


def test_transition_time_is_kept_while_the_status_holds() -> None:
    observed = Observed(nodes=sts(ready=2), metadata=ONE, locks=ONE)
    first = compute(cluster(), 1, observed, now=NOW)
    second = compute(cluster(), 1, Observed(nodes=sts(), metadata=ONE, locks=ONE), first["conditions"], now=LATER)
    times = {t: c["lastTransitionTime"] for t, c in conditions(second).items()}
    assert times["MetadataReady"] == "2026-01-02T03:04:05Z"  # unchanged: True → True
    assert times["Ready"] == "2026-01-02T03:09:05Z"  # False → True
    assert times["NodesReady"] == "2026-01-02T03:09:05Z"


def test_stamp_uses_utc_z_times() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5).astimezone()
    (stamped,) = stamp([{"type": "Ready", "status": "True", "reason": "R", "message": "m"}], [], 7, local)
    assert stamped["lastTransitionTime"].endswith("Z") and stamped["observedGeneration"] == 7


def test_transitions_report_changed_status_or_reason() -> None:
    before = [{"type": "Ready", "status": "False", "reason": "NodesNotReady"},
              {"type": "Degraded", "status": "False", "reason": "AsExpected"},
              {"type": "Progressing", "status": "True", "reason": "Creating"}]
    after = [{"type": "Ready", "status": "True", "reason": "ClusterReady"},
             {"type": "Degraded", "status": "False", "reason": "AsExpected"},
             {"type": "Progressing", "status": "True", "reason": "RollingUpdate"},
             {"type": "NodesReady", "status": "True", "reason": "AllNodesReady"}]
    assert [c["type"] for c in transitions(before, after)] == ["Ready", "Progressing", "NodesReady"]
    assert transitions(after, after) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"spec": {"replicas": 3}, "metadata": {"generation": 2},
          "status": {"readyReplicas": 2, "updatedReplicas": 3, "observedGeneration": 2, "currentRevision": "a",
                     "updateRevision": "a"}},
         Workload(3, 2, 3, 2, 2, "a", "a")),
        ({"spec": {"replicas": 1}, "metadata": {"generation": 1}}, Workload(1, 0, 0, 1, 0, None, None)),
        ({"spec": {}, "metadata": {}, "status": {"readyReplicas": None}}, Workload(1, 0, 0, 0, 0, None, None)),
    ],
)
def test_workload_from_statefulset(body: dict[str, Any], expected: Workload) -> None:
    assert Workload.from_statefulset(body) == expected


def test_workload_settles_only_when_observed_updated_and_ready() -> None:
    assert sts().settled
    assert not sts(ready=2).settled
    assert not sts(updated=2).settled
    assert not sts(generation=2, observed=1).settled
    assert not sts(current="a", update="b").settled


UP = {"demo-node-0": "up", "demo-node-1": "up", "demo-node-2": "up"}


def test_a_node_reported_down_by_the_cluster_degrades_it_though_its_pod_is_ready() -> None:
    reported = {**UP, "demo-node-1": "down"}
    status = compute(cluster(), 4, Observed(nodes=sts(), metadata=ONE, locks=ONE, reported=reported), now=NOW)
    assert summary(status)["NodesReady"] == ("False", "NodesDown")
    assert summary(status)["Degraded"] == ("True", "NodesDown")
    assert summary(status)["Ready"] == ("False", "NodesNotReady")
    assert summary(status)["Progressing"] == ("False", "Reconciled")  # the children match the spec
    assert "demo-node-1" in conditions(status)["NodesReady"]["message"]
    assert (status["phase"], status["readyNodes"], status["nodes"]) == ("Degraded", 2, "2/3")


def test_a_pod_the_cluster_never_registered_counts_as_down() -> None:
    reported = {"demo-node-0": "up", "demo-node-2": "up", "stale-node": "down"}
    status = compute(cluster(), 4, Observed(nodes=sts(), metadata=ONE, locks=ONE, reported=reported), now=NOW)
    message = conditions(status)["NodesReady"]["message"]
    assert "demo-node-1" in message and "stale-node" not in message and status["readyNodes"] == 2


def test_every_node_reported_up_is_said_in_the_message() -> None:
    status = compute(cluster(), 4, Observed(nodes=sts(), metadata=ONE, locks=ONE, reported=UP), now=NOW)
    assert summary(status)["Ready"] == ("True", "ClusterReady")
    assert "every node up" in conditions(status)["NodesReady"]["message"]


def test_the_nodes_view_is_not_weighed_while_pods_are_still_changing() -> None:
    # The nodes' view lags the pods by a heartbeat: a node pod that just became ready may not be registered.
    starting = Observed(nodes=sts(ready=2), metadata=ONE, locks=ONE, reported={"demo-node-0": "up"})
    status = compute(cluster(), 4, starting, now=NOW)
    assert summary(status)["NodesReady"] == ("False", "NodesNotReady")
    assert summary(status)["Degraded"] == ("False", "AsExpected")
    assert status["readyNodes"] == 2


def test_a_held_scale_down_keeps_a_serving_cluster_running() -> None:
    held = Problem("ScaleDownBlocked", "spec.replicas: scaling from 3 to 2 would remove demo-node-2", blocking=False)
    observed = Observed(nodes=sts(), metadata=ONE, locks=ONE, problems=(held,), target_nodes=3)
    status = compute(cluster(replicas=2), 2, observed, now=NOW)
    s = summary(status)
    assert (status["phase"], status["nodes"], status["readyNodes"]) == ("Running", "3/3", 3)
    assert s["Ready"] == ("True", "ClusterReady") and s["NodesReady"] == ("True", "AllNodesReady")
    assert "spec.replicas is 2: the scale-down is held back" in conditions(status)["NodesReady"]["message"]
    assert s["Degraded"] == ("True", "ScaleDownBlocked") and s["Progressing"] == ("False", "ScaleDownBlocked")
    assert status["message"] == held.message


def test_rolling_update_message_agrees_with_the_counts() -> None:
    rolling = sts(replicas=1, ready=1, updated=0, current="r1", update="r2")
    status = compute(cluster(replicas=1), 2, Observed(nodes=rolling, metadata=ONE, locks=ONE), now=NOW)
    nodes = conditions(status)["NodesReady"]
    assert (nodes["status"], nodes["reason"]) == ("False", "RollingUpdate")
    assert nodes["message"] == ("1/1 storage nodes ready, 0/1 running the new revision "
                                "(rolling update, one node at a time)")
    assert conditions(status)["Ready"]["message"] == nodes["message"]


@pytest.mark.parametrize(("kind", "field"), [("LocksReady", "spec.locks.externalSecret"),
                                             ("MetadataReady", "spec.metadata.externalSecret")])
def test_an_external_store_is_not_ready_while_its_secret_is_missing(kind: str, field: str) -> None:
    spec = {"metadata": {"externalSecret": {"name": "db"}}, "locks": {"externalSecret": {"name": "r"}}}
    missing = Problem("SecretNotFound", f"{field}: Secret ns1/x does not exist", field=field)
    status = compute(cluster(**spec), 1, Observed(nodes=sts(), metadata=None, locks=None, problems=(missing,)),
                     now=NOW)
    c = conditions(status)[kind]
    assert (c["status"], c["reason"], c["message"]) == ("False", "SecretNotFound", missing.message)
    other = "MetadataReady" if kind == "LocksReady" else "LocksReady"
    assert summary(status)[other] == ("True", "External")


def test_faults_degrade_and_explain_not_ready_but_progress_continues() -> None:
    crash = Problem("CrashLoopBackOff", "pod ns1/demo-node-1 container callfs: CrashLoopBackOff, restarted 3 times")
    observed = Observed(nodes=sts(ready=2), metadata=ONE, locks=ONE, faults=(crash,))
    status = compute(cluster(), 1, observed, now=NOW)
    s = summary(status)
    assert s["Degraded"] == ("True", "CrashLoopBackOff") and s["Ready"] == ("False", "CrashLoopBackOff")
    assert crash.message in conditions(status)["Ready"]["message"]
    assert "2/3 storage nodes ready" in conditions(status)["Ready"]["message"]
    assert s["Progressing"] == ("True", "WaitingForPods")
    assert status["phase"] == "Degraded" and status["message"] == crash.message


def test_progress_deadline() -> None:
    waiting = Observed(nodes=sts(ready=2), metadata=ONE, locks=ONE)
    first = compute(cluster(progressDeadlineSeconds=300), 1, waiting, now=NOW)
    assert summary(first)["Progressing"] == ("True", "WaitingForPods")
    # 5 minutes later, exactly at the deadline: still progressing.
    at = compute(cluster(progressDeadlineSeconds=300), 1, waiting, first["conditions"], now=LATER)
    assert summary(at)["Progressing"] == ("True", "WaitingForPods")
    stuck = Observed(nodes=sts(ready=2), metadata=ONE, locks=ONE, waits=("PersistentVolumeClaim ns1/c is Pending",))
    late = compute(cluster(progressDeadlineSeconds=299), 1, stuck, first["conditions"], now=LATER)
    p = conditions(late)["Progressing"]
    assert (p["status"], p["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert p["message"] == ("no progress within spec.progressDeadlineSeconds (299 s): waiting for pods to become "
                            "ready: PersistentVolumeClaim ns1/c is Pending")
    assert summary(late)["Degraded"] == ("True", "ProgressDeadlineExceeded") and late["phase"] == "Degraded"
    # It sticks until progress ends ...
    again = compute(cluster(progressDeadlineSeconds=299), 1, waiting, late["conditions"], now=LATER)
    assert summary(again)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    done = compute(cluster(), 1, Observed(nodes=sts(), metadata=ONE, locks=ONE), late["conditions"], now=LATER)
    assert summary(done)["Progressing"] == ("False", "Reconciled")
    # ... or the spec changes (a new generation restarts the clock).
    newer = compute(cluster(progressDeadlineSeconds=299), 2, waiting, late["conditions"], now=LATER)
    assert summary(newer)["Progressing"] == ("True", "WaitingForPods")


def test_capacity_version_and_message_are_reported() -> None:
    observed = Observed(nodes=sts(), metadata=ONE, locks=ONE, capacity="30Gi", version="0.2.0")
    status = compute(cluster(), 1, observed, now=NOW)
    assert (status["capacity"], status["version"]) == ("30Gi", "0.2.0")
    assert status["message"] == "3 storage nodes serving at http://demo.ns1.svc.cluster.local:8443"
    bare = compute(cluster(), 1, Observed(nodes=None, metadata=None, locks=None), now=NOW)
    assert "capacity" not in bare and "version" not in bare


def test_data_redundant_follows_the_nodes_count_of_block_copies() -> None:
    def redundancy(info: ReplicationInfo | None, spec: dict[str, Any] | None = None) -> tuple[str, str] | None:
        status = compute(cluster(**(spec or {})), 1, Observed(nodes=sts(), metadata=ONE, locks=ONE, replication=info),
                         now=NOW)
        return summary(status).get("DataRedundant")

    assert redundancy(None) is None  # the nodes could not be asked
    assert redundancy(ReplicationInfo("localfs", 2, 0)) == ("True", "Redundant")
    assert redundancy(ReplicationInfo("localfs", 2, 7)) == ("False", "UnderReplicated")
    assert redundancy(ReplicationInfo("localfs", 1, 0)) == ("False", "SingleCopy")
    s3 = {"backend": {"type": "s3", "bucket": "b", "credentialsSecret": "c"}}
    assert redundancy(ReplicationInfo("localfs", 1, 0), s3) == ("True", "ObjectStore")


def test_a_scale_down_waiting_on_drains_is_progress_not_a_problem() -> None:
    message = "draining demo-node-2 (12 blocks, 3 files left) before scaling from 3 to 2 storage nodes"
    observed = Observed(nodes=sts(), metadata=ONE, locks=ONE, target_nodes=3, draining=message)
    status = compute(cluster(replicas=2), 2, observed, now=NOW)
    s = summary(status)
    assert s["Progressing"] == ("True", "Draining") and conditions(status)["Progressing"]["message"] == message
    assert s["Ready"] == ("True", "ClusterReady") and s["Degraded"] == ("False", "AsExpected")
    assert (status["phase"], status["nodes"], status["message"]) == ("Running", "3/3", message)
