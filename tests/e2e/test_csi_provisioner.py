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
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from kubernetes import client as kclient

from callfs.client import CallFSClient
from callfs_csi import csi_pb2, csi_pb2_grpc
from support.csi_provisioning import BIND_TIMEOUT, DRIVER, Provisioning, running_provisioning
from support.kube import KubeCluster
from support.node import NodeProcess

pytestmark = pytest.mark.e2e

GiB = 1 << 30


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


@pytest.fixture
def provisioning(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, node: NodeProcess, tmp_path: Path
) -> Iterator[Provisioning]:
    sidecar = kube_cluster.bin_dir / "csi-provisioner"
    if not sidecar.exists():
        pytest.fail(f"{sidecar} is not built (bash hack/tools.sh install csi-provisioner)", pytrace=False)
    with running_provisioning(kube_api, kube_cluster.kubeconfig, kube_cluster.bin_dir, node, kube_namespace,
                              tmp_path) as provisioning:
        yield provisioning


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
