"""The chart's CSI driver on the real control plane: installed objects come up, and its RBAC is enough.

The chart is rendered by the helm built by ``hack/tools.sh`` with the operator turned off (the operator tests
own ``callfs-system`` and its objects), into the test's namespace and with a StorageClass name of its own, and
applied server-side. kwok runs no containers, so the node plugin and the controller are only scheduled and
reported Ready; what runs for real is the provisioning path: csi-provisioner and csi-resizer (the binaries the
chart's images are built from) with the sidecar flags of the chart's Deployment, authenticated as the chart's
controller ServiceAccount, against our controller and a CallFS node (``support.csi_provisioning``).

That the sidecars really act as the ServiceAccount (and not, say, as an admin through an inherited
``KUBECONFIG``) is checked by the API server itself: while they run, a ValidatingAdmissionPolicy lets only that
ServiceAccount create or resize PersistentVolumes of the test's StorageClass, and the admin is shown to be refused
first. The ServiceAccount's kubeconfig is also shown to be refused what only an admin may do.

Everything cluster-scoped the chart creates (ClusterRole, ClusterRoleBinding, StorageClass, and the CSIDriver
unless it was already there) is deleted at the end; the namespace takes the rest.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kclient

from support.csi_provisioning import BIND_TIMEOUT, DRIVER, ROOT_SECRET, running_provisioning
from support.kube import NODE_COUNT, KubeCluster
from support.node import NodeProcess
from support.waiting import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "callfs"
CONTROLLER = "callfs-csi-controller"
NODE_PLUGIN = "callfs-csi-node"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "StorageClass", "CSIDriver", "VolumeSnapshotClass"}
SET_BY_TEST_SIDECARS = ("--csi-address=", "--leader-election=", "--timeout=")
"""Sidecar flags ``support.csi_provisioning`` sets itself (a local socket, one replica, the same timeout)."""
_REFUSED_NAMESPACE = re.compile(r'in the namespace "([^"]+)"')


def _about_another_namespace(line: str, namespace: str) -> bool:
    """True when an API refusal logged by a sidecar concerns a namespace other than ``namespace``."""
    match = _REFUSED_NAMESPACE.search(line)
    return match is not None and match.group(1) != namespace


READY = 120  # seconds for the controllers and kwok to schedule the pods and report them Ready


def _csi_driver_exists(api: kclient.ApiClient) -> bool:
    try:
        kclient.StorageV1Api(api).read_csi_driver(DRIVER)
    except kclient.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@contextlib.contextmanager
def installed_chart(kube_cluster: KubeCluster, api: kclient.ApiClient, namespace: str,
                    values: Mapping[str, str]) -> Iterator[list[dict[str, Any]]]:
    """Render the chart's CSI part into ``namespace`` with ``values`` (``--set-string``, ``--set`` for ``true`` and
    ``false``), apply it server-side, yield the rendered objects, and delete the cluster-scoped ones on exit."""
    args = ["template", "callfs", str(CHART), "--namespace", namespace, "--set", "operator.enabled=false"]
    for key, value in values.items():
        args += ["--set" if value in ("true", "false") else "--set-string", f"{key}={value}"]
    rendered = kube_cluster.helm(*args)
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    driver_existed = _csi_driver_exists(api)
    cluster_scoped = [d for d in docs if d["kind"] in CLUSTER_SCOPED
                      and not (d["kind"] == "CSIDriver" and driver_existed)]
    try:
        kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=e2e-chart-csi",
                             "-f", "-", stdin=rendered)
        yield docs
    finally:
        kube_cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                             stdin=yaml.safe_dump_all(cluster_scoped))


@contextlib.contextmanager
def only_user_provisions(kube_cluster: KubeCluster, storage_class: str, user: str) -> Iterator[None]:
    """While the block runs, the API server refuses to create or resize a PersistentVolume of ``storage_class``
    for anyone but ``user`` (a ValidatingAdmissionPolicy and its binding, deleted on exit).

    On entry, waits until the policy is in force: until a server-side dry run of such a create by the admin is
    refused by it.
    """
    name = f"e2e-only-{storage_class}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": ["persistentvolumes"],
            }]},
            "matchConditions": [
                {"name": "of-the-storage-class",
                 "expression": "has(object.spec.storageClassName)"
                               f" && object.spec.storageClassName == '{storage_class}'"},
                {"name": "provisioned-or-resized",
                 "expression": "request.operation == 'CREATE'"
                               " || oldObject.spec.capacity.storage != object.spec.capacity.storage"},
            ],
            "validations": [{
                "expression": f"request.userInfo.username == '{user}'",
                "messageExpression": f"'only {user} provisions or resizes, not ' + request.userInfo.username",
            }],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    manifests = yaml.safe_dump_all([policy, binding])
    probe = yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{name}-probe"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": storage_class,
                 "csi": {"driver": DRIVER, "volumeHandle": "probe"}},
    })

    def admin_refused() -> str | None:
        try:
            kube_cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=probe)
        except subprocess.CalledProcessError as exc:
            if f"ValidatingAdmissionPolicy '{name}'" in exc.stderr:
                return str(exc.stderr)
            raise
        return None  # not in force yet (the API server loads policies asynchronously)

    kube_cluster.kubectl("apply", "-f", "-", stdin=manifests)
    try:
        refusal = wait_for(admin_refused, READY, f"policy {name} to refuse the admin")
        assert f"not {kube_cluster.username()}" in refusal, refusal
        yield
    finally:
        kube_cluster.kubectl("delete", "--ignore-not-found", "-f", "-", stdin=manifests)


def _container(docs: list[dict[str, Any]], kind: str, name: str, container: str) -> dict[str, Any]:
    (workload,) = (d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    (found,) = (c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == container)
    return found  # type: ignore[no-any-return]


def _chart_flags(docs: list[dict[str, Any]], sidecar: str) -> list[str]:
    """The chart's flags of ``sidecar`` in the controller Deployment, less those the test harness sets."""
    args = _container(docs, "Deployment", CONTROLLER, sidecar)["args"]
    return [a for a in args if not a.startswith(SET_BY_TEST_SIDECARS)]


