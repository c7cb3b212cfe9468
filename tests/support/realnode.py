"""One real Kubernetes node for the test session, added to the ``kube_cluster`` by ``hack/real-node.sh``.

The node (``callfs-real-node``) runs pods for real: containerd and runc start their containers from the images
``hack/images.sh`` built from our Dockerfiles (plus PostgreSQL, Redis and the CSI sidecars), a kubelet mounts
their volumes, kube-proxy programs Services, CoreDNS answers cluster names, and a CNI bridge confined to this
machine gives them addresses. The start/stop logic is that script's, not repeated here.

While the node is up the kwok nodes are cordoned, so that everything a test creates is scheduled onto the real
node; they are uncordoned when it goes down. The node is one per machine (fixed ports, ``/var/lib/kubelet``):
run the ``realnode`` tests in a pytest process of their own, without workers (``hack/test.sh`` does).

Fixtures:

* ``real_node`` (session): a :class:`RealNode` (its name, the cluster, its logs).

Helpers for the tests on it: :func:`pods`, :func:`really_running`, :func:`describe` (pods, previous runs and events
for failure messages), :func:`cluster_services`, :func:`kill_container` (a crash, through the node's containerd).

When the lane cannot come up (not root, tools or images not built, no ``/dev/fuse``), the fixture *fails* under
``CI=true`` and otherwise skips (:func:`support.machine.unavailable`). When a ``realnode`` test fails, what the
node's components logged while it ran is attached to its report (sections ``real-node <component> log``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as kclient

from support.kube import REPO, KubeCluster, _log_since
from support.machine import unavailable

REAL_NODE_SH = REPO / "hack" / "real-node.sh"
IMAGES_SH = REPO / "hack" / "images.sh"
TOOLS_SH = REPO / "hack" / "tools.sh"

NODE_NAME = "callfs-real-node"
"""The node's name (``kubernetes.io/hostname``); it also carries the label ``callfs.io/real-node=true``."""

COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns", "api-relay")
"""The processes ``hack/real-node.sh`` starts, each logging to ``<state_dir>/real-node/logs/<component>.log``."""

UP_TIMEOUT = 300  # seconds for `real-node.sh up` (images imported, node Ready: about 30 s here)
DOWN_TIMEOUT = 180  # seconds for `real-node.sh down`
LOG_LINES = 150

_active: list[RealNode] = []
_log_offsets = pytest.StashKey[dict[str, int]]()


@dataclass(frozen=True)
class RealNode:
    """The running real node: ``name`` in ``cluster``; component logs under ``cluster.state_dir/real-node/logs``."""

    name: str
    cluster: KubeCluster

    def log_path(self, component: str) -> Path:
        """The log file of ``component`` (one of :data:`COMPONENTS`)."""
        return self.cluster.state_dir / "real-node" / "logs" / f"{component}.log"


def lane_missing() -> str | None:
    """``None`` when this machine can run the real node, else what is missing (and how to provide it)."""
    if os.geteuid() != 0:
        return "the real node needs root (containerd, mounts, a bridge)"
    if not os.path.exists("/dev/fuse"):
        return "the real node's CSI mounts need /dev/fuse"
    tools = subprocess.run(["bash", str(TOOLS_SH), "check", "kubelet", "coredns", "cni-plugins", "helm"],
                           capture_output=True, text=True, timeout=60)
    if tools.returncode != 0:
        return f"the real node's tools are not built (bash hack/tools.sh install): {tools.stderr.strip()}"
    images = subprocess.run(["bash", str(IMAGES_SH), "check"], capture_output=True, text=True, timeout=60)
    if images.returncode != 0:
        return f"the images are not built (bash hack/images.sh build): {images.stderr.strip()}"
    return None


CONTAINERD_SOCKET = "/run/callfs-real-node/containerd.sock"
"""The node's containerd (hack/real-node.sh: its own socket, namespace ``k8s.io``)."""


