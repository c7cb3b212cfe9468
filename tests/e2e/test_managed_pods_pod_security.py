"""The pods the operator builds pass the API server's Pod Security admission at the ``restricted`` level.

A namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` refuses any pod that breaks the profile.
The pod template of each managed StatefulSet (storage nodes, PostgreSQL, Redis; with TLS, S3 and every
scheduling field set too) is created there as a Pod with a server-side dry run: admitted, nothing stored. A pod
with no security context is shown refused first, so the namespace really enforces the profile.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as kclient

from callfs_operator.builders import children
from callfs_operator.spec import parse_cluster

pytestmark = pytest.mark.e2e

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}
SPECS = {
    "defaults": {},
    "everything": {
        "tls": {"secretName": "t"}, "backend": {"type": "s3", "bucket": "b", "credentialsSecret": "s3"},
        "imagePullSecrets": [{"name": "r"}], "priorityClassName": "system-cluster-critical",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "resources": {"requests": {"cpu": "1"}}, "metadata": {"resources": {"limits": {"memory": "1Gi"}}},
    },
}


def first_pod(sts: dict[str, Any]) -> dict[str, Any]:
    """Pod 0 of StatefulSet ``sts`` as its controller makes it: the template, plus a volume per claim template."""
    name = f"{sts['metadata']['name']}-0"
    spec = dict(sts["spec"]["template"]["spec"])
    claims = [{"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": f"{t['metadata']['name']}-{name}"}}
              for t in sts["spec"].get("volumeClaimTemplates", [])]
    spec["volumes"] = [*spec.get("volumes", []), *claims]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {**sts["spec"]["template"]["metadata"], "name": name},
            "spec": spec}


def pods_of(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``StatefulSet name -> its pod 0``, for each managed StatefulSet of the spec."""
    cluster = parse_cluster(name, namespace, spec)
    return {o["metadata"]["name"]: first_pod(o) for o in children(cluster, {}) if o["kind"] == "StatefulSet"}


@pytest.mark.parametrize("variant", sorted(SPECS))
def test_managed_pods_are_admitted_in_a_restricted_namespace(
    kube_api: kclient.ApiClient, kube_namespace: str, variant: str
) -> None:
    core = kclient.CoreV1Api(kube_api)
    core.patch_namespace(kube_namespace, {"metadata": {"labels": RESTRICTED}})
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    with pytest.raises(kclient.ApiException) as refused:
        core.create_namespaced_pod(kube_namespace, bare, dry_run="All")
    assert refused.value.status == 403 and "violates PodSecurity" in str(refused.value.body)
    pods = pods_of("demo", kube_namespace, SPECS[variant])
    assert set(pods) == {"demo-node", "demo-postgres", "demo-redis"}
    for name, pod in pods.items():
        try:
            core.create_namespaced_pod(kube_namespace, pod, dry_run="All")
        except kclient.ApiException as exc:
            raise AssertionError(f"the pod of StatefulSet {name} is refused: {exc.body}") from None