def test_chart_installs_the_driver_with_a_node_plugin_on_every_node(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str
) -> None:
    storage_class = f"callfs-{kube_namespace}"
    apps, core, storage = kclient.AppsV1Api(kube_api), kclient.CoreV1Api(kube_api), kclient.StorageV1Api(kube_api)
    values = {"csi.storageClass.name": storage_class, "csi.storageClass.cluster": f"{kube_namespace}/demo"}
    with installed_chart(kube_cluster, kube_api, kube_namespace, values):
        driver = storage.read_csi_driver(DRIVER).spec
        assert (driver.attach_required, driver.fs_group_policy) == (False, "File")
        assert storage.read_storage_class(storage_class).provisioner == DRIVER

        def node_plugins_ready() -> Any:
            status = apps.read_namespaced_daemon_set(NODE_PLUGIN, kube_namespace).status
            done = status.desired_number_scheduled == NODE_COUNT and status.number_ready == NODE_COUNT
            return status if done else None

        wait_for(node_plugins_ready, READY, f"DaemonSet {NODE_PLUGIN} ready on {NODE_COUNT} nodes")
        pods = core.list_namespaced_pod(kube_namespace, label_selector="app.kubernetes.io/component=csi-node").items
        assert sorted(p.spec.node_name for p in pods) == [f"kwok-node-{i}" for i in range(NODE_COUNT)]

        def controller_available() -> bool:
            conditions = apps.read_namespaced_deployment(CONTROLLER, kube_namespace).status.conditions or []
            return any(c.type == "Available" and c.status == "True" for c in conditions)

        wait_for(controller_available, READY, f"Deployment {CONTROLLER} available")


