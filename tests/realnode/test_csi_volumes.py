"""CallFS volumes in real pods: the chart with its CSI driver on a real kubelet, a claim, and an app writing to it.

``helm install`` puts the chart into ``callfs-system`` with the CSI driver on and a StorageClass ``callfs`` for the
CallFSCluster ``demo`` (examples/minimal.yaml, applied in a namespace of this module). The node plugin registers
itself with the real kubelet (no node-driver-registrar: the kubelet's CSINode lists the driver); the controller
(callfs-csi, csi-provisioner and csi-resizer, images built by hack/images.sh) provisions a claim; an app pod (our
node image running a Python loop) mounts it through FUSE (the kubelet calls NodeStageVolume and
NodePublishVolume on the plugin) and writes files, which the REST API then serves from ``/volumes/<pv name>``
through the cluster's Service. The data outlives the app pod (a new pod of the same claim checks every file
through its mount), a storage node's pod (replaced by its StatefulSet) and a crash of the plugin container (the
FUSE daemons live in the mount service container, so the app's mount keeps serving, and the restarted plugin
registers again and mounts the claim into a new pod).

The module prints, and bench/README.md records, the time from the claim's creation to it being Bound, to the app
pod Running with the volume mounted, and to the app's first byte written to it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kclient

from support.kube import KubeCluster
from support.realnode import RealNode, cluster_services, describe, kill_container, pods, really_running
from support.waiting import wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "callfs"
MINIMAL = REPO / "examples" / "minimal.yaml"
CRD = CHART / "crds" / "callfsclusters.yaml"
RELEASE = "callfs"
SYSTEM_NAMESPACE = "callfs-system"
DRIVER = "csi.callfs.io"
GROUP, VERSION, PLURAL = "callfs.io", "v1alpha1", "callfsclusters"
CLUSTER_READY = 420  # seconds for PostgreSQL, Redis and three storage nodes to start and see each other
CSI_READY = 240  # seconds for the controller and node plugin pods to run and the plugin to register
POD_READY = 240  # seconds for an app pod to be Running with its volume mounted (provisioning included)
FILES = 16  # files the app writes, FILE_SIZE bytes each
FILE_SIZE = 256 << 10
APP_IMAGE = "ghcr.io/callfs/callfs-node:0.1.0"  # hack/images.sh: Dockerfile.node

# What the app runs (python3 of the node image). First run on an empty volume: the start time (the first bytes
# written), FILES files of known content, then "done". A later run (a new pod of the same claim) checks every file
# through its own mount and writes verified-<pod> ("ok", or what differed). Every run then appends a line to
# beat-<pod> twice a second and exits on the first error (the kubelet counts the restart).
APP = f"""
import hashlib, os, pathlib, sys, time
data, me = pathlib.Path("/data"), os.environ["HOSTNAME"]
def content(i):
    return hashlib.sha256(str(i).encode()).digest() * ({FILE_SIZE} // 32)
def write(path, payload):
    with open(path, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
if not (data / "first-write").exists():
    write(data / "first-write", repr(time.time()).encode())
    for i in range({FILES}):
        write(data / f"file-{{i}}", content(i))
    write(data / "done", b"ok")
else:
    bad = [i for i in range({FILES}) if (data / f"file-{{i}}").read_bytes() != content(i)]
    write(data / f"verified-{{me}}", b"ok" if not bad else f"differ: {{bad}}".encode())
n = 0
while True:
    with open(data / f"beat-{{me}}", "a") as f:
        f.write(f"{{n}}\\n")
    n += 1
    time.sleep(0.5)
"""


def _content(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (FILE_SIZE // 32)


@dataclass(frozen=True)
class Cluster:
    """The CallFSCluster the StorageClass names, reached through its client Service's ClusterIP."""

    namespace: str
    name: str
    url: str
    api_key: str

    def get(self, path: str) -> bytes | None:
        """The file at ``path`` (REST ``GET /v1/files<path>``), ``None`` when it does not exist."""
        request = urllib.request.Request(f"{self.url}/v1/files{path}",
                                         headers={"Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


@pytest.fixture(scope="module")
def demo(real_node: RealNode, kube_api: kclient.ApiClient) -> Iterator[tuple[str, str]]:
    """examples/minimal.yaml (CallFSCluster ``demo``) applied in a namespace of its own: ``(namespace, name)``.
    It becomes Ready once the ``chart`` fixture's operator runs (the chart's StorageClass names it, so it comes
    first, with the chart's CRD applied beforehand; ``helm install`` leaves an existing CRD as it is)."""
    namespace = f"realnode-csi-{uuid.uuid4().hex[:6]}"
    core = kclient.CoreV1Api(kube_api)
    core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=namespace)))
    try:
        real_node.cluster.kubectl("apply", "-f", str(CRD))
        real_node.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                                  "crd/callfsclusters.callfs.io", timeout=90)
        real_node.cluster.kubectl("apply", "-n", namespace, "-f", str(MINIMAL))
        yield namespace, yaml.safe_load(MINIMAL.read_text())["metadata"]["name"]
    finally:
        core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def chart(real_node: RealNode, kube_api: kclient.ApiClient, demo: tuple[str, str]) -> Iterator[Cluster]:
    """``helm install`` of the chart with the CSI driver on (its defaults: built-in registration and health, the
    mount service) and a StorageClass for ``demo``; waits until that cluster is Ready and the plugin is
    registered with the kubelet. Yields the cluster, with its URL and key. ``helm uninstall`` at the end."""
    kube = real_node.cluster
    namespace, name = demo
    kube.helm("install", RELEASE, str(CHART), "--kubeconfig", str(kube.kubeconfig), "--namespace", SYSTEM_NAMESPACE,
              "--create-namespace", "--set", f"csi.storageClass.cluster={namespace}/{name}",
              timeout=120)
    try:
        custom = kclient.CustomObjectsApi(kube_api)

        def ready() -> bool:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            conditions = {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}
            return conditions.get("Ready") == "True"

        try:
            wait_for(ready, CLUSTER_READY, f"Ready=True on {namespace}/{name}")
            wait_for(lambda: _registered(kube_api, real_node.name), CSI_READY,
                     f"{DRIVER} in the CSINode of {real_node.name} (the plugin registered itself)")
            wait_for(lambda: _csi_running(kube_api, real_node.name), CSI_READY, "the CSI pods Running")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{describe(kube_api, SYSTEM_NAMESPACE)}\n"
                                 f"{describe(kube_api, namespace)}") from None
        key = kube.kubectl("get", "secret", f"{name}-api-key", "-n", namespace, "-o", "jsonpath={.data.api-key}")
        client = cluster_services(kube_api, namespace, name)["client"]
        yield Cluster(namespace=namespace, name=name, api_key=base64.b64decode(key).decode(),
                      url=f"http://{client['spec']['clusterIP']}:{client['spec']['ports'][0]['port']}")
    finally:
        # The CallFSCluster goes while its operator runs (its finalizer), then the chart.
        kube.kubectl("delete", PLURAL, name, "-n", namespace, "--ignore-not-found", "--wait=true", timeout=180)
        kube.helm("uninstall", RELEASE, "--kubeconfig", str(kube.kubeconfig), "--namespace", SYSTEM_NAMESPACE,
                  "--wait", "--timeout", "180s", timeout=240)


