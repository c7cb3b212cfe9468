#!/usr/bin/env python3
"""``kubectl apply`` of CallFSClusters → all children created → ``Ready=True``, for 1 CR and for 50 CRs at once.

The dev control plane (``hack/dev-cluster.sh up`` in a temporary directory: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok with 3 nodes) with its default StorageClass and a pool of
pre-created PersistentVolumes large enough for every claim (``--volumes``); the CRD from ``charts/callfs/crds``;
the operator as its console entry point (``python -m callfs_operator.main -A``, default resync) as a subprocess.

Every CR is ``examples/minimal.yaml``'s spec (``spec: {}``: 3 storage nodes, managed PostgreSQL and Redis, so
13 children — 4 Secrets, 1 ConfigMap, 4 Services, 3 StatefulSets, 1 PodDisruptionBudget — and 5 claims). Each
phase runs in a fresh namespace:

1. one CR, ``kubectl apply -f`` of a one-document file;
2. ``--batch`` CRs (default 50) in one ``kubectl apply -f`` of a multi-document file.

The clock starts just before ``kubectl apply`` is spawned. "Children" is when the last CR of the phase has all 13
children (listed by the operator's ``app.kubernetes.io/managed-by`` label, grouped by
``app.kubernetes.io/instance``); "Ready" is when the last CR reports the condition ``Ready=True``. Both are polled
every ``--poll`` seconds (default 0.25 s) and each time is read once the listing that saw the state has returned,
so a figure overstates by at most one poll plus one listing. kwok makes the pods Running/Ready
(no container runs), so Ready measures the operator, the API server and the controllers, not node start-up.

Printed: per phase the seconds to all children and to all Ready, and the operator's ``VmRSS`` (and peak
``VmHWM``) when idle, after the 1-CR phase and after the batch. Everything shares the machine's cores.

Usage: ``python3 bench/operator_apply.py [--batch 50] [--poll 0.25] [--dir /var/tmp]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as kclient
from kubernetes import config as kconfig

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from figures import human_bytes, table  # noqa: E402
from process_memory import resident_bytes  # noqa: E402
from support.kube import DEV_CLUSTER_SH, DOWN_TIMEOUT, UP_TIMEOUT, bin_dir, tools_missing  # noqa: E402
from support.ports import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "charts" / "callfs" / "crds" / "callfsclusters.yaml"
MINIMAL = REPO / "examples" / "minimal.yaml"
GROUP, VERSION, PLURAL = "callfs.io", "v1alpha1", "callfsclusters"
CHILDREN_PER_CLUSTER = 13  # 4 Secrets, 1 ConfigMap, 4 Services, 3 StatefulSets, 1 PodDisruptionBudget
CLAIMS_PER_CLUSTER = 5  # 3 storage nodes, PostgreSQL, Redis
MANAGED_BY = "app.kubernetes.io/managed-by=callfs-operator"
INSTANCE_LABEL = "app.kubernetes.io/instance"
PHASE_TIMEOUT = 900.0  # seconds


@dataclass(frozen=True)
class Phase:
    """One measured apply: ``clusters`` CRs; seconds from ``kubectl apply`` to every CR having all its
    children and to every CR being ``Ready=True``; the operator's ``(VmRSS, VmHWM)`` in bytes afterwards."""

    clusters: int
    children_s: float
    ready_s: float
    rss: tuple[int, int]


def children_per_cluster(api: kclient.ApiClient, namespace: str) -> Counter[str]:
    """How many operator-managed children each CR of ``namespace`` has (CR name → count)."""
    core, apps, policy = kclient.CoreV1Api(api), kclient.AppsV1Api(api), kclient.PolicyV1Api(api)
    counts: Counter[str] = Counter()
    for listing in (core.list_namespaced_secret, core.list_namespaced_config_map, core.list_namespaced_service,
                    apps.list_namespaced_stateful_set, policy.list_namespaced_pod_disruption_budget):
        for item in api.sanitize_for_serialization(listing(namespace, label_selector=MANAGED_BY).items):
            counts[(item["metadata"].get("labels") or {}).get(INSTANCE_LABEL, "")] += 1
    return counts


def ready_clusters(api: kclient.ApiClient, namespace: str) -> int:
    """How many CRs of ``namespace`` have the condition ``Ready=True``."""
    listing: Any = kclient.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return sum(1 for obj in listing["items"]
               for c in (obj.get("status") or {}).get("conditions") or []
               if c["type"] == "Ready" and c["status"] == "True")


