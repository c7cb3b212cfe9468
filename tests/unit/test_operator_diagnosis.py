"""Why pods do not run, read from the objects Kubernetes reports it on; capacity and version of a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from callfs_operator.diagnosis import (
    capacity,
    claim_problems,
    create_problems,
    format_quantity,
    image_version,
    pod_problems,
    running_version,
    waits,
)


def claim(name: str, phase: str, size: str = "10Gi", component: str = "node") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if phase == "Bound":
        status["capacity"] = {"storage": size}
    return {"metadata": {"name": name, "namespace": "ns1", "labels": {"app.kubernetes.io/component": component}},
            "spec": {"resources": {"requests": {"storage": size}}}, "status": status}


def event(kind: str, name: str, reason: str, message: str, when: str, type_: str = "Warning") -> dict[str, Any]:
    return {"involvedObject": {"kind": kind, "name": name}, "reason": reason, "message": message, "type": type_,
            "lastTimestamp": when}


def test_a_pending_claim_is_reported_with_its_newest_warning() -> None:
    events = [
        event("PersistentVolumeClaim", "data-demo-node-0", "FailedBinding", "old news", "2026-01-01T00:00:00Z"),
        event("PersistentVolumeClaim", "data-demo-node-0", "ProvisioningFailed",
              'storageclass.storage.k8s.io "fast" not found', "2026-01-01T00:01:00Z"),
        event("PersistentVolumeClaim", "data-demo-node-1", "ProvisioningFailed", "not mine", "2026-01-01T00:01:00Z"),
    ]
    (problem,) = claim_problems([claim("data-demo-node-0", "Pending"), claim("data-demo-node-2", "Bound")], events)
    assert problem.reason == "ClaimPending"
    assert problem.message == ('PersistentVolumeClaim ns1/data-demo-node-0 is Pending: ProvisioningFailed: '
                               'storageclass.storage.k8s.io "fast" not found')


def test_a_claim_pending_without_a_warning_is_not_a_problem() -> None:
    # Still provisioning, or waiting for its pod to be scheduled (WaitForFirstConsumer).
    events = [event("PersistentVolumeClaim", "c", "WaitForFirstConsumer", "waiting", "2026-01-01T00:00:00Z",
                    type_="Normal")]
    assert claim_problems([claim("c", "Pending")], events) == []


def sts(name: str, wanted: int, have: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns1"}, "spec": {"replicas": wanted},
            "status": {"replicas": have}}


def test_pods_the_statefulset_cannot_create_are_reported_verbatim() -> None:
    refusal = ('create Pod demo-node-0 in StatefulSet demo-node failed error: pods "demo-node-0" is forbidden: '
               'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false')
    events = [event("StatefulSet", "demo-node", "SuccessfulCreate", "create Pod demo-node-1", "2026-01-01T00:00:00Z",
                    "Normal"),
              event("StatefulSet", "demo-node", "FailedCreate", refusal, "2026-01-01T00:00:01Z")]
    (problem,) = create_problems([sts("demo-node", 2, 1), sts("demo-redis", 1, 1)], events)
    assert (problem.reason, problem.message) == (
        "FailedCreate", f"StatefulSet ns1/demo-node cannot create pods: {refusal}")
    # Once every pod exists, an old FailedCreate Event no longer counts; nor does one older than a success.
    assert create_problems([sts("demo-node", 2, 2)], events) == []
    later = event("StatefulSet", "demo-node", "SuccessfulCreate", "ok", "2026-01-01T00:00:02Z", "Normal")
    assert create_problems([sts("demo-node", 2, 1)], [*events, later]) == []


def pod(name: str, *statuses: dict[str, Any], conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns1"},
            "spec": {"containers": [{"name": "callfs", "image": "ghcr.io/callfs/callfs-node:0.2.0"}]},
            "status": {"containerStatuses": list(statuses), "conditions": conditions or []}}


def waiting(reason: str, message: str = "", last: dict[str, Any] | None = None, restarts: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "callfs", "ready": False, "restartCount": restarts,
                           "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}}}
    if last:
        out["lastState"] = {"terminated": last}
    return out


RUNNING = {"name": "callfs", "ready": True, "restartCount": 0, "state": {"running": {}}}


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (waiting("CrashLoopBackOff", "back-off 40s restarting failed container", {"reason": "Error", "exitCode": 1},
                 restarts=3),
         "CrashLoopBackOff",
         "pod ns1/demo-node-0 container callfs: CrashLoopBackOff, restarted 3 times, last exit Error (code 1)"),
        (waiting("CrashLoopBackOff", "", {"reason": "OOMKilled", "exitCode": 137}, restarts=2),
         "OOMKilled",
         "pod ns1/demo-node-0 container callfs: CrashLoopBackOff, restarted 2 times, last exit OOMKilled (code 137)"),
        (waiting("ImagePullBackOff", 'Back-off pulling image "ghcr.io/callfs/callfs-node:9"'),
         "ImagePullBackOff",
         "pod ns1/demo-node-0 container callfs: ImagePullBackOff: "
         'Back-off pulling image "ghcr.io/callfs/callfs-node:9"'),
        (waiting("CreateContainerConfigError", 'secret "demo-api-key" not found'),
         "CreateContainerConfigError",
         'pod ns1/demo-node-0 container callfs: CreateContainerConfigError: secret "demo-api-key" not found'),
    ],
)
def test_container_faults_name_the_pod_container_and_cause(status: dict[str, Any], reason: str, message: str) -> None:
    (problem,) = pod_problems([pod("demo-node-0", status), pod("demo-node-1", RUNNING)])
    assert (problem.reason, problem.message) == (reason, message)


def test_starting_containers_and_unschedulable_pods_are_waits_not_faults() -> None:
    assert pod_problems([pod("p", waiting("ContainerCreating"))]) == []
    unschedulable = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": "0/3 nodes are available: 3 Insufficient memory."}]
    assert pod_problems([pod("p", conditions=unschedulable)]) == []
    provisioning = event("PersistentVolumeClaim", "c", "ExternalProvisioning",
                         "Waiting for a volume to be created by the external provisioner 'csi.callfs.io'",
                         "2026-01-01T00:00:00Z", type_="Normal")
    assert waits([claim("c", "Pending"), claim("d", "Bound")], [pod("p", conditions=unschedulable)],
                 [provisioning]) == [
        "PersistentVolumeClaim ns1/c is Pending: ExternalProvisioning: Waiting for a volume to be created by the "
        "external provisioner 'csi.callfs.io'",
        "pod ns1/p cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory."]
    # A claim with a Warning is a fault (claim_problems), not a wait.
    warned = event("PersistentVolumeClaim", "c", "ProvisioningFailed", "boom", "2026-01-01T00:00:01Z")
    assert waits([claim("c", "Pending")], [], [provisioning, warned]) == []


def test_capacity_sums_the_bound_claims() -> None:
    claims = [claim("a", "Bound", "10Gi"), claim("b", "Bound", "10Gi"), claim("c", "Pending", "10Gi"),
              claim("d", "Bound", "512Mi")]
    assert capacity(claims) == "20992Mi"
    assert capacity(claims[:2]) == "20Gi"
    assert capacity([claim("c", "Pending")]) is None
    assert format_quantity(1000) == "1000" and format_quantity(3 << 40) == "3Ti"


def test_version_is_the_image_tag_of_the_ready_nodes() -> None:
    assert image_version("ghcr.io/callfs/callfs-node:0.2.0") == "0.2.0"
    assert image_version("localhost:5000/callfs-node") == "latest"
    assert image_version("ghcr.io/callfs/callfs-node@sha256:0123456789abcdef0123") == "0123456789ab"
    old = pod("demo-node-1", RUNNING)
    old["spec"]["containers"][0]["image"] = "ghcr.io/callfs/callfs-node:0.1.0"
    assert running_version([pod("demo-node-0", RUNNING)]) == "0.2.0"
    assert running_version([pod("demo-node-0", RUNNING), old]) == "0.1.0, 0.2.0"
    assert running_version([pod("demo-node-0", waiting("ContainerCreating"))]) is None
