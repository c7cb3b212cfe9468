"""``helm install`` of the chart on the dev cluster, as an admin runs it: what the defaults create, that two
releases coexist, that a namespace-scoped operator gets rights only where it watches, that the ``helm test``
check and the uninstall hook work with the rights the chart gives them.

kwok runs no containers: pods go Running and Ready, but the ``helm test`` pod and the ``pre-delete`` Job never run
their command. So each test applies the hook's ServiceAccount and RBAC from ``helm get hooks`` and runs the hook's
own command (``python -m callfs_operator.<module>`` with the hook's arguments) here, authenticated as that
ServiceAccount: the same code with the same rights against the installed release.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kclient

from support.kube import KubeCluster
from support.waiting import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "callfs"
DRIVER = "csi.callfs.io"
GROUP, VERSION, PLURAL = "callfs.io", "v1alpha1", "callfsclusters"
FINALIZER = "callfs.io/finalizer"
INSTALL = "180s"  # helm install --wait: every workload Ready on kwok
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def helm(kube_cluster: KubeCluster, *args: str) -> str:
    return kube_cluster.helm(*args, "--kubeconfig", str(kube_cluster.kubeconfig), timeout=240)


@contextlib.contextmanager
def release(kube_cluster: KubeCluster, name: str, namespace: str, *values: str) -> Iterator[str]:
    """``helm install name`` into ``namespace`` with ``--set`` ``values``, waiting for its workloads; yields helm's
    output (NOTES included) and uninstalls on exit."""
    sets = [a for v in values for a in ("--set", v)]
    out = helm(kube_cluster, "install", name, str(CHART), "-n", namespace, "--wait", "--timeout", INSTALL, *sets)
    try:
        yield out
    finally:
        helm(kube_cluster, "uninstall", name, "-n", namespace, "--wait", "--no-hooks")


@contextlib.contextmanager
def namespaces(api: kclient.ApiClient, count: int) -> Iterator[list[str]]:
    core = kclient.CoreV1Api(api)
    names = [f"e2e-{uuid.uuid4().hex[:10]}" for _ in range(count)]
    for name in names:
        core.create_namespace({"metadata": {"name": name}})
    try:
        yield names
    finally:
        for name in names:
            core.delete_namespace(name)


def hook_identity(kube_cluster: KubeCluster, name: str, namespace: str, hook: str, path: Path
                  ) -> tuple[dict[str, Any], Path]:
    """Apply the ServiceAccount and RBAC of release ``name``'s ``hook`` hooks; return the hook's pod spec (of
    its Pod or Job) and a kubeconfig for its ServiceAccount."""
    docs = [d for d in yaml.safe_load_all(helm(kube_cluster, "get", "hooks", name, "-n", namespace)) if d
            and d["metadata"].get("annotations", {}).get("helm.sh/hook") == hook]
    kube_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([d for d in docs if d["kind"] in RBAC_KINDS]))
    (runner,) = (d for d in docs if d["kind"] in ("Pod", "Job"))
    pod = runner["spec"] if runner["kind"] == "Pod" else runner["spec"]["template"]["spec"]
    account = pod["serviceAccountName"]
    return pod, kube_cluster.service_account_kubeconfig(namespace, account, path)


def run_hook_command(pod: dict[str, Any], kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    """The hook container's ``python -m ...`` command, run here with ``kubeconfig``."""
    (container,) = pod["containers"]
    assert container["command"][:2] == ["python", "-m"]
    argv = [sys.executable, *container["command"][1:], *container["args"], "--kubeconfig", str(kubeconfig)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180)


def csi_driver_gone(api: kclient.ApiClient) -> bool:
    try:
        kclient.StorageV1Api(api).read_csi_driver(DRIVER)
    except kclient.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_default_install_creates_no_storage_class_and_passes_its_helm_test(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, tmp_path: Path
) -> None:
    # Another test of the session may have applied the CSIDriver by hand and be deleting it.
    wait_for(lambda: csi_driver_gone(kube_api), 60, f"CSIDriver {DRIVER} absent")
    name = "demo-release"
    with release(kube_cluster, name, kube_namespace) as notes:
        assert "No StorageClass was created" in notes
        assert "--set csi.storageClass.cluster=" in notes
        classes = kclient.StorageV1Api(kube_api).list_storage_class(label_selector=f"app.kubernetes.io/instance={name}")
        assert classes.items == []
        pod, identity = hook_identity(kube_cluster, name, kube_namespace, "test", tmp_path / "kubeconfig")
        check = run_hook_command(pod, identity)
        assert check.returncode == 0, check.stderr
        workloads = {f"{name}-callfs-operator", f"{name}-callfs-csi-controller", f"{name}-callfs-csi-node"}
        assert set(check.stdout.removeprefix("up: ").strip().split(", ")) == workloads
        # The node plugin's pods (system-node-critical) were admitted outside kube-system.
        ds = kclient.AppsV1Api(kube_api).read_namespaced_daemon_set(f"{name}-callfs-csi-node", kube_namespace)
        assert ds.spec.template.spec.priority_class_name == "system-node-critical"
        # The check reads the release's workloads and nothing else.
        assert not kube_cluster.can_i("list", "pods", "-n", kube_namespace, kubeconfig=identity)


