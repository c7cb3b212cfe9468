"""Dynamic provisioning on the real control plane: csi-provisioner + csi-resizer + our controller + StorageClass
``callfs``.

csi-provisioner and csi-resizer (built by ``hack/tools.sh``, upstream grpc-go clients of the CSI spec) watch PVCs
through the test kube-apiserver and call ``callfs-csi --mode controller`` over a unix socket on this machine;
the controller provisions on a real CallFS node. The StorageClass passes a root API key through the standard
``csi.storage.k8s.io/provisioner-secret-*`` and ``controller-expand-secret-*`` parameters. The wiring is
``support.csi_provisioning``'s (shared with bench/pvc_bound.py).
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as kclient

from callfs import errors as fs_errors
from callfs.client import CallFSClient
from support.csi_provisioning import BIND_TIMEOUT, DRIVER, Provisioning, running_provisioning
from support.kube import KubeCluster
from support.node import NodeProcess
from support.waiting import wait_for

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
    for tool in ("csi-provisioner", "csi-resizer"):
        if not (kube_cluster.bin_dir / tool).exists():
            pytest.fail(f"{kube_cluster.bin_dir / tool} is not built (bash hack/tools.sh install {tool})",
                        pytrace=False)
    with running_provisioning(kube_api, kube_cluster.kubeconfig, kube_cluster.bin_dir, node, kube_namespace,
                              tmp_path, resizer=True) as provisioning:
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


def test_patching_the_claim_size_raises_the_quota_through_csi_resizer(provisioning: Provisioning) -> None:
    provisioning.storage_class("callfs", "delete")
    provisioning.claim("grow", "callfs", "1Gi")
    pv = provisioning.bound_volume("grow")
    path = f"/volumes/{pv.spec.csi.volume_handle}"
    assert _quota_bytes(provisioning.node, path) == GiB
    assert provisioning.claim_capacity("grow") == "1Gi"

    # `kubectl patch pvc grow -p '{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}'`: csi-resizer calls
    # ControllerExpandVolume; our answer (node_expansion_required=false) lets it finish the resize itself, so
    # the claim's status capacity reaches 3Gi without any node step.
    provisioning.resize_claim("grow", "3Gi")
    wait_for(lambda: provisioning.claim_capacity("grow") == "3Gi", BIND_TIMEOUT, "PVC grow's capacity to reach 3Gi")
    assert _quota_bytes(provisioning.node, path) == 3 * GiB
    core = kclient.CoreV1Api(provisioning.api)
    assert core.read_persistent_volume(pv.metadata.name).spec.capacity["storage"] == "3Gi"
    status = core.read_namespaced_persistent_volume_claim("grow", provisioning.namespace).status
    assert not status.allocated_resource_statuses  # no resize left pending (e.g. NodeResizePending)


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


def _reads_with(node: NodeProcess, key: str, path: str) -> bytes | str:
    """``path`` read with ``key``: its bytes, or the name of the error the server answered with."""

    async def read() -> bytes | str:
        async with CallFSClient(node.url, key, retries=0) as fs:
            try:
                return await fs.read(path)
            except fs_errors.CallFSError as exc:
                return type(exc).__name__

    return asyncio.run(read())


def test_each_volume_is_staged_with_its_own_key_secret(
    kube_cluster: KubeCluster, kube_api: kclient.ApiClient, kube_namespace: str, node: NodeProcess, tmp_path: Path
) -> None:
    with running_provisioning(kube_api, kube_cluster.kubeconfig, kube_cluster.bin_dir, node, kube_namespace,
                              tmp_path, volume_keys=True) as provisioning:
        provisioning.storage_class("callfs-keys", "retain", **{
            "csi.storage.k8s.io/node-stage-secret-name": "callfs-volume-${pv.name}",
            "csi.storage.k8s.io/node-stage-secret-namespace": kube_namespace,
        })
        provisioning.claim("mine", "callfs-keys", "1Gi")
        provisioning.claim("theirs", "callfs-keys", "1Gi")
        mine, theirs = provisioning.bound_volume("mine"), provisioning.bound_volume("theirs")
        # external-provisioner resolved the template and recorded the reference kubelet will follow.
        ref = mine.spec.csi.node_stage_secret_ref
        assert (ref.name, ref.namespace) == (f"callfs-volume-{mine.metadata.name}", kube_namespace)
        core = kclient.CoreV1Api(kube_api)
        secret = core.read_namespaced_secret(ref.name, kube_namespace)
        data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
        assert data["serverURL"] == node.url and data["apiKey"] != node.key_for("root")

        async def write() -> None:
            async with CallFSClient(node.url, node.key_for("root")) as fs:
                await fs.upload(f"/volumes/{theirs.spec.csi.volume_handle}/t.txt", b"theirs")
            async with CallFSClient(node.url, data["apiKey"]) as fs:
                await fs.upload(f"/volumes/{mine.spec.csi.volume_handle}/m.txt", b"mine")

        asyncio.run(write())
        assert _reads_with(node, data["apiKey"], f"/volumes/{mine.spec.csi.volume_handle}/m.txt") == b"mine"
        assert _reads_with(node, data["apiKey"], f"/volumes/{theirs.spec.csi.volume_handle}/t.txt") == \
            "PermissionDenied"

        provisioning.delete_claim("mine")
        provisioning.wait_pv_gone(mine.metadata.name)
        with pytest.raises(kclient.ApiException) as gone:
            core.read_namespaced_secret(ref.name, kube_namespace)
        assert gone.value.status == 404
        assert _reads_with(node, data["apiKey"], f"/volumes/{mine.spec.csi.volume_handle}/m.txt") == \
            "AuthenticationFailed"
