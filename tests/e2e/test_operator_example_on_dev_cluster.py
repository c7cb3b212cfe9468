"""The CallFSCluster examples as a user applies them, on the dev cluster's own storage.

``examples/minimal.yaml`` names no StorageClass: its claims get the cluster's default class, which
``hack/dev-cluster.sh up`` creates (``standard``, no provisioner, with a pool of pre-created PersistentVolumes).
The file is applied unchanged with ``kubectl apply -n <namespace> -f``, and the operator
(``python -m callfs_operator.main``, cluster-wide) must take it to ``Ready=True`` with every node ready, as
``kubectl get cfs`` shows it. The operator runs with the admin kubeconfig here; the chart's RBAC is proven by
``test_operator_cluster.py``.
"""

from __future__ import annotations

import json
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
CRD = REPO / "charts" / "callfs" / "crds" / "callfsclusters.yaml"
MINIMAL = REPO / "examples" / "minimal.yaml"
GROUP, VERSION, PLURAL = "callfs.io", "v1alpha1", "callfsclusters"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
CONVERGE = 120  # seconds for the operator and the controllers on this 2-core machine


@pytest.fixture(scope="module")
def operator(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The CRD applied and the operator running cluster-wide (1 s resync); yields its log file. SIGTERM at the
    end."""
    kube_cluster.kubectl("apply", "-f", str(CRD))
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/callfsclusters.callfs.io")
    running = OperatorProcess(kube_cluster.kubeconfig, tmp_path_factory.mktemp("operator-examples") / "operator.log")
    try:
        running.start(resync=1)
        yield running.log
    finally:
        running.stop()


def default_storage_class(api: kclient.ApiClient) -> str:
    """The name of the one StorageClass annotated as the cluster default."""
    classes = api.sanitize_for_serialization(kclient.StorageV1Api(api).list_storage_class().items)
    defaults = [sc["metadata"]["name"] for sc in classes
                if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"]
    assert len(defaults) == 1, f"expected one default StorageClass, found {defaults}"
    return str(defaults[0])


def ready_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return c  # type: ignore[no-any-return]
    return None


def test_minimal_example_becomes_ready_on_the_default_storage_class(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, operator: Path,
) -> None:
    example = yaml.safe_load(MINIMAL.read_text())
    assert "storageClassName" not in json.dumps(example), "the minimal example must rely on the default class"
    name = example["metadata"]["name"]
    default_class = default_storage_class(kube_api)

    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", str(MINIMAL))

    custom = kclient.CustomObjectsApi(kube_api)

    def get() -> dict[str, Any]:
        obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, name)
        return obj

    def ready() -> dict[str, Any] | None:
        obj = get()
        c = ready_condition(obj)
        return obj if c is not None and c["status"] == "True" else None

    try:
        obj = wait_for(ready, CONVERGE, f"Ready=True on {kube_namespace}/{name}")
    except AssertionError as exc:
        status = get().get("status")
        raise AssertionError(f"{exc}\nstatus: {json.dumps(status)}\noperator log:\n"
                             f"{operator.read_text(errors='replace')[-4000:]}") from None

    replicas = obj["spec"]["replicas"]
    assert obj["status"]["readyNodes"] == replicas == 3
    assert obj["status"]["phase"] == "Running"

    # Every claim of the cluster (nodes, PostgreSQL, Redis) got the default class and is bound to a volume of it.
    core = kclient.CoreV1Api(kube_api)
    claims = kube_api.sanitize_for_serialization(core.list_namespaced_persistent_volume_claim(
        kube_namespace, label_selector=f"app.kubernetes.io/instance={name}").items)
    assert {c["metadata"]["name"] for c in claims} == (
        {f"data-{name}-node-{i}" for i in range(replicas)} | {f"data-{name}-postgres-0", f"data-{name}-redis-0"})
    for claim in claims:
        assert claim["spec"]["storageClassName"] == default_class, claim["metadata"]["name"]
        assert claim["status"]["phase"] == "Bound", claim["metadata"]["name"]
        volume = kube_api.sanitize_for_serialization(core.read_persistent_volume(claim["spec"]["volumeName"]))
        assert volume["spec"]["storageClassName"] == default_class

    # What a user sees: `kubectl get cfs` prints the printer columns with Ready True and all nodes ready.
    table = kube_cluster.kubectl("get", "cfs", name, "-n", kube_namespace, "--no-headers")
    assert table.split()[:4] == [name, "True", f"{replicas}/{replicas}", "Running"], table
