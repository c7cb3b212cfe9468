"""What an administrator sees and does once a CallFSCluster runs, on the real control plane: failures surfaced
as conditions naming the object and cause, one Event per transition, and the day-2 changes (credentials kept
with retained data, children pruned, storage grown, nodes following the operator's version).

The operator runs as its console entry point as the chart's ServiceAccount (RBAC of ``manifests/callfs.yaml``),
so every verb these paths need (listing pods and Events, patching claims, deleting children) is proven too.
Faults that need a kubelet (a container crash-looping) are injected at the API server by writing the pod's
status as a kubelet would; kwok leaves a pod's status alone once it is running.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kclient

from callfs_operator.spec import DEFAULT_NODE_IMAGE
from support.kube import KubeCluster
from support.operator import OperatorProcess
from support.waiting import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "charts" / "callfs" / "crds" / "callfsclusters.yaml"
MANIFESTS = REPO / "manifests" / "callfs.yaml"
MINIMAL = REPO / "examples" / "minimal.yaml"
OPERATOR_NAMESPACE = "callfs-system"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
GROUP, VERSION, PLURAL = "callfs.io", "v1alpha1", "callfsclusters"
CONVERGE = 120  # seconds for the operator and the controllers on this 2-core machine
NODE_IMAGE = "ghcr.io/callfs/callfs-node"


@pytest.fixture(scope="module")
def operator_kubeconfig(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CRD applied, and a kubeconfig of the chart's ``callfs-operator`` ServiceAccount."""
    kube_cluster.kubectl("apply", "-f", str(CRD))
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/callfsclusters.callfs.io")
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text())
            if d and d["kind"] in RBAC_KINDS and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
    kube_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([namespace, *docs]))
    path = tmp_path_factory.mktemp("operator-status-identity") / "kubeconfig"
    return kube_cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, "callfs-operator", path)


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    running = OperatorProcess(operator_kubeconfig, tmp_path_factory.mktemp("operator-status") / "operator.log",
                              extra=("--no-node-probe",))
    running.start(2.0)
    try:
        yield running
    finally:
        running.stop()


def make_class(api: kclient.ApiClient, name: str, volumes: int, provisioner: str = "kubernetes.io/no-provisioner",
               expandable: bool = False) -> None:
    storage, core = kclient.StorageV1Api(api), kclient.CoreV1Api(api)
    storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                  "metadata": {"name": name}, "provisioner": provisioner,
                                  "volumeBindingMode": "Immediate", "allowVolumeExpansion": expandable})
    for i in range(volumes):
        core.create_persistent_volume({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{name}-{i}"},
            "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": name,
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/{name}-{i}"}},
        })


def drop_class(api: kclient.ApiClient, name: str, volumes: int) -> None:
    core = kclient.CoreV1Api(api)
    for i in range(volumes):
        core.delete_persistent_volume(f"{name}-{i}")
    kclient.StorageV1Api(api).delete_storage_class(name)


@pytest.fixture
def storage_class(kube_api: kclient.ApiClient, kube_namespace: str) -> Iterator[str]:
    """A StorageClass allowing volume expansion, with 8 pre-created 20Gi PersistentVolumes."""
    name = f"st-{kube_namespace}"
    make_class(kube_api, name, 8, expandable=True)
    try:
        yield name
    finally:
        drop_class(kube_api, name, 8)


def body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CallFSCluster", "metadata": {"name": name}, "spec": spec}


def storage_spec(storage_class: str) -> dict[str, Any]:
    claim = {"size": "1Gi", "storageClassName": storage_class}
    return {"storage": claim, "metadata": {"storage": claim}, "locks": {"storage": claim}}


def get(api: kclient.ApiClient, namespace: str, name: str = "demo") -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = kclient.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name)
    except kclient.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    found = [c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == kind]
    return found[0] if found else {}


def wait_condition(api: kclient.ApiClient, namespace: str, kind: str, status: str, reason: str | None = None,
                   name: str = "demo", timeout: float = CONVERGE) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(api, namespace, name)
        c = condition(obj, kind)
        return obj if c.get("status") == status and (reason is None or c.get("reason") == reason) else None

    try:
        return wait_for(check, timeout, f"{kind}={status} ({reason}) on {namespace}/{name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstatus: {json.dumps((get(api, namespace, name) or {}).get('status'))}"
                             ) from None