def _registered(api: kclient.ApiClient, node: str) -> bool:
    # Read as plain JSON: while its last driver is unregistered, a CSINode holds "drivers": null, which the
    # client's typed model refuses to load.
    try:
        response = kclient.StorageV1Api(api).read_csi_node(node, _preload_content=False)
    except kclient.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    drivers = json.loads(response.data)["spec"].get("drivers") or []
    return any(d["name"] == DRIVER for d in drivers)


def _csi_running(api: kclient.ApiClient, node: str) -> bool:
    found = [p for p in pods(api, SYSTEM_NAMESPACE, "app.kubernetes.io/component in (csi-controller, csi-node)")
             if p["spec"].get("nodeName") == node]
    return len(found) == 2 and all(really_running(p, node) for p in found)


@dataclass
class Volume:
    """The claim, its volume's directory on the cluster, and the timings of its first use."""

    claim: str
    path: str
    bound_s: float
    running_s: float
    first_byte_s: float


def _app_pod(name: str, claim: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "csi-writer"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "Never",
                            "command": ["python3", "-c", APP], "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def _start_app(kube: KubeCluster, api: kclient.ApiClient, namespace: str, name: str, claim: str,
               node: str) -> dict[str, float]:
    """Create the app pod ``name`` on ``claim`` and wait until it runs with the volume mounted. Returns the
    monotonic times first seen: ``bound`` (the claim) and ``running`` (the pod), polled every 0.2 s."""
    kube.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(_app_pod(name, claim)))
    core = kclient.CoreV1Api(api)
    seen: dict[str, float] = {}

    def running() -> dict[str, float] | None:
        if "bound" not in seen:
            phase = core.read_namespaced_persistent_volume_claim(claim, namespace).status.phase
            if phase == "Bound":
                seen["bound"] = time.monotonic()
        pod = api.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
        if really_running(pod, node):
            seen.setdefault("bound", time.monotonic())
            seen["running"] = time.monotonic()
            return seen
        return None

    try:
        return wait_for(running, POD_READY, f"app pod {name} Running with its volume mounted", interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(api, namespace)}\n{describe(api, SYSTEM_NAMESPACE)}") from None