def test_claim_of_the_chart_storage_class_binds_and_grows_with_the_chart_rbac(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, node: NodeProcess, tmp_path: Path
) -> None:
    for tool in ("csi-provisioner", "csi-resizer"):
        if not (kube_cluster.bin_dir / tool).exists():
            pytest.fail(f"{kube_cluster.bin_dir / tool} is not built (bash hack/tools.sh install {tool})",
                        pytrace=False)
    storage_class = f"callfs-{kube_namespace}"
    values = {"csi.storageClass.name": storage_class, "csi.storageClass.server": node.url,
              "csi.secret.name": ROOT_SECRET}
    work_dir = tmp_path / "csi"
    work_dir.mkdir()
    with installed_chart(kube_cluster, kube_api, kube_namespace, values) as docs:
        identity = kube_cluster.service_account_kubeconfig(kube_namespace, CONTROLLER, tmp_path / "kubeconfig")
        user = f"system:serviceaccount:{kube_namespace}:{CONTROLLER}"
        assert kube_cluster.username(identity) == user
        # The kubeconfig carries the chart's RBAC and no more: refused what only an admin may do ...
        for action in (("list", "nodes"), ("create", "namespaces"), ("get", "secrets", "-n", "kube-system"),
                       ("get", "secrets", "-n", kube_namespace)):
            assert kube_cluster.can_i(*action), f"the admin is refused {' '.join(action)}"
            assert not kube_cluster.can_i(*action, kubeconfig=identity), f"{user} may {' '.join(action)}"
        # ... and allowed what the sidecars need.
        for action in (("create", "persistentvolumes"), ("patch", "persistentvolumeclaims", "--subresource=status"),
                       ("get", f"secret/{ROOT_SECRET}", "-n", kube_namespace),
                       ("create", "secrets", "-n", kube_namespace), ("delete", "secrets", "-n", kube_namespace)):
            assert kube_cluster.can_i(*action, kubeconfig=identity), f"{user} may not {' '.join(action)}"
        with only_user_provisions(kube_cluster, storage_class, user), \
                running_provisioning(kube_api, identity, kube_cluster.bin_dir, node, kube_namespace, work_dir,
                                     resizer=True, provisioner_flags=_chart_flags(docs, "csi-provisioner"),
                                     resizer_flags=_chart_flags(docs, "csi-resizer"),
                                     volume_keys=True) as provisioning:
            # Only the ServiceAccount may create this PV, and only it may resize it: the sidecars act as it.
            provisioning.claim("data", storage_class, "1Gi")
            pv = provisioning.bound_volume("data")
            assert pv.spec.csi.driver == DRIVER
            assert pv.spec.csi.volume_attributes["server"] == node.url
            # Nodes stage it with its own key: the Secret the controller wrote, as the chart's ServiceAccount.
            volume_secret = f"callfs-volume-{pv.metadata.name}"
            assert (pv.spec.csi.node_stage_secret_ref.namespace, pv.spec.csi.node_stage_secret_ref.name) == (
                kube_namespace, volume_secret)
            core = kclient.CoreV1Api(kube_api)
            assert set(core.read_namespaced_secret(volume_secret, kube_namespace).data) == {"apiKey", "serverURL"}
            # csi-resizer reads the controller-expand secret and patches the claim's status.
            provisioning.resize_claim("data", "2Gi")
            wait_for(lambda: provisioning.claim_capacity("data") == "2Gi", BIND_TIMEOUT, "PVC data at 2Gi")
            # csi-provisioner reads the provisioner secret again to delete the volume.
            provisioning.delete_claim("data")
            provisioning.wait_pv_gone(pv.metadata.name)
            assert volume_secret not in {s.metadata.name for s in core.list_namespaced_secret(kube_namespace).items}
    # A claim another test left in its own namespace may reach these sidecars too (same driver); the chart's
    # RBAC rightly refuses them that namespace's secrets. Every other refusal is a gap in the chart's RBAC.
    denials = [line for name in ("csi-provisioner.log", "csi-resizer.log", "controller.log")
               for line in (work_dir / name).read_text(errors="replace").splitlines()
               if "forbidden" in line and not _about_another_namespace(line, kube_namespace)]
    assert not denials, "\n".join(denials[:5])


SNAPSHOT_GROUP, SNAPSHOT_VERSION = "snapshot.storage.k8s.io", "v1"
SNAPSHOT_CRDS = ("volumesnapshotclasses", "volumesnapshotcontents", "volumesnapshots")


