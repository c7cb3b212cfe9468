"""Proof that the test control plane is a real Kubernetes one, not an emulator.

Each test pins a behaviour that lives in the real API server or controller manager: structural-schema
validation, pruning and CEL rules of a CustomResourceDefinition (apiextensions-apiserver), the StatefulSet
controller plus the scheduler placing pods on (kwok) nodes, owner-reference garbage collection and namespace
deletion (kube-controller-manager). An emulator that only stores objects fails all of them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client as kclient

from support.kube import NODE_COUNT, KubeCluster
from support.waiting import wait_for

pytestmark = pytest.mark.e2e

CONVERGE_TIMEOUT = 90  # seconds for a controller to converge on this 2-core machine
GROUP = "proof.e2e.callfs.io"


def _widget_crd(plural: str) -> dict[str, Any]:
    """A namespaced CRD with a structural schema, a CEL rule across two fields, and a status subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["minReplicas", "maxReplicas"],
                                    "properties": {
                                        "minReplicas": {"type": "integer", "minimum": 1},
                                        "maxReplicas": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.minReplicas <= self.maxReplicas",
                                            "message": "minReplicas must not exceed maxReplicas",
                                        }
                                    ],
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def _api_error_message(error: kclient.ApiException) -> str:
    body = json.loads(error.body)
    return str(body["message"])


def _established(ext: kclient.ApiextensionsV1Api, name: str) -> bool:
    crd = ext.read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


def test_crd_cel_rule_rejects_a_bad_object_with_the_api_servers_message(
    kube_api: kclient.ApiClient, kube_namespace: str
) -> None:
    ext = kclient.ApiextensionsV1Api(kube_api)
    custom = kclient.CustomObjectsApi(kube_api)
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    crd = _widget_crd(plural)
    ext.create_custom_resource_definition(crd)
    try:
        wait_for(lambda: _established(ext, crd["metadata"]["name"]), CONVERGE_TIMEOUT, "the CRD to be Established")

        def create(spec: dict[str, Any]) -> dict[str, Any]:
            body = {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Widget",
                "metadata": {"generateName": "w-"},
                "spec": spec,
            }
            result: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, "v1", kube_namespace, plural, body)
            return result

        # The CEL rule, evaluated by the API server.
        with pytest.raises(kclient.ApiException) as cel:
            create({"minReplicas": 5, "maxReplicas": 2})
        assert cel.value.status == 422
        assert "minReplicas must not exceed maxReplicas" in _api_error_message(cel.value)

        # OpenAPI schema validation: type and minimum.
        with pytest.raises(kclient.ApiException) as typed:
            create({"minReplicas": "three", "maxReplicas": 2})
        assert typed.value.status == 422
        assert "spec.minReplicas" in _api_error_message(typed.value)
        with pytest.raises(kclient.ApiException) as minimum:
            create({"minReplicas": 0, "maxReplicas": 2})
        assert "should be greater than or equal to 1" in _api_error_message(minimum.value)

        # A valid object is stored, with the unknown field pruned (structural schema).
        good = create({"minReplicas": 1, "maxReplicas": 3, "colour": "blue"})
        assert good["spec"] == {"minReplicas": 1, "maxReplicas": 3}

        # Status subresource: status written through the main resource is ignored.
        good["status"] = {"phase": "Ready"}
        updated = custom.replace_namespaced_custom_object(
            GROUP, "v1", kube_namespace, plural, good["metadata"]["name"], good
        )
        assert "status" not in updated
        patched = custom.patch_namespaced_custom_object_status(
            GROUP, "v1", kube_namespace, plural, good["metadata"]["name"], {"status": {"phase": "Ready"}}
        )
        assert patched["status"] == {"phase": "Ready"}
    finally:
        ext.delete_custom_resource_definition(crd["metadata"]["name"])