def create(api: kclient.ApiClient, namespace: str, obj: dict[str, Any]) -> None:
    kclient.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj)


def patch_spec(api: kclient.ApiClient, namespace: str, spec: dict[str, Any]) -> None:
    kclient.CustomObjectsApi(api).patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "demo",
                                                                 {"spec": spec})


def cluster_events(api: kclient.ApiClient, namespace: str) -> list[dict[str, Any]]:
    """The Events on CallFSClusters in ``namespace``, oldest first (by their microsecond ``eventTime``)."""
    events = api.sanitize_for_serialization(kclient.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="involvedObject.kind=CallFSCluster").items)
    return sorted(events, key=lambda e: str(e.get("eventTime") or e.get("firstTimestamp")))


def wait_event(api: kclient.ApiClient, namespace: str, reason: str) -> dict[str, Any]:
    return wait_for(lambda: next((e for e in cluster_events(api, namespace) if e["reason"] == reason), None),
                    CONVERGE, f"an Event with reason {reason}")


@pytest.fixture
def ready(kube_api: kclient.ApiClient, kube_namespace: str, storage_class: str, operator: OperatorProcess
          ) -> Callable[..., dict[str, Any]]:
    def make(**spec: Any) -> dict[str, Any]:
        create(kube_api, kube_namespace, body("demo", **{"replicas": 1, **storage_spec(storage_class), **spec}))
        return wait_condition(kube_api, kube_namespace, "Ready", "True")

    return make


# -- failures surfaced -------------------------------------------------------------------------------------------


def test_a_claim_that_cannot_be_provisioned_is_named_with_its_cause(
    kube_api: kclient.ApiClient, kube_namespace: str, operator: OperatorProcess
) -> None:
    name = f"empty-{kube_namespace}"
    make_class(kube_api, name, 0)
    try:
        claim = {"size": "1Gi", "storageClassName": name}
        create(kube_api, kube_namespace, body("demo", replicas=1, storage=claim))
        obj = wait_condition(kube_api, kube_namespace, "Degraded", "True", "ClaimPending")
        message = condition(obj, "Degraded")["message"]
        assert (f"PersistentVolumeClaim {kube_namespace}/data-demo-node-0 is Pending: ProvisioningFailed: "
                "no volume plugin matched name: kubernetes.io/no-provisioner") in message
        assert condition(obj, "Ready")["status"] == "False" and obj["status"]["phase"] == "Degraded"
        assert message in obj["status"]["message"]
        event = wait_event(kube_api, kube_namespace, "ClaimPending")
        assert event["type"] == "Warning" and event["reportingComponent"] == "callfs-operator"
    finally:
        drop_class(kube_api, name, 0)


def test_a_claim_waiting_past_the_progress_deadline_stops_progress(
    kube_api: kclient.ApiClient, kube_namespace: str, operator: OperatorProcess
) -> None:
    name = f"ext-{kube_namespace}"
    make_class(kube_api, name, 0, provisioner="example.com/not-running")
    try:
        claim = {"size": "1Gi", "storageClassName": name}
        create(kube_api, kube_namespace, body("demo", replicas=1, storage=claim, progressDeadlineSeconds=5))
        obj = wait_condition(kube_api, kube_namespace, "Progressing", "False", "ProgressDeadlineExceeded")
        message = condition(obj, "Progressing")["message"]
        assert message.startswith("no progress within spec.progressDeadlineSeconds (5 s): ")
        assert (f"PersistentVolumeClaim {kube_namespace}/data-demo-node-0 is Pending: ExternalProvisioning: "
                "Waiting for a volume to be created either by the external provisioner 'example.com/not-running'"
                ) in message
        assert condition(obj, "Degraded")["reason"] == "ProgressDeadlineExceeded"
        wait_event(kube_api, kube_namespace, "ProgressDeadlineExceeded")
    finally:
        drop_class(kube_api, name, 0)