def pods(api: kclient.ApiClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The pods of ``namespace`` matching the label ``selector``, as plain dicts."""
    found: list[dict[str, Any]] = api.sanitize_for_serialization(
        kclient.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items)
    return found


def really_running(pod: dict[str, Any], node: str) -> bool:
    """The pod is on ``node``, Running and Ready, and each container has a containerd ID and a start time."""
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    return (pod["spec"].get("nodeName") == node and status.get("phase") == "Running" and bool(containers)
            and all(c.get("ready") and (c.get("containerID") or "").startswith("containerd://")
                    and (c.get("state") or {}).get("running", {}).get("startedAt") for c in containers))


def describe(api: kclient.ApiClient, namespace: str) -> str:
    """The pods of ``namespace`` (phase, node, container states, the log of a restarted container's previous run)
    and its recent events, for failure messages."""
    core = kclient.CoreV1Api(api)
    items = api.sanitize_for_serialization(core.list_namespaced_pod(namespace).items)
    lines = [f"{p['metadata']['name']}: {p['status'].get('phase')} on {p['spec'].get('nodeName')} "
             f"{json.dumps([c.get('state') for c in p['status'].get('containerStatuses') or []])}" for p in items]
    for p in items:
        for c in p["status"].get("containerStatuses") or []:
            if c.get("restartCount"):  # what the last crashed run printed
                try:
                    tail = core.read_namespaced_pod_log(p["metadata"]["name"], namespace, container=c["name"],
                                                        previous=True, tail_lines=20)
                except kclient.ApiException as exc:
                    tail = f"(no log: {exc.reason})"
                lines.append(f"--- {p['metadata']['name']}/{c['name']} previous run:\n{tail}")
    events = api.sanitize_for_serialization(core.list_namespaced_event(namespace).items)
    lines += [f"event {e['involvedObject']['name']}: {e['reason']}: {e.get('message')}" for e in events[-30:]]
    return "\n".join(lines)


def cluster_services(api: kclient.ApiClient, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    """The Services of CallFSCluster ``name`` by role: ``client`` (ClusterIP, the API) and the others by name."""
    items: list[dict[str, Any]] = api.sanitize_for_serialization(
        kclient.CoreV1Api(api).list_namespaced_service(namespace, label_selector=f"app.kubernetes.io/instance={name}"
                                                       ).items)
    out = {s["metadata"]["name"]: s for s in items}
    out["client"] = out[name]
    return out


def kill_container(pod: dict[str, Any], container: str) -> None:
    """SIGKILL ``container`` of ``pod`` through the node's containerd, as a crash or an OOM kill would end it (the
    kubelet then restarts it in the same pod)."""
    (status,) = [c for c in pod["status"]["containerStatuses"] if c["name"] == container]
    container_id = status["containerID"].removeprefix("containerd://")
    subprocess.run(["ctr", "--address", CONTAINERD_SOCKET, "--namespace", "k8s.io", "tasks", "kill", "--signal",
                    "SIGKILL", container_id], check=True, capture_output=True, text=True, timeout=30)


def _kwok_nodes(cluster: KubeCluster) -> list[str]:
    out = cluster.kubectl("get", "nodes", "-l", "type=kwok", "-o", "jsonpath={.items[*].metadata.name}")
    return out.split()


@pytest.fixture(scope="session")
def real_node(kube_cluster: KubeCluster) -> Iterator[RealNode]:
    """Add the real node to ``kube_cluster`` and cordon the kwok nodes; undo both at the end.

    Fails (``CI=true``) or skips (elsewhere) when the machine cannot run it (:func:`lane_missing`); fails when
    ``hack/real-node.sh up`` fails, with its output (which ends with the failing component's log).
    """
    missing = lane_missing()
    if missing is not None:
        unavailable(missing)
    up = subprocess.run(["bash", str(REAL_NODE_SH), "up", "--dir", str(kube_cluster.state_dir)],
                        capture_output=True, text=True, timeout=UP_TIMEOUT)
    if up.returncode != 0:
        pytest.fail(f"hack/real-node.sh up failed (exit {up.returncode}):\n{up.stderr}", pytrace=False)
    node = RealNode(name=NODE_NAME, cluster=kube_cluster)
    kwok = _kwok_nodes(kube_cluster)
    _active.append(node)
    try:
        for name in kwok:
            kube_cluster.kubectl("cordon", name)
        yield node
    finally:
        _active.remove(node)
        try:
            for name in kwok:
                kube_cluster.kubectl("uncordon", name)
        finally:
            subprocess.run(["bash", str(REAL_NODE_SH), "down", "--dir", str(kube_cluster.state_dir)],
                           capture_output=True, text=True, timeout=DOWN_TIMEOUT, check=True)


def _log_sizes(node: RealNode) -> dict[str, int]:
    sizes = {}
    for component in COMPONENTS:
        try:
            sizes[component] = node.log_path(component).stat().st_size
        except FileNotFoundError:
            sizes[component] = 0
    return sizes


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Remember where each component log ends when a test using the real node starts."""
    if _active and "real_node" in getattr(item, "fixturenames", ()):
        item.stash[_log_offsets] = _log_sizes(_active[0])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach to a failing real-node test what the node's components logged while it ran."""
    report = yield
    if report.failed and _active and "real_node" in getattr(item, "fixturenames", ()):
        node = _active[0]
        offsets = item.stash.get(_log_offsets, {})
        for component in COMPONENTS:
            text = _log_since(node.log_path(component), offsets.get(component), LOG_LINES)
            report.sections.append((f"real-node {component} log", text))
    return report
