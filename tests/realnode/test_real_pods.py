"""The chart and the minimal example on a real node: our images run as real containers.

``helm install`` puts the chart (the operator, our image from ``Dockerfile.operator``) into ``callfs-system``;
``kubectl apply -f examples/minimal.yaml`` then makes the operator create the storage nodes (our image from
``Dockerfile.node``), PostgreSQL and Redis (images built from Debian's packages, under the operator's default
image names), all scheduled onto the real node (the kwok nodes are cordoned): each pod must be Running with its
containers really started by containerd, and the CallFSCluster must reach Ready=True, which the operator
computes from the nodes' own ``/v1/cluster/nodes`` reached through the cluster's Service. The test also asks a
node itself, through that Service's ClusterIP (kube-proxy's rules), who the cluster members are, writes a file
through it, deletes a storage node's pod and reads the file back once the StatefulSet has replaced the pod.

A second CallFSCluster whose PostgreSQL cannot be reached (its DSN names a closed port on the pod's own
loopback) makes the storage node exit at start, again and again: the kubelet puts its container into
CrashLoopBackOff, and the operator must say so (Degraded and Ready=False, reason CrashLoopBackOff, the pod, the
container and how it last exited), not "no problems found".
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kclient

from support.kube import KubeCluster
from support.realnode import RealNode, cluster_services, describe, pods, really_running
from support.waiting import wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "callfs"
MINIMAL = REPO / "examples" / "minimal.yaml"
RELEASE = "callfs"
SYSTEM_NAMESPACE = "callfs-system"
GROUP, VERSION, PLURAL = "callfs.io", "v1alpha1", "callfsclusters"
OPERATOR_READY = 180  # seconds for the operator pod to start (image local, Python start-up on 2 cores)
CLUSTER_READY = 420  # seconds for PostgreSQL, Redis and three storage nodes to start and see each other
CRASH_LOOP = 300  # seconds for a node that exits at start to be in CrashLoopBackOff (kubelet back-off: 10 s, 20 s...)


@pytest.fixture(scope="module")
def chart(real_node: RealNode) -> Iterator[float]:
    """``helm install`` of the chart (operator; the CSI driver is off) with our images; yields seconds to the
    operator pod Running. ``helm uninstall`` at the end."""
    cluster = real_node.cluster
    start = time.monotonic()
    cluster.helm("install", RELEASE, str(CHART), "--kubeconfig", str(cluster.kubeconfig), "--namespace",
                 SYSTEM_NAMESPACE, "--create-namespace", "--set", "csi.enabled=false", timeout=120)
    try:
        yield start
    finally:
        cluster.helm("uninstall", RELEASE, "--kubeconfig", str(cluster.kubeconfig), "--namespace", SYSTEM_NAMESPACE,
                     "--wait", "--timeout", "120s", timeout=180)


def test_chart_and_minimal_example_run_as_real_pods(
    real_node: RealNode, kube_api: kclient.ApiClient, kube_namespace: str, chart: float,
) -> None:
    cluster: KubeCluster = real_node.cluster

    def operator_running() -> list[dict[str, Any]] | None:
        found = pods(kube_api, SYSTEM_NAMESPACE, "app.kubernetes.io/component=operator")
        return found if found and all(really_running(p, real_node.name) for p in found) else None

    try:
        wait_for(operator_running, OPERATOR_READY, "the operator pod Running on the real node")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(kube_api, SYSTEM_NAMESPACE)}") from None
    operator_up = time.monotonic() - chart

    example = yaml.safe_load(MINIMAL.read_text())
    name = example["metadata"]["name"]
    applied = time.monotonic()
    cluster.kubectl("apply", "-n", kube_namespace, "-f", str(MINIMAL))
    custom = kclient.CustomObjectsApi(kube_api)

    def ready() -> dict[str, Any] | None:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, name)
        conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        return obj if conditions.get("Ready", {}).get("status") == "True" else None

    try:
        obj = wait_for(ready, CLUSTER_READY, f"Ready=True on {kube_namespace}/{name}")
    except AssertionError as exc:
        status = custom.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, name).get("status")
        raise AssertionError(f"{exc}\nstatus: {json.dumps(status)}\n{describe(kube_api, kube_namespace)}") from None
    to_ready = time.monotonic() - applied
    replicas = obj["spec"]["replicas"]
    assert obj["status"]["readyNodes"] == replicas == 3

    # Every pod of the cluster runs for real on the real node: three storage nodes, PostgreSQL, Redis.
    members = pods(kube_api, kube_namespace, f"app.kubernetes.io/instance={name}")
    names = {p["metadata"]["name"] for p in members}
    assert names == {f"{name}-node-{i}" for i in range(replicas)} | {f"{name}-postgres-0", f"{name}-redis-0"}
    not_running = [p["metadata"]["name"] for p in members if not really_running(p, real_node.name)]
    assert not not_running, f"not really running: {not_running}\n{describe(kube_api, kube_namespace)}"

    # The REST API through the client Service's ClusterIP (kube-proxy's rules on this host): every node a member.
    key = cluster.kubectl("get", "secret", f"{name}-api-key", "-n", kube_namespace,
                          "-o", "jsonpath={.data.api-key}")
    api_key = base64.b64decode(key).decode()
    services = cluster_services(kube_api, kube_namespace, name)
    client = services["client"]
    url = f"http://{client['spec']['clusterIP']}:{client['spec']['ports'][0]['port']}/v1/cluster/nodes"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        view = json.load(response)
    # Every storage node is a member under its own instance ID. (The view may also list the pods' addresses from
    # the headless Service's DNS records as peers of unknown identity: the same nodes, found by IP.)
    named = {n["instance_id"] for n in view["nodes"] if n.get("instance_id")}
    assert named == {f"{name}-node-{i}" for i in range(replicas)}, view
    # Data survives the loss of a storage node's pod: a file written through the Service, the pod deleted, the
    # StatefulSet's replacement (a new container on the same volume) Running and the cluster Ready again, the file
    # read back through the Service.
    base = f"http://{client['spec']['clusterIP']}:{client['spec']['ports'][0]['port']}/v1/files/realnode/kept.txt"
    auth = {"Authorization": f"Bearer {api_key}"}
    body = b"written before the pod was deleted\n" * 100
    put = urllib.request.Request(base, data=body, method="PUT", headers=auth)
    with urllib.request.urlopen(put, timeout=30) as response:
        assert response.status == 201
    victim = f"{name}-node-0"
    old_uid = next(p["metadata"]["uid"] for p in members if p["metadata"]["name"] == victim)
    cluster.kubectl("delete", "pod", victim, "-n", kube_namespace, "--wait=true", timeout=120)

    def replaced() -> bool:
        pod = kube_api.sanitize_for_serialization(kclient.CoreV1Api(kube_api).read_namespaced_pod(victim,
                                                                                                   kube_namespace))
        return pod["metadata"]["uid"] != old_uid and really_running(pod, real_node.name) and ready() is not None

    try:
        wait_for(replaced, CLUSTER_READY, f"{victim} replaced, Running, and the cluster Ready again",
                 ignoring=(kclient.ApiException,))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(kube_api, kube_namespace)}") from None
    with urllib.request.urlopen(urllib.request.Request(base, headers=auth), timeout=30) as response:
        assert response.read() == body

    # The file was stored in blocks with two copies (the default in a cluster), and the operator says so.
    def redundant() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, name)
        found = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}.get("DataRedundant", {})
        return found if found.get("status") == "True" else None

    condition = wait_for(redundant, CLUSTER_READY, f"DataRedundant=True on {kube_namespace}/{name}")
    assert condition["reason"] == "Redundant" and "2 copies" in condition["message"], condition
    print(f"\nreal node: operator Running {operator_up:.1f} s after helm install; "
          f"minimal example Ready {to_ready:.1f} s after kubectl apply")



def _crashing_cluster(name: str) -> list[dict[str, Any]]:
    """A one-node CallFSCluster ``name`` on external stores nobody serves: a PostgreSQL DSN and a Redis address on
    closed ports of the pod's own loopback (the connection is refused at once; nothing leaves the pod), and the
    Secret holding them."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-stores"},
              "stringData": {"dsn": "postgresql://callfs:callfs@127.0.0.1:1/callfs", "address": "127.0.0.1:2"}}
    cluster = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CallFSCluster", "metadata": {"name": name},
               "spec": {"replicas": 1, "metadata": {"externalSecret": {"name": f"{name}-stores"}},
                        "locks": {"externalSecret": {"name": f"{name}-stores"}}}}
    return [secret, cluster]