def test_pods_refused_at_creation_are_reported_with_the_api_servers_reason(
    kube_api: kclient.ApiClient, kube_namespace: str, storage_class: str, operator: OperatorProcess
) -> None:
    core = kclient.CoreV1Api(kube_api)
    core.create_namespaced_resource_quota(kube_namespace, {"metadata": {"name": "no-pods"},
                                                           "spec": {"hard": {"pods": "0"}}})
    create(kube_api, kube_namespace, body("demo", replicas=1, **storage_spec(storage_class)))
    obj = wait_condition(kube_api, kube_namespace, "Degraded", "True", "FailedCreate")
    message = condition(obj, "Degraded")["message"]
    assert f"StatefulSet {kube_namespace}/demo-" in message and "cannot create pods" in message
    assert "exceeded quota: no-pods" in message
    assert condition(obj, "Ready")["reason"] == "FailedCreate"
    # Lifting the quota heals the cluster (the StatefulSet controller retries).
    core.delete_namespaced_resource_quota("no-pods", kube_namespace)
    wait_condition(kube_api, kube_namespace, "Ready", "True")
    wait_condition(kube_api, kube_namespace, "Degraded", "False", "AsExpected")


def test_a_crash_looping_node_pod_is_reported(
    kube_api: kclient.ApiClient, kube_namespace: str, ready: Callable[..., dict[str, Any]]
) -> None:
    ready()
    core = kclient.CoreV1Api(kube_api)
    pod = core.read_namespaced_pod("demo-node-0", kube_namespace)
    # What a kubelet writes for a container that keeps exiting.
    crash = {"status": {
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                       {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"}],
        "containerStatuses": [{
            "name": "callfs", "image": pod.spec.containers[0].image, "imageID": "", "ready": False,
            "restartCount": 4, "started": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": "back-off 1m20s restarting failed container=callfs"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 2,
                                         "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z"}},
        }],
    }}
    core.patch_namespaced_pod_status("demo-node-0", kube_namespace, crash)
    obj = wait_condition(kube_api, kube_namespace, "Degraded", "True", "CrashLoopBackOff")
    assert condition(obj, "Degraded")["message"] == (
        f"pod {kube_namespace}/demo-node-0 container callfs: CrashLoopBackOff, restarted 4 times, last exit Error "
        "(code 2)")
    # Ready follows once the StatefulSet controller has counted the pod as not ready (its own pace).
    obj = wait_condition(kube_api, kube_namespace, "Ready", "False", "CrashLoopBackOff")
    assert obj["status"]["phase"] == "Degraded"
    event = wait_event(kube_api, kube_namespace, "CrashLoopBackOff")
    assert event["type"] == "Warning"


# -- messages, events, printer columns ---------------------------------------------------------------------------


def test_external_stores_are_ready_only_when_their_secret_exists(
    kube_api: kclient.ApiClient, kube_namespace: str, storage_class: str, operator: OperatorProcess
) -> None:
    spec = storage_spec(storage_class)
    spec["locks"] = {"externalSecret": {"name": "my-redis"}}
    create(kube_api, kube_namespace, body("demo", replicas=1, **spec))
    obj = wait_condition(kube_api, kube_namespace, "LocksReady", "False", "SecretNotFound")
    assert condition(obj, "LocksReady")["message"] == (
        f"spec.locks.externalSecret: Secret {kube_namespace}/my-redis does not exist")
    kclient.CoreV1Api(kube_api).create_namespaced_secret(kube_namespace, {
        "metadata": {"name": "my-redis"}, "stringData": {"address": "redis.example:6379"}})
    obj = wait_condition(kube_api, kube_namespace, "LocksReady", "True", "External")
    assert "spec.locks.externalSecret" in condition(obj, "LocksReady")["message"]