def _delete_pod(kube: KubeCluster, namespace: str, name: str) -> None:
    kube.kubectl("delete", "pod", name, "-n", namespace, "--wait=true", timeout=180)


@pytest.fixture(scope="module")
def volume(real_node: RealNode, kube_api: kclient.ApiClient, chart: Cluster) -> Iterator[Volume]:
    """A ReadWriteMany claim of the ``callfs`` StorageClass and the first app pod on it, which has written its
    files; timed from the claim's creation (wall clock for the first byte: the app reports it, same host)."""
    kube = real_node.cluster
    claim = "data"
    created, created_wall = time.monotonic(), time.time()
    kube.kubectl("apply", "-n", chart.namespace, "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
        "spec": {"storageClassName": "callfs", "accessModes": ["ReadWriteMany"],
                 "resources": {"requests": {"storage": "1Gi"}}}}))
    core = kclient.CoreV1Api(kube_api)
    seen = _start_app(kube, kube_api, chart.namespace, "writer-1", claim, real_node.name)
    pv = core.read_namespaced_persistent_volume_claim(claim, chart.namespace).spec.volume_name
    path = f"/volumes/{pv}"
    done = wait_for(lambda: chart.get(f"{path}/done"), POD_READY, f"the app's files in {path} (REST API)")
    assert done == b"ok"
    first = float(chart.get(f"{path}/first-write") or b"nan")
    info = Volume(claim=claim, path=path, bound_s=seen["bound"] - created, running_s=seen["running"] - created,
                  first_byte_s=first - created_wall)
    print(f"\nreal node CSI: claim Bound {info.bound_s:.1f} s, app pod Running with the volume mounted "
          f"{info.running_s:.1f} s, first byte written {info.first_byte_s:.1f} s after the claim was created")
    try:
        yield info
    finally:
        for pod in ("writer-1", "writer-2", "writer-3"):
            kube.kubectl("delete", "pod", pod, "-n", chart.namespace, "--ignore-not-found", "--wait=true",
                         timeout=180)
        kube.kubectl("delete", "pvc", claim, "-n", chart.namespace, "--wait=true", timeout=180)
        # The volume is deleted (DeleteVolume through csi-provisioner) before the chart and the cluster go.
        kube.kubectl("wait", "--for=delete", f"pv/{pv}", "--timeout=120s", timeout=150)


def _files_intact(cluster: Cluster, path: str) -> list[int]:
    """The indexes of the app's files the REST API serves with other content (or not at all)."""
    return [i for i in range(FILES) if cluster.get(f"{path}/file-{i}") != _content(i)]


def _beats(cluster: Cluster, path: str, pod: str) -> int:
    return len((cluster.get(f"{path}/beat-{pod}") or b"").splitlines())


def test_the_plugin_registered_itself_and_the_app_writes_through_its_mount(chart: Cluster, volume: Volume) -> None:
    assert _files_intact(chart, volume.path) == []
    beats = _beats(chart, volume.path, "writer-1")
    wait_for(lambda: _beats(chart, volume.path, "writer-1") > beats, 30, "the app's next writes")
    assert 0 < volume.first_byte_s < POD_READY