def test_a_really_crash_looping_node_is_reported(
    real_node: RealNode, kube_api: kclient.ApiClient, kube_namespace: str, chart: float,
) -> None:
    name = "crashing"
    real_node.cluster.kubectl("apply", "-n", kube_namespace, "-f", "-",
                              stdin=yaml.safe_dump_all(_crashing_cluster(name)))
    custom = kclient.CustomObjectsApi(kube_api)

    def conditions() -> dict[str, dict[str, Any]]:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, name)
        return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}

    def reported() -> dict[str, dict[str, Any]] | None:
        found = conditions()
        degraded, ready = found.get("Degraded", {}), found.get("Ready", {})
        return found if (degraded.get("status"), degraded.get("reason"), ready.get("status"), ready.get("reason")) \
            == ("True", "CrashLoopBackOff", "False", "CrashLoopBackOff") else None

    try:
        found = wait_for(reported, CRASH_LOOP, f"Degraded=True and Ready=False (CrashLoopBackOff) on {name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nconditions: {json.dumps(conditions())}\n"
                             f"{describe(kube_api, kube_namespace)}") from None
    # The kubelet really restarted the container: the pod's own status says so, and the message quotes it.
    pod = kube_api.sanitize_for_serialization(kclient.CoreV1Api(kube_api).read_namespaced_pod(f"{name}-node-0",
                                                                                              kube_namespace))
    (status,) = pod["status"]["containerStatuses"]
    assert status["restartCount"] >= 1 and (status.get("lastState") or {}).get("terminated", {}).get("exitCode")
    message = found["Degraded"]["message"]
    assert message.startswith(f"pod {kube_namespace}/{name}-node-0 container callfs: CrashLoopBackOff, restarted "), \
        message
    assert "last exit Error (code " in message, message
    cluster = real_node.cluster
    cluster.kubectl("delete", PLURAL, name, "-n", kube_namespace, "--wait=true", timeout=180)