def test_minimal_example_reports_each_transition_once(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", str(MINIMAL))
    wait_condition(kube_api, kube_namespace, "Ready", "True")
    wait_for(lambda: any(e["reason"] == "ClusterReady" for e in cluster_events(kube_api, kube_namespace)),
             CONVERGE, "the ClusterReady Event")
    # Let several resyncs (2 s) and child refreshes pass: none may report a transition again.
    time.sleep(8)
    events = cluster_events(kube_api, kube_namespace)
    assert all(e["reportingComponent"] == "callfs-operator" and e["source"]["component"] == "callfs-operator"
               for e in events)
    assert all((e.get("count") or 1) == 1 for e in events), [(e["reason"], e.get("count")) for e in events]
    history: dict[str, list[tuple[str, str]]] = {}
    for e in events:
        kind, _, rest = e["message"].partition("=")
        history.setdefault(kind, []).append((rest.split(":", 1)[0], e["reason"]))
    for kind, changes in history.items():
        # Each Event is a change: never twice the same (status, reason) in a row, never back to an earlier status.
        assert all(a != b for a, b in itertools.pairwise(changes)), (kind, changes)
        statuses = [s for i, (s, _) in enumerate(changes) if i == 0 or changes[i - 1][0] != s]
        assert len(statuses) == len(set(statuses)), (kind, changes)
    obj = get(kube_api, kube_namespace)
    for kind, changes in history.items():
        c = condition(obj, kind)
        assert changes[-1] == (c["status"], c["reason"]), (kind, changes, c)
    # A handful per condition (each moving forward only, checked above), against 22 with repeats and flapping
    # before events were tied to real transitions.
    assert len(events) <= 16, [(e["reason"], e["message"]) for e in events]


def test_printer_columns_show_phase_capacity_version_and_message(
    kube_cluster: KubeCluster, kube_namespace: str, ready: Callable[..., dict[str, Any]]
) -> None:
    obj = ready(replicas=2)
    # Two node claims, each bound to a 20Gi volume.
    assert obj["status"]["capacity"] == "40Gi"
    assert obj["status"]["version"] == DEFAULT_NODE_IMAGE.rsplit(":", 1)[1]
    table = kube_cluster.kubectl("get", "cfs", "demo", "-n", kube_namespace)
    header, row = table.splitlines()
    assert header.split() == ["NAME", "READY", "NODES", "PHASE", "CAPACITY", "VERSION", "AGE", "MESSAGE"]
    cells = row.split()
    assert cells[:6] == ["demo", "True", "2/2", "Running", "40Gi", obj["status"]["version"]]
    assert row.rstrip().endswith(f"2 storage nodes serving at http://demo.{kube_namespace}.svc.cluster.local:8443")


def test_a_held_scale_down_shows_a_serving_cluster(
    kube_api: kclient.ApiClient, kube_namespace: str, ready: Callable[..., dict[str, Any]]
) -> None:
    ready(replicas=2)
    patch_spec(kube_api, kube_namespace, {"replicas": 1})
    obj = wait_condition(kube_api, kube_namespace, "Degraded", "True", "ScaleDownBlocked")
    obj = wait_condition(kube_api, kube_namespace, "Ready", "True")
    assert (obj["status"]["phase"], obj["status"]["nodes"]) == ("Running", "2/2")
    assert "spec.replicas is 1: the scale-down is held back" in condition(obj, "NodesReady")["message"]
    assert "would remove demo-node-1" in obj["status"]["message"]


# -- day 2 -------------------------------------------------------------------------------------------------------


SECRETS = ("demo-api-key", "demo-internal", "demo-postgres", "demo-redis")


def test_retained_data_keeps_its_credentials(
    kube_api: kclient.ApiClient, kube_namespace: str, ready: Callable[..., dict[str, Any]]
) -> None:
    ready(deletionPolicy="Retain")
    core, apps = kclient.CoreV1Api(kube_api), kclient.AppsV1Api(kube_api)
    before = {s: core.read_namespaced_secret(s, kube_namespace) for s in SECRETS}
    assert all(not s.metadata.owner_references for s in before.values())
    kclient.CustomObjectsApi(kube_api).delete_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "demo")
    wait_for(lambda: get(kube_api, kube_namespace) is None, CONVERGE, "the CallFSCluster gone")
    wait_for(lambda: not apps.list_namespaced_stateful_set(kube_namespace).items, CONVERGE,
             "the StatefulSets garbage-collected")
    for name, secret in before.items():
        assert core.read_namespaced_secret(name, kube_namespace).data == secret.data, name
    # The same cluster again: it finds its data and the credentials that open it.
    obj = ready(deletionPolicy="Retain")
    assert obj["status"]["phase"] == "Running"
    for name, secret in before.items():
        assert core.read_namespaced_secret(name, kube_namespace).data == secret.data, name
    claims = {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(kube_namespace).items}
    assert {"data-demo-node-0", "data-demo-postgres-0", "data-demo-redis-0"} <= claims


def test_deletion_policy_delete_owns_the_secrets(
    kube_api: kclient.ApiClient, kube_namespace: str, ready: Callable[..., dict[str, Any]]
) -> None:
    obj = ready(deletionPolicy="Delete")
    core = kclient.CoreV1Api(kube_api)
    for name in SECRETS:
        refs = core.read_namespaced_secret(name, kube_namespace).metadata.owner_references or []
        assert [(r.kind, r.uid) for r in refs] == [("CallFSCluster", obj["metadata"]["uid"])], name


