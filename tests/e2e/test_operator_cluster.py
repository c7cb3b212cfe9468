"""The operator against the real control plane: CallFSCluster in, running (kwok) storage cluster out.

The operator runs as its console entry point in a subprocess (``python -m callfs_operator.main``),
cluster-wide, with a 2 s resync so drift is repaired quickly, and as the chart's ServiceAccount (a token bound
to the ClusterRole of ``manifests/callfs.yaml``), so the suite also proves that RBAC is enough. Each test gets
a namespace, a StorageClass of its own and pre-created PersistentVolumes for it, so that the PersistentVolume
controller binds the StatefulSets' claims and the scheduler places the pods on kwok nodes, where they go
Running and Ready.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kclient

from support.kube import KubeCluster
from support.operator import OperatorProcess
from support.waiting import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "charts" / "callfs" / "crds" / "callfsclusters.yaml"
CHART = REPO / "charts" / "callfs"
MANIFESTS = REPO / "manifests" / "callfs.yaml"
OPERATOR_NAMESPACE = "callfs-system"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
GROUP, VERSION, PLURAL = "callfs.io", "v1alpha1", "callfsclusters"
CONVERGE = 120  # seconds for the operator and the controllers on this 2-core machine
RESYNC = 2.0  # seconds between the operator's drift checks


@pytest.fixture(scope="module")
def crd(kube_cluster: KubeCluster) -> str:
    kube_cluster.kubectl("apply", "-f", str(CRD))
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                         "crd/callfsclusters.callfs.io")
    return "callfsclusters.callfs.io"


@pytest.fixture(scope="module")
def operator_kubeconfig(kube_cluster: KubeCluster, crd: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig authenticating as the chart's ``callfs-operator`` ServiceAccount (RBAC from
    ``manifests/callfs.yaml``)."""
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text())
            if d and d["kind"] in RBAC_KINDS and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    assert {d["kind"] for d in docs} == RBAC_KINDS
    kube_cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE)
    kube_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    path = tmp_path_factory.mktemp("operator-identity") / "kubeconfig"
    return kube_cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, "callfs-operator", path)


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator process (cluster-wide, as its ServiceAccount). SIGTERM at the end."""
    running = OperatorProcess(operator_kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    running.start(RESYNC)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def storage_class(kube_api: kclient.ApiClient, kube_namespace: str) -> Iterator[str]:
    """A StorageClass without provisioner and 8 PersistentVolumes of it (hostPath; kwok never mounts them)."""
    name = f"e2e-{kube_namespace}"
    storage = kclient.StorageV1Api(kube_api)
    core = kclient.CoreV1Api(kube_api)
    storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                  "metadata": {"name": name}, "provisioner": "kubernetes.io/no-provisioner",
                                  "volumeBindingMode": "Immediate"})
    volumes = [f"{name}-{i}" for i in range(8)]
    for pv in volumes:
        core.create_persistent_volume({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
            "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": name, "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": f"/tmp/{pv}"}},
        })
    try:
        yield name
    finally:
        for pv in volumes:
            core.delete_persistent_volume(pv)
        storage.delete_storage_class(name)


def cluster_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CallFSCluster", "metadata": {"name": name}, "spec": spec}


def storage_spec(storage_class: str) -> dict[str, Any]:
    claim = {"size": "1Gi", "storageClassName": storage_class}
    return {"storage": claim, "metadata": {"storage": claim}, "locks": {"storage": claim}}


def get_cluster(api: kclient.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = kclient.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name)
    except kclient.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c  # type: ignore[no-any-return]
    return None


def wait_condition(api: kclient.ApiClient, namespace: str, name: str, kind: str, status: str,
                   reason: str | None = None) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_cluster(api, namespace, name)
        c = condition(obj, kind)
        if c and c["status"] == status and (reason is None or c["reason"] == reason):
            return obj
        return None

    try:
        return wait_for(check, CONVERGE, f"{kind}={status} ({reason}) on {namespace}/{name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstatus: {json.dumps((get_cluster(api, namespace, name) or {}).get('status'))}"
                             ) from None


def children_of(api: kclient.ApiClient, namespace: str) -> dict[tuple[str, str], Any]:
    core, apps, policy = kclient.CoreV1Api(api), kclient.AppsV1Api(api), kclient.PolicyV1Api(api)
    selector = "app.kubernetes.io/managed-by=callfs-operator"
    out: dict[tuple[str, str], Any] = {}
    for kind, items in (
        ("Secret", core.list_namespaced_secret(namespace, label_selector=selector).items),
        ("ConfigMap", core.list_namespaced_config_map(namespace, label_selector=selector).items),
        ("Service", core.list_namespaced_service(namespace, label_selector=selector).items),
        ("StatefulSet", apps.list_namespaced_stateful_set(namespace, label_selector=selector).items),
        ("PodDisruptionBudget", policy.list_namespaced_pod_disruption_budget(namespace, label_selector=selector).items),
    ):
        for item in items:
            out[(kind, item.metadata.name)] = item
    return out


def wait_event(api: kclient.ApiClient, namespace: str, kind: str, *reasons: str) -> Any:
    """Wait for an Event of type ``kind`` with one of ``reasons`` on a CallFSCluster (Events are posted
    asynchronously, so one may land after the status change it reports)."""
    core = kclient.CoreV1Api(api)

    def found() -> Any:
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.kind=CallFSCluster").items
        return next((e for e in events if e.type == kind and e.reason in reasons), None)

    return wait_for(found, CONVERGE, f"a {kind} Event with reason {' or '.join(reasons)}")


def create(api: kclient.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = kclient.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body)
    return obj


EXPECTED_CHILDREN = {
    ("Secret", "demo-api-key"), ("Secret", "demo-internal"), ("Secret", "demo-postgres"), ("Secret", "demo-redis"),
    ("ConfigMap", "demo-config"), ("Service", "demo-postgres"), ("StatefulSet", "demo-postgres"),
    ("Service", "demo-redis"), ("StatefulSet", "demo-redis"), ("Service", "demo-nodes"), ("Service", "demo"),
    ("StatefulSet", "demo-node"), ("PodDisruptionBudget", "demo-node"), ("PodDisruptionBudget", "demo-postgres"),
    ("PodDisruptionBudget", "demo-redis"),
}


@pytest.fixture
def ready_cluster(kube_api: kclient.ApiClient, kube_namespace: str, storage_class: str, operator: OperatorProcess
                  ) -> Callable[..., dict[str, Any]]:
    def make(name: str = "demo", **spec: Any) -> dict[str, Any]:
        create(kube_api, kube_namespace, cluster_body(name, replicas=2, **storage_spec(storage_class), **spec))
        return wait_condition(kube_api, kube_namespace, name, "Ready", "True")

    return make


def test_cluster_becomes_ready_with_owned_children(
    kube_api: kclient.ApiClient, kube_cluster: KubeCluster, kube_namespace: str,
    ready_cluster: Callable[..., dict[str, Any]],
) -> None:
    obj = ready_cluster()
    status = obj["status"]
    assert status["readyNodes"] == 2 and status["nodes"] == "2/2"
    assert status["phase"] == "Running"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["endpoint"] == f"http://demo.{kube_namespace}.svc.cluster.local:8443"
    for kind in ("Ready", "NodesReady", "MetadataReady", "LocksReady"):
        assert condition(obj, kind)["status"] == "True", kind  # type: ignore[index]
    assert condition(obj, "Progressing")["status"] == "False"  # type: ignore[index]
    assert condition(obj, "Degraded")["status"] == "False"  # type: ignore[index]
    children = children_of(kube_api, kube_namespace)
    assert set(children) == EXPECTED_CHILDREN
    for key, child in children.items():
        refs = child.metadata.owner_references or []
        if key[0] == "Secret":
            # deletionPolicy Retain (the default): the credentials outlive the cluster with the data.
            assert refs == [], key
            continue
        assert [(r.kind, r.name, r.uid, r.controller) for r in refs] == [
            ("CallFSCluster", "demo", obj["metadata"]["uid"], True)], key
    table = kube_cluster.kubectl("get", "cfs", "-n", kube_namespace, "--no-headers")
    assert table.split()[:4] == ["demo", "True", "2/2", "Running"]
    wait_event(kube_api, kube_namespace, "Normal", "ClusterReady")


def test_deleted_or_edited_children_are_restored(
    kube_api: kclient.ApiClient, kube_namespace: str, ready_cluster: Callable[..., dict[str, Any]]
) -> None:
    ready_cluster()
    core, apps = kclient.CoreV1Api(kube_api), kclient.AppsV1Api(kube_api)
    old_cm = core.read_namespaced_config_map("demo-config", kube_namespace).metadata.uid
    api_key = core.read_namespaced_secret("demo-api-key", kube_namespace).data["api-key"]
    core.delete_namespaced_config_map("demo-config", kube_namespace)
    core.delete_namespaced_service("demo", kube_namespace)
    apps.patch_namespaced_stateful_set("demo-node", kube_namespace, {"spec": {"replicas": 1}})

    def restored() -> bool:
        try:
            cm = core.read_namespaced_config_map("demo-config", kube_namespace)
            core.read_namespaced_service("demo", kube_namespace)
        except kclient.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        sts = apps.read_namespaced_stateful_set("demo-node", kube_namespace)
        return bool(cm.metadata.uid != old_cm and sts.spec.replicas == 2)

    wait_for(restored, CONVERGE, "the deleted ConfigMap and Service and the edited replicas restored")
    # Restoring never rotates a generated secret.
    assert core.read_namespaced_secret("demo-api-key", kube_namespace).data["api-key"] == api_key
    wait_condition(kube_api, kube_namespace, "demo", "Ready", "True")


def test_scaling_up_reaches_ready_with_more_nodes(
    kube_api: kclient.ApiClient, kube_namespace: str, ready_cluster: Callable[..., dict[str, Any]]
) -> None:
    ready_cluster()
    kclient.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, kube_namespace, PLURAL, "demo", {"spec": {"replicas": 3}})

    def three_ready() -> dict[str, Any] | None:
        obj = get_cluster(kube_api, kube_namespace, "demo")
        c = condition(obj, "Ready")
        if obj and c and c["status"] == "True" and obj["status"].get("readyNodes") == 3:
            return obj
        return None

    obj = wait_for(three_ready, CONVERGE, "Ready with 3 nodes")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


def test_scale_down_waits_until_the_removed_node_is_declared_drained(
    kube_api: kclient.ApiClient, kube_namespace: str, ready_cluster: Callable[..., dict[str, Any]]
) -> None:
    ready_cluster()
    custom, apps = kclient.CustomObjectsApi(kube_api), kclient.AppsV1Api(kube_api)
    custom.patch_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "demo", {"spec": {"replicas": 1}})
    obj = wait_condition(kube_api, kube_namespace, "demo", "Degraded", "True", "ScaleDownBlocked")
    assert "would remove demo-node-1" in condition(obj, "Degraded")["message"]  # type: ignore[index]
    assert apps.read_namespaced_stateful_set("demo-node", kube_namespace).spec.replicas == 2
    custom.patch_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "demo",
                                          {"metadata": {"annotations": {"callfs.io/drained-nodes": "demo-node-1"}}})

    def scaled_down_and_ready() -> dict[str, Any] | None:
        obj = get_cluster(kube_api, kube_namespace, "demo")
        c = condition(obj, "Ready")
        if obj and c and c["status"] == "True" and obj["status"]["nodes"] == "1/1":
            return obj
        return None

    wait_for(scaled_down_and_ready, CONVERGE, "Ready with 1 node after the drain was declared")
    assert apps.read_namespaced_stateful_set("demo-node", kube_namespace).spec.replicas == 1


def test_missing_referenced_secret_degrades_with_the_field_named(
    kube_api: kclient.ApiClient, kube_namespace: str, storage_class: str, operator: OperatorProcess
) -> None:
    create(kube_api, kube_namespace, cluster_body("demo", replicas=1, auth={"apiKeysSecret": "nope"},
                                                  **storage_spec(storage_class)))
    obj = wait_condition(kube_api, kube_namespace, "demo", "Degraded", "True", "SecretNotFound")
    message = condition(obj, "Degraded")["message"]  # type: ignore[index]
    assert f"spec.auth.apiKeysSecret: Secret {kube_namespace}/nope does not exist" in message
    assert obj["status"]["phase"] == "Degraded"
    assert condition(obj, "Ready")["status"] == "False"  # type: ignore[index]
    wait_event(kube_api, kube_namespace, "Warning", "SecretNotFound")
    # Supplying the Secret heals the cluster.
    kclient.CoreV1Api(kube_api).create_namespaced_secret(kube_namespace, {
        "metadata": {"name": "nope"}, "stringData": {"api-key": "a-user-supplied-root-api-key"}})
    wait_condition(kube_api, kube_namespace, "demo", "Ready", "True")


def test_problems_the_schema_cannot_see_are_reported_together(
    kube_api: kclient.ApiClient, kube_namespace: str, storage_class: str, operator: OperatorProcess
) -> None:
    core = kclient.CoreV1Api(kube_api)
    core.create_namespaced_secret(kube_namespace, {"metadata": {"name": "s3"}, "stringData": {"accessKey": "AK"}})
    spec = storage_spec(storage_class)
    spec["storage"] = {"size": "1Gi", "storageClassName": "no-such-class"}
    create(kube_api, kube_namespace, cluster_body(
        "demo", replicas=1, backend={"type": "s3", "bucket": "bkt", "credentialsSecret": "s3"}, **spec))
    obj = wait_condition(kube_api, kube_namespace, "demo", "Degraded", "True", "SecretKeyMissing")
    message = condition(obj, "Degraded")["message"]  # type: ignore[index]
    assert f"spec.backend.credentialsSecret: Secret {kube_namespace}/s3 has no key secretKey" in message
    assert "spec.storage.storageClassName: StorageClass no-such-class does not exist" in message
    # Nothing was deleted or skipped: the children exist, waiting for the user's fix.
    assert set(children_of(kube_api, kube_namespace)) == EXPECTED_CHILDREN


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"replicas": 0}, "spec.replicas in body should be greater than or equal to 1"),
        ({"backend": {"type": "s3"}}, "backend.type s3 needs backend.bucket and backend.credentialsSecret"),
        ({"backend": {"bucket": "bkt"}}, "only valid when backend.type is s3"),
        ({"metadata": {"externalSecret": {"name": "db"}, "image": "pg:16"}},
         "metadata.externalSecret excludes the managed PostgreSQL settings"),
        ({"locks": {"externalSecret": {"name": "r"}, "storage": {"size": "1Gi"}}},
         "locks.externalSecret excludes the managed Redis settings"),
        ({"deletionPolicy": "Orphan"}, 'supported values: "Retain", "Delete"'),
        ({"storage": {"size": "ten gigs"}}, "spec.storage.size in body should match"),
    ],
)
def test_invalid_clusters_are_rejected_by_the_api_server(
    kube_api: kclient.ApiClient, kube_namespace: str, crd: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(kclient.ApiException) as info:
        create(kube_api, kube_namespace, cluster_body("demo", **spec))
    assert info.value.status == 422
    assert message in json.loads(info.value.body)["message"]


def test_long_names_shrinks_and_class_changes_are_rejected(
    kube_api: kclient.ApiClient, kube_namespace: str, crd: str
) -> None:
    with pytest.raises(kclient.ApiException) as info:
        create(kube_api, kube_namespace, cluster_body("a" * 41))
    assert "metadata.name must be at most 40 characters" in json.loads(info.value.body)["message"]
    create(kube_api, kube_namespace, cluster_body("demo", replicas=1, metadata={"storage": {"size": "2Gi"}}))
    custom = kclient.CustomObjectsApi(kube_api)
    for change, message in (({"storage": {"size": "5Gi"}}, "storage.size cannot shrink"),
                            ({"metadata": {"storage": {"size": "1Gi"}}}, "storage.size cannot shrink"),
                            ({"storage": {"storageClassName": "other"}}, "storage.storageClassName is immutable")):
        with pytest.raises(kclient.ApiException) as info:
            custom.patch_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "demo", {"spec": change})
        assert message in json.loads(info.value.body)["message"]
    # Growing is allowed (the operator expands the claims).
    grow = {"storage": {"size": "20Gi"}, "metadata": {"storage": {"size": "3Gi"}}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "demo", {"spec": grow})


def csi_volume(name: str, cluster_ref: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "persistentVolumeReclaimPolicy": "Retain",
                 "csi": {"driver": "csi.callfs.io", "volumeHandle": name,
                         "volumeAttributes": {"cluster": cluster_ref}}},
    }


def test_deletion_waits_for_volumes_of_the_cluster(
    kube_api: kclient.ApiClient, kube_namespace: str, ready_cluster: Callable[..., dict[str, Any]]
) -> None:
    ready_cluster()
    core = kclient.CoreV1Api(kube_api)
    pv = f"pv-{uuid.uuid4().hex[:8]}"
    core.create_persistent_volume(csi_volume(pv, f"{kube_namespace}/demo"))
    try:
        kclient.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, "demo")
        obj = wait_condition(kube_api, kube_namespace, "demo", "Progressing", "False", "DeletionBlocked")
        assert pv in condition(obj, "Progressing")["message"]  # type: ignore[index]
        assert obj["status"]["phase"] == "Deleting"
        wait_event(kube_api, kube_namespace, "Warning", "DeletionBlocked")
        assert ("StatefulSet", "demo-node") in children_of(kube_api, kube_namespace)
    finally:
        core.delete_persistent_volume(pv)
    wait_for(lambda: get_cluster(kube_api, kube_namespace, "demo") is None, CONVERGE, "the CallFSCluster gone")


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_policy_decides_the_fate_of_data_claims(
    kube_api: kclient.ApiClient, kube_namespace: str, ready_cluster: Callable[..., dict[str, Any]], policy: str
) -> None:
    ready_cluster(deletionPolicy=policy)
    core = kclient.CoreV1Api(kube_api)
    selector = "app.kubernetes.io/instance=demo"
    claims = {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(
        kube_namespace, label_selector=selector).items}
    assert claims == {"data-demo-node-0", "data-demo-node-1", "data-demo-postgres-0", "data-demo-redis-0"}
    # A volume of another cluster does not block this one.
    pv = f"pv-{uuid.uuid4().hex[:8]}"
    core.create_persistent_volume(csi_volume(pv, f"{kube_namespace}/other"))
    try:
        kclient.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, "demo")
        wait_for(lambda: get_cluster(kube_api, kube_namespace, "demo") is None, CONVERGE, "the CallFSCluster gone")
    finally:
        core.delete_persistent_volume(pv)

    def remaining() -> set[str]:
        return {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(
            kube_namespace, label_selector=selector).items if not c.metadata.deletion_timestamp}

    if policy == "Delete":
        wait_for(lambda: remaining() == set(), CONVERGE, "the data claims deleted")
    else:
        # The claims and the Secrets that open their data stay; the rest is garbage-collected.
        wait_for(lambda: {kind for kind, _ in children_of(kube_api, kube_namespace)} == {"Secret"}, CONVERGE,
                 "the children but the Secrets garbage-collected")
        assert remaining() == claims


def test_manifests_are_the_rendered_chart(kube_cluster: KubeCluster) -> None:
    env = {**os.environ, "HELM": str(kube_cluster.bin_dir / "helm")}
    rendered = subprocess.run(["bash", str(REPO / "hack" / "render-manifests.sh"), "--stdout"], env=env,
                              capture_output=True, text=True, timeout=60, check=True)
    assert MANIFESTS.read_text() == rendered.stdout


def test_image_change_rolls_the_nodes_and_reports_progress(
    kube_api: kclient.ApiClient, kube_namespace: str, ready_cluster: Callable[..., dict[str, Any]]
) -> None:
    ready_cluster()
    kclient.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, kube_namespace, PLURAL, "demo", {"spec": {"image": "ghcr.io/callfs/callfs-node:0.2.0"}})
    apps, core = kclient.AppsV1Api(kube_api), kclient.CoreV1Api(kube_api)

    def rolled() -> bool:
        sts = apps.read_namespaced_stateful_set("demo-node", kube_namespace)
        if sts.spec.template.spec.containers[0].image != "ghcr.io/callfs/callfs-node:0.2.0":
            return False
        pods = core.list_namespaced_pod(kube_namespace, label_selector="app.kubernetes.io/component=node").items
        return len(pods) == 2 and all(p.spec.containers[0].image.endswith(":0.2.0") for p in pods)

    wait_for(rolled, CONVERGE, "every node pod running the new image")
    obj = wait_condition(kube_api, kube_namespace, "demo", "Ready", "True")
    assert obj["status"]["readyNodes"] == 2
    assert condition(obj, "Progressing")["reason"] == "Reconciled"  # type: ignore[index]
    wait_event(kube_api, kube_namespace, "Normal", "ClusterReady")
    wait_event(kube_api, kube_namespace, "Normal", "Applying", "RollingUpdate", "WaitingForPods")


def test_killed_operator_converges_after_restart(
    kube_api: kclient.ApiClient, kube_namespace: str, storage_class: str, operator: OperatorProcess
) -> None:
    create(kube_api, kube_namespace, cluster_body("demo", replicas=2, **storage_spec(storage_class)))
    core = kclient.CoreV1Api(kube_api)

    def some_children() -> bool:
        return bool(core.list_namespaced_secret(kube_namespace,
                                                label_selector="app.kubernetes.io/managed-by=callfs-operator").items)

    wait_for(some_children, CONVERGE, "the first children")
    operator.stop(signal.SIGKILL)  # mid-reconcile: no chance to finish or clean up
    try:
        kclient.CoreV1Api(kube_api).delete_namespaced_config_map("demo-config", kube_namespace)
    except kclient.ApiException as exc:
        if exc.status != 404:
            raise
    operator.start()
    obj = wait_condition(kube_api, kube_namespace, "demo", "Ready", "True")
    assert obj["status"]["readyNodes"] == 2
    # Ready speaks of the pods; the children the killed run never applied (or that were deleted while the
    # operator was down) come back too.
    wait_for(lambda: set(children_of(kube_api, kube_namespace)) == EXPECTED_CHILDREN, CONVERGE, "every child")


def test_ready_follows_the_pods_without_waiting_for_the_resync(
    kube_api: kclient.ApiClient, kube_namespace: str, storage_class: str, operator: OperatorProcess
) -> None:
    operator.stop()
    operator.start(resync=3600)  # the timer never fires during this test: only child events can update status
    try:
        create(kube_api, kube_namespace, cluster_body("demo", replicas=2, **storage_spec(storage_class)))
        obj = wait_condition(kube_api, kube_namespace, "demo", "Ready", "True")
        assert obj["status"]["readyNodes"] == 2
    finally:
        operator.stop()
        operator.start()


def test_operator_log_has_no_permission_errors(operator: OperatorProcess) -> None:
    """Runs last in this module: whatever the tests above made the operator do, RBAC allowed it."""
    denials = [line for line in operator.read_log().splitlines()
               if 'forbidden: User "system:serviceaccount:' in line]
    assert not denials, "\n".join(denials[:5])


@pytest.mark.parametrize("example", ["minimal.yaml", "full.yaml"])
def test_examples_are_accepted_by_the_api_server(kube_cluster: KubeCluster, kube_namespace: str, crd: str,
                                                 example: str) -> None:
    out = kube_cluster.kubectl("apply", "--dry-run=server", "-n", kube_namespace, "-f",
                               str(REPO / "examples" / example))
    assert "created (server dry run)" in out