def test_a_new_app_pod_finds_every_file(real_node: RealNode, kube_api: kclient.ApiClient, chart: Cluster,
                                        volume: Volume) -> None:
    kube = real_node.cluster
    _delete_pod(kube, chart.namespace, "writer-1")
    _start_app(kube, kube_api, chart.namespace, "writer-2", volume.claim, real_node.name)
    verdict = wait_for(lambda: chart.get(f"{volume.path}/verified-writer-2"), 60,
                       "the new pod's check of the files through its mount")
    assert verdict == b"ok"
    assert _files_intact(chart, volume.path) == []


def test_data_survives_a_storage_node_pod_replaced_by_its_statefulset(
    real_node: RealNode, kube_api: kclient.ApiClient, chart: Cluster, volume: Volume,
) -> None:
    kube = real_node.cluster
    victim = f"{chart.name}-node-0"
    core = kclient.CoreV1Api(kube_api)
    old_uid = core.read_namespaced_pod(victim, chart.namespace).metadata.uid
    kube.kubectl("delete", "pod", victim, "-n", chart.namespace, "--wait=true", timeout=180)

    def replaced() -> bool:
        pod = kube_api.sanitize_for_serialization(core.read_namespaced_pod(victim, chart.namespace))
        return pod["metadata"]["uid"] != old_uid and really_running(pod, real_node.name)

    try:
        wait_for(replaced, CLUSTER_READY, f"{victim} replaced and Running", ignoring=(kclient.ApiException,))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(kube_api, chart.namespace)}") from None
    assert wait_for(lambda: _files_intact(chart, volume.path) == [] or None, 120, "every file served again",
                    ignoring=(urllib.error.URLError, OSError))
    _delete_pod(kube, chart.namespace, "writer-2")
    _start_app(kube, kube_api, chart.namespace, "writer-3", volume.claim, real_node.name)
    assert wait_for(lambda: chart.get(f"{volume.path}/verified-writer-3"), 60, "writer-3's check") == b"ok"


def test_the_mount_outlives_a_crash_of_the_plugin_container(
    real_node: RealNode, kube_api: kclient.ApiClient, chart: Cluster, volume: Volume,
) -> None:
    kube = real_node.cluster
    core = kclient.CoreV1Api(kube_api)
    writer = "writer-3"
    if not really_running(kube_api.sanitize_for_serialization(core.read_namespaced_pod(writer, chart.namespace)),
                          real_node.name):
        _start_app(kube, kube_api, chart.namespace, writer, volume.claim, real_node.name)
    (plugin,) = [p for p in pods(kube_api, SYSTEM_NAMESPACE, "app.kubernetes.io/component=csi-node")
                 if p["spec"]["nodeName"] == real_node.name]

    def restarts(pod: dict[str, Any], container: str) -> int:
        return int(next(c for c in pod["status"]["containerStatuses"] if c["name"] == container)["restartCount"])

    before = restarts(plugin, "callfs-csi")
    kill_container(plugin, "callfs-csi")
    crashed_at = _beats(chart, volume.path, writer)

    def back() -> bool:
        pod = kube_api.sanitize_for_serialization(core.read_namespaced_pod(plugin["metadata"]["name"],
                                                                           SYSTEM_NAMESPACE))
        return restarts(pod, "callfs-csi") > before and really_running(pod, real_node.name)

    try:
        wait_for(back, CSI_READY, "the plugin container restarted and Ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(kube_api, SYSTEM_NAMESPACE)}") from None
    # The app wrote on through the crash and the restart, without an error (it would have exited on one).
    wait_for(lambda: _beats(chart, volume.path, writer) > crashed_at + 4, 60, "the app's writes after the restart")
    app = kube_api.sanitize_for_serialization(core.read_namespaced_pod(writer, chart.namespace))
    assert restarts(app, "app") == 0, describe(kube_api, chart.namespace)
    mount_service = kube_api.sanitize_for_serialization(core.read_namespaced_pod(plugin["metadata"]["name"],
                                                                                 SYSTEM_NAMESPACE))
    assert restarts(mount_service, "callfs-mount-service") == 0
    # The restarted plugin registered itself again: the kubelet stages and publishes the claim for a new pod.
    wait_for(lambda: _registered(kube_api, real_node.name), CSI_READY, "the driver registered again")
    _start_app(kube, kube_api, chart.namespace, "writer-1", volume.claim, real_node.name)
    assert wait_for(lambda: chart.get(f"{volume.path}/verified-writer-1"), 60, "writer-1's check") == b"ok"