def test_switching_to_an_external_database_prunes_the_managed_one(
    kube_api: kclient.ApiClient, kube_namespace: str, ready: Callable[..., dict[str, Any]]
) -> None:
    ready()
    core, apps = kclient.CoreV1Api(kube_api), kclient.AppsV1Api(kube_api)
    dsn = core.read_namespaced_secret("demo-postgres", kube_namespace).data["dsn"]
    core.create_namespaced_secret(kube_namespace, {"metadata": {"name": "db"}, "data": {"dsn": dsn}})
    patch_spec(kube_api, kube_namespace, {"metadata": {"storage": None, "externalSecret": {"name": "db"}}})

    def pruned() -> bool:
        try:
            apps.read_namespaced_stateful_set("demo-postgres", kube_namespace)
        except kclient.ApiException as exc:
            if exc.status == 404:
                return not [s for s in core.list_namespaced_service(kube_namespace).items
                            if s.metadata.name == "demo-postgres"]
            raise
        return False

    wait_for(pruned, CONVERGE, "the managed PostgreSQL StatefulSet and Service deleted")
    event = wait_event(kube_api, kube_namespace, "Pruned")
    assert event["message"] == (
        "deleted StatefulSet demo-postgres, Service demo-postgres, PodDisruptionBudget demo-postgres, which the spec "
        "no longer wants; kept Secret demo-postgres (deletionPolicy Retain keeps the credentials of retained data); "
        "their PersistentVolumeClaims are retained (deletionPolicy Retain)")
    # deletionPolicy Retain (the default): the database's data and its password stay.
    core.read_namespaced_secret("demo-postgres", kube_namespace)
    core.read_namespaced_persistent_volume_claim("data-demo-postgres-0", kube_namespace)
    wait_condition(kube_api, kube_namespace, "MetadataReady", "True", "External")
    # The nodes roll to the new DSN, then serve again.
    wait_condition(kube_api, kube_namespace, "Ready", "True")


def test_growing_storage_expands_the_claims(
    kube_api: kclient.ApiClient, kube_namespace: str, ready: Callable[..., dict[str, Any]]
) -> None:
    ready()
    core, apps = kclient.CoreV1Api(kube_api), kclient.AppsV1Api(kube_api)
    patch_spec(kube_api, kube_namespace, {"storage": {"size": "2Gi"}, "metadata": {"storage": {"size": "3Gi"}}})

    def requested() -> dict[str, str]:
        return {c.metadata.name: c.spec.resources.requests["storage"]
                for c in core.list_namespaced_persistent_volume_claim(kube_namespace).items}

    wanted = {"data-demo-node-0": "2Gi", "data-demo-postgres-0": "3Gi", "data-demo-redis-0": "1Gi"}
    wait_for(lambda: requested() == wanted, CONVERGE, f"claims requesting {wanted}")
    # The StatefulSet keeps the claim template it was created with (immutable), and still applies.
    sts = apps.read_namespaced_stateful_set("demo-node", kube_namespace)
    assert sts.spec.volume_claim_templates[0].spec.resources.requests["storage"] == "1Gi"
    assert wait_event(kube_api, kube_namespace, "ClaimExpanding")["message"].startswith(
        "PersistentVolumeClaim data-demo-")
    # Degraded was already False before the patch: wait for the status that reports the new generation.

    def settled() -> dict[str, Any] | None:
        obj = wait_condition(kube_api, kube_namespace, "Degraded", "False")
        return obj if obj["status"].get("observedGeneration") == obj["metadata"]["generation"] else None

    wait_for(settled, CONVERGE, "Degraded=False at the patched generation")