def measure(api: kclient.ApiClient, kubectl: list[str], operator_pid: int, work: Path, namespace: str,
            count: int, poll: float) -> Phase:
    """Apply ``count`` minimal CRs (one ``kubectl apply``) in a new ``namespace`` and time them; raises
    ``TimeoutError`` after :data:`PHASE_TIMEOUT` seconds."""
    kclient.CoreV1Api(api).create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=namespace)))
    example = yaml.safe_load(MINIMAL.read_text())
    docs = [{**example, "metadata": {"name": f"c{index}"}} for index in range(count)]
    manifest = work / f"{namespace}.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    names = {f"c{index}" for index in range(count)}
    started = time.monotonic()
    subprocess.run([*kubectl, "apply", "-n", namespace, "-f", str(manifest)], check=True,
                   stdout=subprocess.DEVNULL, timeout=120)
    children_s: float | None = None
    # Each time is read when the listing that saw the state has returned (an upper bound, by at most one poll).
    while True:
        if time.monotonic() - started > PHASE_TIMEOUT:
            raise TimeoutError(f"{namespace}: not all {count} clusters Ready after {PHASE_TIMEOUT:.0f} s")
        if children_s is None:
            counts = children_per_cluster(api, namespace)
            if all(counts[name] >= CHILDREN_PER_CLUSTER for name in names):
                children_s = time.monotonic() - started
        if children_s is not None and ready_clusters(api, namespace) == count:
            return Phase(count, children_s, time.monotonic() - started, resident_bytes(operator_pid))
        time.sleep(poll)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 0.2 s; raises ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def run(cluster_dir: Path, work: Path, args: argparse.Namespace) -> tuple[tuple[int, int], list[Phase]]:
    """The CRD, the operator, then the two phases; returns the idle operator's ``(VmRSS, VmHWM)`` and them."""
    kubeconfig = cluster_dir / "kubeconfig"
    kubectl = [str(bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig)]
    subprocess.run([*kubectl, "apply", "-f", str(CRD)], check=True, stdout=subprocess.DEVNULL, timeout=60)
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s",
                    "crd/callfsclusters.callfs.io"], check=True, stdout=subprocess.DEVNULL, timeout=90)
    port = free_port()
    with (work / "operator.log").open("ab") as log:
        operator = subprocess.Popen([sys.executable, "-m", "callfs_operator.main", "--all-namespaces",
                                     "--kubeconfig", str(kubeconfig), "--health-port", str(port),
                                     "--listen-address", "127.0.0.1"],
                                    stdout=log, stderr=subprocess.STDOUT)
    try:
        def healthy() -> bool:
            if operator.poll() is not None:
                raise RuntimeError(f"operator exited with {operator.returncode} (log: {work / 'operator.log'})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_until(healthy, 60, "the operator's /healthz")
        api = kconfig.new_client_from_config(config_file=str(kubeconfig))
        try:
            idle = resident_bytes(operator.pid)
            phases = [measure(api, kubectl, operator.pid, work, "bench-one", 1, args.poll),
                      measure(api, kubectl, operator.pid, work, "bench-batch", args.batch, args.poll)]
        finally:
            api.close()
    finally:
        operator.terminate()
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
    return idle, phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=50, help="CRs applied at once in the second phase")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between status polls")
    parser.add_argument("--dir", default=None, help="where the cluster state and the operator log live")
    args = parser.parse_args()
    missing = tools_missing()
    if missing is not None:
        print(f"the Kubernetes tools are not built (bash hack/tools.sh install): {missing}", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="callfs-operator-apply-", dir=args.dir))
    cluster_dir = base / "cluster"
    volumes = (1 + args.batch) * CLAIMS_PER_CLUSTER
    try:
        subprocess.run(["bash", str(DEV_CLUSTER_SH), "up", "--dir", str(cluster_dir), "--volumes", str(volumes)],
                       check=True, timeout=UP_TIMEOUT, stdout=subprocess.DEVNULL)
        try:
            idle, phases = run(cluster_dir, base, args)
        finally:
            subprocess.run(["bash", str(DEV_CLUSTER_SH), "down", "--dir", str(cluster_dir)],
                           check=False, timeout=DOWN_TIMEOUT, stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"kubectl apply -> children / Ready=True; examples/minimal.yaml spec (3 nodes + PostgreSQL + Redis, "
          f"{CHILDREN_PER_CLUSTER} children each), 3 kwok nodes, polled every {args.poll} s")
    rows = [["idle (CRD, no CR)", "-", "-", human_bytes(idle[0]), human_bytes(idle[1])]]
    rows += [[f"{p.clusters} CR{'s' if p.clusters > 1 else ''} in one apply", f"{p.children_s:.1f}",
              f"{p.ready_s:.1f}", human_bytes(p.rss[0]), human_bytes(p.rss[1])] for p in phases]
    print(table(["phase", "all children s", "all Ready s", "operator RSS after", "operator peak RSS"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
