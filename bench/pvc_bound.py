#!/usr/bin/env python3
"""PVC create → Bound latency with StorageClass ``callfs``: one PVC at a time, and 50 PVCs created at once.

The dev control plane (``hack/dev-cluster.sh up`` in a temporary directory: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok), one CallFS node (embedded defaults: SQLite, local-disk blobs),
``callfs-csi --mode controller`` and csi-provisioner wired as the e2e tests wire them
(``tests/support/csi_provisioning.py``: same flags, csi-provisioner with 4 worker threads), StorageClass
``callfs`` (Immediate binding, ``onDelete: delete``).

A PVC's latency runs from just before its create request is sent to the moment a watch on the namespace's
PVCs (started before the creations) delivers it with ``status.phase == Bound``: the API server round trip,
csi-provisioner's CreateVolume call (our controller creating ``/volumes/<pv>`` with its quota), the PV
object, and kube-controller-manager's PV controller binding the two.

1. ``--single`` PVCs, one after the other (the next is created once the previous one is Bound);
2. ``--rounds`` rounds of ``--batch`` PVCs created at once (from ``--batch`` threads); between rounds every PVC
   is deleted and its PV (and directory) awaited gone.

csi-provisioner's client-go limit (``--kube-api-qps``, default 5 requests/s with bursts of 10) paces its API
calls; ``--kube-api-qps N`` raises it (burst 2N) to show what is left without that pacing.

Printed: p50 / p95 / max / mean latency per phase, and for a batch the time from the first create to the last
Bound. Everything shares the 2 cores of this machine.

Usage: ``python3 bench/pvc_bound.py [--single 20] [--batch 50] [--rounds 2] [--kube-api-qps 100] [--dir /var/tmp]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes import watch as kwatch

from figures import percentile, table
from services import running_node
from support.csi_provisioning import BIND_TIMEOUT, Provisioning, running_provisioning
from support.kube import DEV_CLUSTER_SH, DOWN_TIMEOUT, UP_TIMEOUT, bin_dir, tools_missing

SIZE = "1Gi"
STORAGE_CLASS = "callfs"
NAMESPACE = "bench"


@dataclass(frozen=True)
class Phase:
    """One measured phase: per-PVC create → Bound latencies (seconds) and, for a batch, the seconds from its
    first create to its last Bound (``None`` for PVCs created one after the other)."""

    label: str
    latencies: list[float]
    makespan: float | None


def summary_row(phase: Phase) -> list[str]:
    """Table cells for ``phase``: label, count, p50, p95, max, mean (ms) and makespan (s)."""
    values = phase.latencies
    return [phase.label, str(len(values)), f"{percentile(values, 50) * 1000:.0f}",
            f"{percentile(values, 95) * 1000:.0f}", f"{max(values) * 1000:.0f}",
            f"{sum(values) / len(values) * 1000:.0f}", "-" if phase.makespan is None else f"{phase.makespan:.2f}"]


def bound_times(api: kclient.ApiClient, names: set[str], resource_version: str, timeout: float,
                out: dict[str, float]) -> None:
    """Watch PVCs in :data:`NAMESPACE` from ``resource_version``; record in ``out`` the monotonic time (seconds)
    each of ``names`` is first seen Bound. Returns once all are recorded or after ``timeout`` seconds."""
    core = kclient.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    watcher = kwatch.Watch()
    while len(out) < len(names) and time.monotonic() < deadline:
        for event in watcher.stream(core.list_namespaced_persistent_volume_claim, NAMESPACE,
                                    resource_version=resource_version, timeout_seconds=max(1, int(timeout))):
            pvc = event["object"]
            resource_version = pvc.metadata.resource_version
            name = pvc.metadata.name
            if name in names and name not in out and pvc.status.phase == "Bound":
                out[name] = time.monotonic()
                if len(out) == len(names):
                    watcher.stop()
                    break


def measure(provisioning: Provisioning, label: str, names: Sequence[str]) -> Phase:
    """Create ``names`` at once (one thread each) and time each until Bound. Raises ``RuntimeError`` when one
    is not Bound within :data:`BIND_TIMEOUT` seconds."""
    core = kclient.CoreV1Api(provisioning.api)
    resource_version = core.list_namespaced_persistent_volume_claim(NAMESPACE).metadata.resource_version
    bound: dict[str, float] = {}
    watcher = threading.Thread(
        target=bound_times, args=(provisioning.api, set(names), resource_version, BIND_TIMEOUT, bound), daemon=True)
    watcher.start()
    started: dict[str, float] = {}

    def create(name: str) -> None:
        started[name] = time.monotonic()
        provisioning.claim(name, STORAGE_CLASS, SIZE)

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(pool.map(create, names))
    watcher.join(BIND_TIMEOUT + 5)
    missing = sorted(set(names) - set(bound))
    if missing:
        raise RuntimeError(f"{len(missing)} PVCs not Bound within {BIND_TIMEOUT} s: {missing[:5]}")
    return Phase(label, [bound[name] - started[name] for name in names],
                 max(bound.values()) - min(started.values()))


def delete_all(provisioning: Provisioning, names: Sequence[str]) -> None:
    """Delete the PVCs ``names`` and wait until their PVs (hence the volumes' directories) are gone."""
    core = kclient.CoreV1Api(provisioning.api)
    volumes = [core.read_namespaced_persistent_volume_claim(name, NAMESPACE).spec.volume_name for name in names]
    for name in names:
        provisioning.delete_claim(name)
    for volume in volumes:
        provisioning.wait_pv_gone(volume, timeout=BIND_TIMEOUT * 2)


def run(provisioning: Provisioning, args: argparse.Namespace) -> list[Phase]:
    """The two phases of the module docstring; returns the single-PVC phase then one phase per batch round."""
    provisioning.storage_class(STORAGE_CLASS, "delete")
    singles = [f"single-{index}" for index in range(args.single)]
    single = Phase("1 PVC at a time", [], None)
    for name in singles:
        single.latencies.extend(measure(provisioning, "1 PVC", [name]).latencies)
    delete_all(provisioning, singles)
    phases = [single]
    for round_index in range(args.rounds):
        names = [f"batch{round_index}-{uuid.uuid4().hex[:6]}-{index}" for index in range(args.batch)]
        phases.append(measure(provisioning, f"{args.batch} PVCs at once (round {round_index + 1})", names))
        delete_all(provisioning, names)
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=20, help="PVCs created one after the other")
    parser.add_argument("--batch", type=int, default=50, help="PVCs created at once in each round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --batch PVCs")
    parser.add_argument("--kube-api-qps", type=int, default=None,
                        help="csi-provisioner's API requests/s (burst twice that); default: its own, 5 (burst 10)")
    parser.add_argument("--dir", default=None, help="where the cluster state, the node and the logs live")
    args = parser.parse_args()
    missing = tools_missing()
    tools = bin_dir()
    if missing is not None or not (tools / "csi-provisioner").exists():
        print(f"the Kubernetes tools are not built (bash hack/tools.sh install): {missing or 'csi-provisioner'}",
              file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="callfs-pvc-bound-", dir=args.dir))
    cluster_dir = base / "cluster"
    try:
        subprocess.run(["bash", str(DEV_CLUSTER_SH), "up", "--dir", str(cluster_dir), "--nodes", "1"],
                       check=True, timeout=UP_TIMEOUT, stdout=subprocess.DEVNULL)
        try:
            api = kconfig.new_client_from_config(config_file=str(cluster_dir / "kubeconfig"))
            kclient.CoreV1Api(api).create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=NAMESPACE)))
            flags = [] if args.kube_api_qps is None else [
                f"--kube-api-qps={args.kube_api_qps}", f"--kube-api-burst={2 * args.kube_api_qps}"]
            work = base / "provisioning"
            work.mkdir()
            with (running_node(base / "node") as node,
                  running_provisioning(api, cluster_dir / "kubeconfig", tools, node, NAMESPACE, work,
                                       provisioner_flags=flags) as provisioning):
                phases = run(provisioning, args)
            api.close()
        finally:
            subprocess.run(["bash", str(DEV_CLUSTER_SH), "down", "--dir", str(cluster_dir)],
                           check=False, timeout=DOWN_TIMEOUT, stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    qps = "5 (default)" if args.kube_api_qps is None else str(args.kube_api_qps)
    print(f"PVC create -> Bound, StorageClass {STORAGE_CLASS}, {SIZE} each; "
          f"csi-provisioner --worker-threads=4, --kube-api-qps {qps}")
    print(table(["phase", "PVCs", "p50 ms", "p95 ms", "max ms", "mean ms", "first create -> last Bound s"],
                [summary_row(phase) for phase in phases]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