def test_nodes_follow_the_operators_image_unless_pinned(
    kube_api: kclient.ApiClient, kube_namespace: str, ready: Callable[..., dict[str, Any]], operator: OperatorProcess
) -> None:
    obj = ready()
    assert "image" not in obj["spec"]  # the CRD writes no default image into the resource
    apps = kclient.AppsV1Api(kube_api)
    assert apps.read_namespaced_stateful_set("demo-node", kube_namespace).spec.template.spec.containers[0].image \
        == DEFAULT_NODE_IMAGE
    # An operator upgrade (here: its --node-image) rolls the nodes to its version; status.version follows.
    operator.stop()
    operator.extra = (*operator.extra, "--node-image", f"{NODE_IMAGE}:9.9.9")
    try:
        operator.start()

        def upgraded() -> dict[str, Any] | None:
            current = get(kube_api, kube_namespace)
            return current if (current or {}).get("status", {}).get("version") == "9.9.9" else None

        wait_for(upgraded, CONVERGE, "status.version 9.9.9")
        wait_condition(kube_api, kube_namespace, "Ready", "True")
        # A pinned image stays where it is.
        patch_spec(kube_api, kube_namespace, {"image": f"{NODE_IMAGE}:1.2.3"})
        wait_for(lambda: (get(kube_api, kube_namespace) or {}).get("status", {}).get("version") == "1.2.3",
                 CONVERGE, "status.version 1.2.3")
    finally:
        operator.stop()
        operator.extra = tuple(a for a in operator.extra if a not in ("--node-image", f"{NODE_IMAGE}:9.9.9"))
        operator.start()


def test_a_rollout_holds_at_a_node_that_does_not_become_healthy(
    kube_api: kclient.ApiClient, kube_namespace: str, ready: Callable[..., dict[str, Any]]
) -> None:
    ready(replicas=2)
    apps, core = kclient.AppsV1Api(kube_api), kclient.CoreV1Api(kube_api)
    old = core.read_namespaced_pod("demo-node-0", kube_namespace).spec.containers[0]
    old_image, old_requests = old.image, old.resources.requests  # the operator's default resources
    # The new node template fits on no node: demo-node-1 is replaced first and never becomes ready.
    patch_spec(kube_api, kube_namespace, {"resources": {"requests": {"cpu": "1000"}}})

    def held() -> bool:
        sts = apps.read_namespaced_stateful_set("demo-node", kube_namespace)
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(kube_namespace).items}
        return bool(sts.spec.update_strategy.rolling_update.partition == 1 and "demo-node-1" in pods
                    and pods["demo-node-1"].spec.containers[0].resources.requests != old_requests)

    wait_for(held, CONVERGE, "the rollout started at demo-node-1 with partition 1")
    wait_for(lambda: "cannot be scheduled" in condition(get(kube_api, kube_namespace), "Progressing").get(
        "message", ""), CONVERGE, "Progressing saying why the rollout waits")
    assert condition(get(kube_api, kube_namespace), "Progressing")["reason"] == "RollingUpdate"
    time.sleep(6)  # three resyncs: the partition stays, demo-node-0 is untouched
    assert apps.read_namespaced_stateful_set("demo-node", kube_namespace).spec.update_strategy.rolling_update \
        .partition == 1
    node0 = core.read_namespaced_pod("demo-node-0", kube_namespace)
    assert node0.spec.containers[0].image == old_image and node0.spec.containers[0].resources.requests == old_requests
    # Undo, and replace the stuck pod (a StatefulSet does not replace a pod that never became ready).
    patch_spec(kube_api, kube_namespace, {"resources": None})
    wait_for(lambda: apps.read_namespaced_stateful_set("demo-node", kube_namespace).spec.template.spec
             .containers[0].resources.requests == old_requests, CONVERGE, "the template reverted")
    try:
        core.delete_namespaced_pod("demo-node-1", kube_namespace)
    except kclient.ApiException as exc:  # the StatefulSet controller may be replacing it already
        if exc.status != 404:
            raise
    wait_condition(kube_api, kube_namespace, "Ready", "True")
    wait_condition(kube_api, kube_namespace, "Progressing", "False", "Reconciled")
    # Nothing is left to roll: the next reconciles bring the partition back to 0.
    wait_for(lambda: apps.read_namespaced_stateful_set("demo-node", kube_namespace).spec.update_strategy
             .rolling_update.partition == 0, CONVERGE, "partition 0")


def test_operator_log_has_no_permission_errors(operator: OperatorProcess) -> None:
    """Runs last in this module: whatever the tests above made the operator do, RBAC allowed it."""
    denials = [line for line in operator.read_log().splitlines()
               if 'forbidden: User "system:serviceaccount:' in line]
    assert not denials, "\n".join(denials[:5])