@contextlib.contextmanager
def running_snapshot_controller(kube_cluster: KubeCluster, log_path: Path) -> Iterator[None]:
    """The snapshot CRDs of the pinned external-snapshotter applied, and its snapshot-controller running (as the
    admin: it is the cluster's, not the driver's) until exit."""
    for tool in ("csi-snapshotter", "snapshot-controller", "snapshot-crds.yaml"):
        if not (kube_cluster.bin_dir / tool).exists():
            pytest.fail(f"{kube_cluster.bin_dir / tool} is not built (bash hack/tools.sh install external-snapshotter)",
                        pytrace=False)
    kube_cluster.kubectl("apply", "--server-side", "-f", str(kube_cluster.bin_dir / "snapshot-crds.yaml"))
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                         *(f"crd/{plural}.{SNAPSHOT_GROUP}" for plural in SNAPSHOT_CRDS))
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(kube_cluster.bin_dir / "snapshot-controller"), f"--kubeconfig={kube_cluster.kubeconfig}",
             "--leader-election=false", "--v=4"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _put(node: NodeProcess, path: str, data: bytes) -> None:
    request = urllib.request.Request(f"{node.url}/v1/files{path}", data=data, method="PUT",
                                     headers={"Authorization": f"Bearer {node.key_for('root')}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status in (200, 201), answer.status


def _get(node: NodeProcess, path: str) -> bytes:
    request = urllib.request.Request(f"{node.url}/v1/files{path}",
                                     headers={"Authorization": f"Bearer {node.key_for('root')}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return bytes(answer.read())


def test_snapshot_of_a_claim_restores_into_a_new_claim_with_the_chart_rbac(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, node: NodeProcess, tmp_path: Path
) -> None:
    storage_class = f"callfs-{kube_namespace}"
    snapshot_class = f"callfs-snap-{kube_namespace}"
    values = {"csi.storageClass.name": storage_class, "csi.storageClass.server": node.url,
              "csi.secret.name": ROOT_SECRET, "csi.snapshots.enabled": "true",
              "csi.snapshots.volumeSnapshotClass.name": snapshot_class}
    work_dir = tmp_path / "csi"
    work_dir.mkdir()
    custom = kclient.CustomObjectsApi(kube_api)
    with running_snapshot_controller(kube_cluster, work_dir / "snapshot-controller.log"), \
            installed_chart(kube_cluster, kube_api, kube_namespace, values) as docs:
        identity = kube_cluster.service_account_kubeconfig(kube_namespace, CONTROLLER, tmp_path / "kubeconfig")
        (vsc,) = (d for d in docs if d["kind"] == "VolumeSnapshotClass")
        assert (vsc["driver"], vsc["parameters"]["csi.storage.k8s.io/snapshotter-secret-name"]) == (DRIVER, ROOT_SECRET)
        with running_provisioning(kube_api, identity, kube_cluster.bin_dir, node, kube_namespace, work_dir,
                                  provisioner_flags=_chart_flags(docs, "csi-provisioner"),
                                  snapshotter=True, snapshotter_flags=_chart_flags(docs, "csi-snapshotter")
                                  ) as provisioning:
            provisioning.claim("data", storage_class, "1Gi")
            source = provisioning.bound_volume("data").metadata.name
            _put(node, f"/volumes/{source}/hello.txt", b"kept by the snapshot")
            custom.create_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, kube_namespace,
                                                   "volumesnapshots", {
                "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}", "kind": "VolumeSnapshot",
                "metadata": {"name": "snap"},
                "spec": {"volumeSnapshotClassName": snapshot_class,
                         "source": {"persistentVolumeClaimName": "data"}}})

            def ready() -> Any:
                snap: Any = custom.get_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, kube_namespace,
                                                                "volumesnapshots", "snap")
                return snap if (snap.get("status") or {}).get("readyToUse") else None

            wait_for(ready, BIND_TIMEOUT, "VolumeSnapshot snap ready to use")
            _put(node, f"/volumes/{source}/hello.txt", b"changed after the snapshot")
            kclient.CoreV1Api(kube_api).create_namespaced_persistent_volume_claim(kube_namespace, {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "restored"},
                "spec": {"storageClassName": storage_class, "accessModes": ["ReadWriteMany"],
                         "resources": {"requests": {"storage": "1Gi"}},
                         "dataSource": {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": "snap"}}})
            restored = provisioning.bound_volume("restored").metadata.name
            assert _get(node, f"/volumes/{restored}/hello.txt") == b"kept by the snapshot"
            custom.delete_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, kube_namespace,
                                                   "volumesnapshots", "snap")

            def snapshot_gone() -> bool:
                contents: Any = custom.list_cluster_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION,
                                                                  "volumesnapshotcontents")
                return not [c for c in contents["items"]
                            if c["spec"]["volumeSnapshotRef"].get("namespace") == kube_namespace]

            wait_for(snapshot_gone, BIND_TIMEOUT, "the VolumeSnapshotContent deleted (DeleteSnapshot)")
            for claim in ("restored", "data"):
                provisioning.delete_claim(claim)
    denials = [line for name in ("csi-provisioner.log", "csi-snapshotter.log")
               for line in (work_dir / name).read_text(errors="replace").splitlines()
               if "forbidden" in line and not _about_another_namespace(line, kube_namespace)]
    assert not denials, "\n".join(denials[:5])
