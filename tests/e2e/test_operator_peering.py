"""Two operator replicas with kopf peering, namespace-scoped, on the real control plane: one reconciles, the
other stands by and takes over when the first one stops.

Everything comes from the chart rendered with ``operator.peering`` set: the kopf peering CRDs (``crds/``), the
``KopfPeering`` object, and the RBAC the replicas run with (the chart's ClusterRole, renamed so that it does not
touch the one other e2e tests use). Both replicas keep the default priority — drawn at random, because kopf
pauses every replica when two tie.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
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
CHART = REPO / "charts" / "callfs"
GROUP, VERSION, PLURAL = "callfs.io", "v1alpha1", "callfsclusters"
PEERING = "callfs-e2e"
PAUSED = "Pausing operations in favour of"  # kopf's log lines
RESUMED = "Resuming operations after the pause"
CONVERGE = 120  # seconds


def rendered(kube_cluster: KubeCluster, namespace: str) -> list[dict[str, Any]]:
    out = kube_cluster.helm("template", "callfs", str(CHART), "--namespace", namespace, "--include-crds",
                            "--set", f"operator.peering={PEERING}", "--set", "operator.allNamespaces=false",
                            "--set", f"operator.watchNamespaces={{{namespace}}}")
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture
def peered_identity(kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The chart's CRDs and the peering object applied; a kubeconfig of a ServiceAccount bound to the chart's operator
    ClusterRole (copied under a unique name) and to its Role in the watched namespace (a namespace-scoped install).
    The cluster-scoped copies are deleted afterwards."""
    docs = rendered(kube_cluster, kube_namespace)
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert {d["metadata"]["name"] for d in crds} == {"callfsclusters.callfs.io", "kopfpeerings.kopf.dev",
                                                     "clusterkopfpeerings.kopf.dev"}
    kube_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    for crd in crds:
        kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}")
    # Established is not yet served from the watch cache ("storage is (re)initializing", 429): wait for a list
    # at resourceVersion=0, which the watch cache answers, so that the replicas start on a settled API.
    for path in (f"/apis/kopf.dev/v1/namespaces/{kube_namespace}/kopfpeerings",
                 f"/apis/callfs.io/v1alpha1/namespaces/{kube_namespace}/callfsclusters"):
        wait_for(lambda p=path: served(kube_cluster, f"{p}?resourceVersion=0"), 60, f"{path} served")
    (peering,) = [d for d in docs if d["kind"] == "KopfPeering"]
    assert (peering["metadata"]["name"], peering["metadata"]["namespace"]) == (PEERING, kube_namespace)

    suffix = uuid.uuid4().hex[:8]
    role_name, account = f"callfs-operator-{suffix}", "callfs-operator"
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "callfs-operator"]
    role["metadata"]["name"] = role_name
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": role_name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
               "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": kube_namespace}]}
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": kube_namespace}}
    namespaced = [d for d in docs
                  if d["kind"] in ("Role", "RoleBinding") and d["metadata"]["name"] == "callfs-operator"]
    assert [d["metadata"]["namespace"] for d in namespaced] == [kube_namespace] * 2
    kube_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([role, binding, sa, peering, *namespaced]))
    try:
        yield kube_cluster.service_account_kubeconfig(kube_namespace, account, tmp_path / "kubeconfig")
    finally:
        kube_cluster.kubectl("delete", "--ignore-not-found", f"clusterrolebinding/{role_name}",
                             f"clusterrole/{role_name}")


def served(kube_cluster: KubeCluster, path: str) -> bool:
    try:
        kube_cluster.kubectl("get", "--raw", path)
    except subprocess.CalledProcessError:
        return False
    return True


def priority_of(replica: OperatorProcess) -> int | None:
    found = re.search(r"kopf peering '[^']+' with priority (\d+)", replica.read_log())
    return int(found.group(1)) if found else None


def peers(kube_cluster: KubeCluster, namespace: str) -> dict[str, int]:
    """Identity → priority of the replicas recorded in the peering object."""
    obj = json.loads(kube_cluster.kubectl("get", "kopfpeering", PEERING, "-n", namespace, "-o", "json"))
    return {identity: int(record["priority"]) for identity, record in (obj.get("status") or {}).items()}


def children_exist(api: kclient.ApiClient, namespace: str, name: str) -> bool:
    secrets = kclient.CoreV1Api(api).list_namespaced_secret(
        namespace, label_selector=f"app.kubernetes.io/instance={name}").items
    return bool(secrets)


def create(api: kclient.ApiClient, namespace: str, name: str) -> None:
    kclient.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CallFSCluster", "metadata": {"name": name},
        "spec": {"replicas": 1}})


def test_one_replica_reconciles_and_the_other_takes_over(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, peered_identity: Path,
    tmp_path: Path
) -> None:
    replicas = [OperatorProcess(peered_identity, tmp_path / f"operator-{i}.log", scope=("--namespace", kube_namespace),
                                extra=("--peering", PEERING)) for i in range(2)]
    try:
        for replica in replicas:
            replica.start()
        priorities = [wait_for(lambda r=r: priority_of(r), 30, "the replica's peering priority") for r in replicas]
        assert priorities[0] != priorities[1], "tied priorities pause every replica"
        leader, follower = sorted(replicas, key=lambda r: -priorities[replicas.index(r)])
        wait_for(lambda: len(peers(kube_cluster, kube_namespace)) == 2, CONVERGE, "both replicas in the peering")
        assert sorted(peers(kube_cluster, kube_namespace).values()) == sorted(priorities)

        create(kube_api, kube_namespace, "first")
        wait_for(lambda: children_exist(kube_api, kube_namespace, "first"), CONVERGE, "the first cluster's children")
        assert PAUSED not in leader.read_log()

        resumed = follower.read_log().count(RESUMED)  # once already if it started alone
        leader.stop()  # a clean exit takes the leader out of the peering object at once
        wait_for(lambda: follower.read_log().count(RESUMED) > resumed, CONVERGE, "the follower to resume")
        create(kube_api, kube_namespace, "second")
        wait_for(lambda: children_exist(kube_api, kube_namespace, "second"), CONVERGE,
                 "the second cluster's children, made by the follower")

        custom = kclient.CustomObjectsApi(kube_api)
        for name in ("first", "second"):  # the finalizer needs a live operator
            custom.delete_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, name)

        def gone() -> bool:
            items = custom.list_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL)["items"]
            return not items

        wait_for(gone, CONVERGE, "both clusters deleted")
        assert 'forbidden: User "system:serviceaccount:' not in follower.read_log() + leader.read_log()
    except AssertionError as exc:
        tails = "\n".join(f"--- {r.log.name}\n{r.read_log()[-6000:]}" for r in replicas if r.log.exists())
        peering = kube_cluster.kubectl("get", "kopfpeering", PEERING, "-n", kube_namespace, "-o", "yaml")
        raise AssertionError(f"{exc}\n{tails}\n--- peering\n{peering}") from None
    finally:
        for replica in replicas:
            replica.stop()
