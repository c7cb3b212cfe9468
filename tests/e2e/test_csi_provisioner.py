"""Dynamic provisioning on the real control plane: csi-provisioner + our controller + StorageClass ``callfs``.

csi-provisioner (built by ``hack/tools.sh``, upstream grpc-go client of the CSI spec) watches PVCs through the
test kube-apiserver and calls ``callfs-csi --mode controller`` over a unix socket on this machine; the controller
provisions on a real CallFS node. The StorageClass passes a root API key through the standard
``csi.storage.k8s.io/provisioner-secret-*`` parameters.

csi-resizer is not among the tools ``hack/tools.sh`` builds, so PVC expansion is not driven through Kubernetes:
the expansion test calls ``ControllerExpandVolume`` (what csi-resizer would call) with the bound PV's handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from kubernetes import client as kclient

from callfs.client import CallFSClient
from callfs_csi import csi_pb2, csi_pb2_grpc
from support.kube import KubeCluster, wait_for
from support.node import NodeProcess

pytestmark = pytest.mark.e2e

BIND_TIMEOUT = 120  # seconds for a PVC to bind on this 2-core machine
DRIVER = "csi.callfs.io"
GiB = 1 << 30


@dataclass
class Provisioning:
    """Our controller and csi-provisioner, running; ``secret`` holds the root key in ``namespace``."""

    node: NodeProcess
    socket: Path
    namespace: str
    secret: str
    api: kclient.ApiClient

    def storage_class(self, name: str, on_delete: str) -> None:
        secret_params = {
            f"csi.storage.k8s.io/{kind}-secret-{field}": value
            for kind in ("provisioner", "controller-expand", "node-stage")
            for field, value in (("name", self.secret), ("namespace", self.namespace))
        }
        kclient.StorageV1Api(self.api).create_storage_class(kclient.V1StorageClass(
            metadata=kclient.V1ObjectMeta(name=name), provisioner=DRIVER, reclaim_policy="Delete",
            allow_volume_expansion=True, volume_binding_mode="Immediate",
            parameters={"server": self.node.url, "onDelete": on_delete, **secret_params},
        ))

    def claim(self, name: str, storage_class: str, size: str) -> None:
        claim = kclient.V1PersistentVolumeClaim(
            metadata=kclient.V1ObjectMeta(name=name),
            spec=kclient.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteMany"], storage_class_name=storage_class,
                resources=kclient.V1VolumeResourceRequirements(requests={"storage": size}),
            ),
        )
        kclient.CoreV1Api(self.api).create_namespaced_persistent_volume_claim(self.namespace, claim)

    def bound_volume(self, claim: str) -> kclient.V1PersistentVolume:
        core = kclient.CoreV1Api(self.api)

        def bound() -> str | None:
            pvc = core.read_namespaced_persistent_volume_claim(claim, self.namespace)
            return pvc.spec.volume_name if pvc.status.phase == "Bound" else None

        pv_name = wait_for(bound, BIND_TIMEOUT, f"PVC {claim} to be Bound")
        return core.read_persistent_volume(pv_name)

    def wait_pv_gone(self, name: str) -> None:
        core = kclient.CoreV1Api(self.api)

        def gone() -> bool:
            try:
                core.read_persistent_volume(name)
            except kclient.ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            return False

        wait_for(gone, BIND_TIMEOUT, f"PV {name} to be deleted")

    def delete_claim(self, name: str) -> None:
        kclient.CoreV1Api(self.api).delete_namespaced_persistent_volume_claim(name, self.namespace)


def _exists(node: NodeProcess, path: str) -> bool:
    async def check() -> bool:
        async with CallFSClient(node.url, node.key_for("root")) as fs:
            return await fs.exists(path)

    return asyncio.run(check())


def _quota_bytes(node: NodeProcess, path: str) -> int | None:
    async def read() -> int | None:
        async with CallFSClient(node.url, node.key_for("root")) as fs:
            return (await fs.get_quota(path)).bytes_limit

    return asyncio.run(read())


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def provisioning(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, node: NodeProcess, tmp_path: Path
) -> Iterator[Provisioning]:
    provisioner_bin = kube_cluster.bin_dir / "csi-provisioner"
    if not provisioner_bin.exists():
        pytest.fail(f"{provisioner_bin} is not built (bash hack/tools.sh install csi-provisioner)", pytrace=False)
    socket = tmp_path / "controller.sock"
    key_file = tmp_path / "root.key"
    key_file.write_text(node.key_for("root"))
    key_file.chmod(0o600)
    processes: list[subprocess.Popen[bytes]] = []
    storage = kclient.StorageV1Api(kube_api)
    with contextlib.suppress(kclient.ApiException):
        storage.create_csi_driver(kclient.V1CSIDriver(
            metadata=kclient.V1ObjectMeta(name=DRIVER),
            spec=kclient.V1CSIDriverSpec(attach_required=False, pod_info_on_mount=False,
                                         volume_lifecycle_modes=["Persistent"]),
        ))
    secret = "callfs-root"
    kclient.CoreV1Api(kube_api).create_namespaced_secret(kube_namespace, kclient.V1Secret(
        metadata=kclient.V1ObjectMeta(name=secret), string_data={"apiKey": node.key_for("root")}))
    try:
        with (tmp_path / "controller.log").open("ab") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "callfs_csi.main", "--endpoint", f"unix://{socket}", "--mode", "controller",
                 "--node-id", "e2e-controller", "--state-dir", str(tmp_path / "state"), "--server", node.url,
                 "--api-key-file", str(key_file)], stdout=log, stderr=subprocess.STDOUT))
        wait_for(lambda: socket.exists(), 30, "the controller socket")
        with (tmp_path / "provisioner.log").open("ab") as log:
            processes.append(subprocess.Popen(
                [str(provisioner_bin), f"--csi-address={socket}", f"--kubeconfig={kube_cluster.kubeconfig}",
                 "--leader-election=false", "--timeout=60s", "--worker-threads=4", "--v=4"],
                stdout=log, stderr=subprocess.STDOUT))
        yield Provisioning(node, socket, kube_namespace, secret, kube_api)
    finally:
        for process in reversed(processes):
            _stop(process)
        for name in ("callfs", "callfs-retain"):
            with contextlib.suppress(kclient.ApiException):
                storage.delete_storage_class(name)
        for log_name in ("controller.log", "provisioner.log"):
            path = tmp_path / log_name
            if path.exists():
                sys.stderr.write(f"--- {log_name} (tail)\n" + "\n".join(path.read_text().splitlines()[-30:]) + "\n")


def test_pvc_binds_to_a_quota_directory_and_deletion_removes_it(provisioning: Provisioning) -> None:
    provisioning.storage_class("callfs", "delete")
    provisioning.claim("data", "callfs", "2Gi")
    pv = provisioning.bound_volume("data")
    assert pv.spec.csi.driver == DRIVER
    assert pv.spec.capacity["storage"] == "2Gi"
    handle = pv.spec.csi.volume_handle
    assert handle.startswith("pvc-")
    assert pv.spec.csi.volume_attributes["path"] == f"/volumes/{handle}"
    assert _quota_bytes(provisioning.node, f"/volumes/{handle}") == 2 * GiB

    provisioning.delete_claim("data")
    provisioning.wait_pv_gone(pv.metadata.name)
    assert not _exists(provisioning.node, f"/volumes/{handle}")


def test_retained_volume_keeps_its_directory(provisioning: Provisioning) -> None:
    provisioning.storage_class("callfs-retain", "retain")
    provisioning.claim("kept", "callfs-retain", "1Gi")
    pv = provisioning.bound_volume("kept")
    handle = pv.spec.csi.volume_handle
    provisioning.delete_claim("kept")
    provisioning.wait_pv_gone(pv.metadata.name)
    assert _exists(provisioning.node, f"/volumes/{handle}")


def test_expansion_of_a_bound_volume_raises_its_quota(provisioning: Provisioning) -> None:
    provisioning.storage_class("callfs", "delete")
    provisioning.claim("grow", "callfs", "1Gi")
    handle = provisioning.bound_volume("grow").spec.csi.volume_handle
    # What csi-resizer sends for `kubectl patch pvc grow -p '{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}'`.
    with grpc.insecure_channel(f"unix://{provisioning.socket}") as channel:
        response = csi_pb2_grpc.ControllerStub(channel).ControllerExpandVolume(csi_pb2.ControllerExpandVolumeRequest(
            volume_id=handle, capacity_range=csi_pb2.CapacityRange(required_bytes=3 * GiB),
            secrets={"apiKey": provisioning.node.key_for("root")}), timeout=30)
    assert response.capacity_bytes == 3 * GiB
    assert not response.node_expansion_required
    assert _quota_bytes(provisioning.node, f"/volumes/{handle}") == 3 * GiB


def test_many_claims_bind(provisioning: Provisioning) -> None:
    provisioning.storage_class("callfs", "delete")
    names = [f"c{uuid.uuid4().hex[:6]}" for _ in range(5)]
    started = time.monotonic()
    for name in names:
        provisioning.claim(name, "callfs", "1Gi")
    handles = {provisioning.bound_volume(name).spec.csi.volume_handle for name in names}
    assert len(handles) == len(names)
    assert time.monotonic() - started < BIND_TIMEOUT
    for handle in handles:
        assert _quota_bytes(provisioning.node, f"/volumes/{handle}") == GiB