def test_namespace_scoped_release_beside_a_cluster_wide_one_has_rights_only_where_it_watches(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, tmp_path: Path
) -> None:
    with namespaces(kube_api, 3) as (team_system, watched, elsewhere), \
            release(kube_cluster, "callfs", kube_namespace, "csi.enabled=false"), \
            release(kube_cluster, "team", team_system, "csi.enabled=false", "operator.allNamespaces=false",
                    f"operator.watchNamespaces={{{watched}}}"):
        wide = kube_cluster.service_account_kubeconfig(kube_namespace, "callfs-operator", tmp_path / "wide")
        scoped = kube_cluster.service_account_kubeconfig(team_system, "team-callfs-operator", tmp_path / "scoped")
        assert kube_cluster.can_i("get", "secrets", "-n", elsewhere, kubeconfig=wide)
        for action in (("get", "secrets"), ("create", "secrets"), ("delete", "persistentvolumeclaims"),
                       ("patch", "statefulsets.apps"), ("watch", "callfsclusters.callfs.io"),
                       ("patch", "callfsclusters.callfs.io", "--subresource=status"), ("create", "events")):
            assert kube_cluster.can_i(*action, "-n", watched, kubeconfig=scoped), f"may not {action} in {watched}"
            assert not kube_cluster.can_i(*action, "-n", elsewhere, kubeconfig=scoped), f"may {action} elsewhere"
            assert not kube_cluster.can_i(*action, "-n", team_system, kubeconfig=scoped), f"may {action} at home"
        assert not kube_cluster.can_i("list", "secrets", "--all-namespaces", kubeconfig=scoped)
        # The cluster-scoped reads it needs whatever it watches.
        for action in (("list", "persistentvolumes"), ("get", "storageclasses.storage.k8s.io")):
            assert kube_cluster.can_i(*action, kubeconfig=scoped), f"may not {action}"
        assert not kube_cluster.can_i("delete", "persistentvolumes", kubeconfig=scoped)


def test_uninstall_hook_releases_clusters_an_absent_operator_would_hold_for_ever(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, tmp_path: Path
) -> None:
    custom = kclient.CustomObjectsApi(kube_api)
    with namespaces(kube_api, 1) as (apps,), \
            release(kube_cluster, "callfs", kube_namespace, "csi.enabled=false", "uninstall.releaseFinalizers=true"):
        # What the operator leaves on a CallFSCluster it has seen (kopf's finalizer), then the operator is gone.
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CallFSCluster",
                "metadata": {"name": "demo", "finalizers": [FINALIZER, "example.com/keep"]}, "spec": {}}
        custom.create_namespaced_custom_object(GROUP, VERSION, apps, PLURAL, body)
        custom.delete_namespaced_custom_object(GROUP, VERSION, apps, PLURAL, "demo")
        held: Any = custom.get_namespaced_custom_object(GROUP, VERSION, apps, PLURAL, "demo")
        assert held["metadata"]["deletionTimestamp"]  # Terminating, and it would stay so

        pod, identity = hook_identity(kube_cluster, "callfs", kube_namespace, "pre-delete", tmp_path / "kubeconfig")
        done = run_hook_command(pod, identity)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"released {apps}/demo"
        left: Any = custom.get_namespaced_custom_object(GROUP, VERSION, apps, PLURAL, "demo")
        assert left["metadata"]["finalizers"] == ["example.com/keep"]  # only the operator's is taken off
        custom.patch_namespaced_custom_object(GROUP, VERSION, apps, PLURAL, "demo", {"metadata": {"finalizers": None}})

        def gone() -> bool:
            try:
                custom.get_namespaced_custom_object(GROUP, VERSION, apps, PLURAL, "demo")
            except kclient.ApiException as exc:
                return exc.status == 404
            return False

        wait_for(gone, 30, "the CallFSCluster deleted")


def test_storage_class_changes_by_deleting_it_then_upgrading(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str
) -> None:
    """The README's "Changing the StorageClass": parameters are immutable, so an upgrade that changes them fails
    until the class is deleted; then the same upgrade creates it anew."""
    wait_for(lambda: csi_driver_gone(kube_api), 60, f"CSIDriver {DRIVER} absent")
    storage = kclient.StorageV1Api(kube_api)
    name = f"callfs-{kube_namespace}"
    common = ("operator.enabled=false", f"csi.storageClass.name={name}")
    with namespaces(kube_api, 1) as (apps,), \
            release(kube_cluster, "callfs", kube_namespace, *common, f"csi.storageClass.cluster={apps}/one") as notes:
        assert f"StorageClass {name} become volumes on {apps}/one" in notes
        upgrade = ("upgrade", "callfs", str(CHART), "-n", kube_namespace, "--reuse-values",
                   "--set", f"csi.storageClass.cluster={apps}/two")
        with pytest.raises(subprocess.CalledProcessError) as refused:
            helm(kube_cluster, *upgrade)
        assert "StorageClass" in refused.value.stderr and "field is immutable" in refused.value.stderr
        assert storage.read_storage_class(name).parameters["cluster"] == f"{apps}/one"
        kube_cluster.kubectl("delete", "storageclass", name)
        helm(kube_cluster, *upgrade)
        sc = storage.read_storage_class(name)
        assert sc.parameters["cluster"] == f"{apps}/two"
        assert sc.parameters["csi.storage.k8s.io/provisioner-secret-name"] == "two-api-key"
        # Nodes stage each volume with its own key (csi.volumeKeys, on by default), whatever the cluster.
        assert sc.parameters["csi.storage.k8s.io/node-stage-secret-name"] == "callfs-volume-${pv.name}"