def test_statefulset_of_three_gets_three_running_pods_on_kwok_nodes(
    kube_api: kclient.ApiClient, kube_namespace: str
) -> None:
    apps = kclient.AppsV1Api(kube_api)
    core = kclient.CoreV1Api(kube_api)
    labels = {"app": "proof"}
    apps.create_namespaced_stateful_set(
        kube_namespace,
        kclient.V1StatefulSet(
            metadata=kclient.V1ObjectMeta(name="proof"),
            spec=kclient.V1StatefulSetSpec(
                replicas=3,
                service_name="proof",
                selector=kclient.V1LabelSelector(match_labels=labels),
                template=kclient.V1PodTemplateSpec(
                    metadata=kclient.V1ObjectMeta(labels=labels),
                    spec=kclient.V1PodSpec(
                        containers=[kclient.V1Container(name="main", image="callfs.invalid/never-pulled:1")]
                    ),
                ),
            ),
        ),
    )

    def ready_replicas() -> int | None:
        status = apps.read_namespaced_stateful_set_status("proof", kube_namespace).status
        return 3 if status.ready_replicas == 3 else None

    wait_for(ready_replicas, CONVERGE_TIMEOUT, "readyReplicas: 3")

    pods = core.list_namespaced_pod(kube_namespace, label_selector="app=proof").items
    assert sorted(p.metadata.name for p in pods) == ["proof-0", "proof-1", "proof-2"]
    node_names = {f"kwok-node-{i}" for i in range(NODE_COUNT)}
    for pod in pods:
        assert pod.spec.node_name in node_names, pod.spec.node_name
        assert pod.status.phase == "Running"
        assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
        assert pod.metadata.owner_references[0].kind == "StatefulSet"


def test_deleting_an_owner_garbage_collects_what_it_owns(kube_api: kclient.ApiClient, kube_namespace: str) -> None:
    core = kclient.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        kube_namespace, kclient.V1ConfigMap(metadata=kclient.V1ObjectMeta(name="owner"))
    )
    for name in ("owned-a", "owned-b"):
        core.create_namespaced_config_map(
            kube_namespace,
            kclient.V1ConfigMap(
                metadata=kclient.V1ObjectMeta(
                    name=name,
                    owner_references=[
                        kclient.V1OwnerReference(
                            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                        )
                    ],
                )
            ),
        )
    bystander = core.create_namespaced_config_map(
        kube_namespace, kclient.V1ConfigMap(metadata=kclient.V1ObjectMeta(name="bystander"))
    )

    core.delete_namespaced_config_map("owner", kube_namespace, propagation_policy="Background")

    def remaining() -> set[str]:
        return {cm.metadata.name for cm in core.list_namespaced_config_map(kube_namespace).items}

    wait_for(
        lambda: not ({"owner", "owned-a", "owned-b"} & remaining()),
        CONVERGE_TIMEOUT,
        "the garbage collector to delete the owned config maps",
    )
    assert bystander.metadata.name in remaining()


def test_namespace_deletion_completes_and_removes_its_pods(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient
) -> None:
    core = kclient.CoreV1Api(kube_api)
    name = f"e2e-doomed-{uuid.uuid4().hex[:8]}"
    core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=name)))
    wait_for(
        lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
        CONVERGE_TIMEOUT,
        "the default service account",
    )
    core.create_namespaced_pod(
        name,
        kclient.V1Pod(
            metadata=kclient.V1ObjectMeta(name="resident"),
            spec=kclient.V1PodSpec(containers=[kclient.V1Container(name="main", image="callfs.invalid/x:1")]),
        ),
    )
    wait_for(
        lambda: core.read_namespaced_pod("resident", name).status.phase == "Running",
        CONVERGE_TIMEOUT,
        "the pod to run on a kwok node",
    )

    core.delete_namespace(name)

    def gone() -> bool:
        try:
            ns = core.read_namespace(name)
        except kclient.ApiException as e:
            if e.status == 404:
                return True
            raise
        assert ns.status.phase == "Terminating"
        return False

    wait_for(gone, CONVERGE_TIMEOUT, f"namespace {name} to be deleted")
    assert name not in kube_cluster.kubectl("get", "namespaces", "-o", "name")
