"""A CallFS cluster served over HTTPS with a private CA: the driver trusts the CA bundle its secrets carry
(``caBundle``), hands it to the nodes in each volume's Secret, and the FUSE mount verifies the server with it.

The node is a real process with a self-signed certificate (``support.node.make_certificate``); the controller
runs in-process, the node plugin as ``callfs-csi`` with a real FUSE mount.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from callfs.client import CallFSClient
from callfs_csi import csi_pb2, csi_pb2_grpc
from callfs_csi.cluster import ssl_context
from callfs_csi.config import DriverConfig, Mode
from callfs_csi.controller import ControllerService
from callfs_csi.params import Credentials, credentials
from support.csi_controller import GiB, create_request
from support.csi_plugin import Plugin, unmount_all_under
from support.machine import require_fuse
from support.node import NodeProcess, make_certificate


@pytest.fixture
def tls_node(node_factory: Callable[..., NodeProcess], tmp_path: Path) -> tuple[NodeProcess, str]:
    cert, key = make_certificate(tmp_path)
    node = node_factory(server={"cert_file": str(cert), "key_file": str(key)})
    assert node.url.startswith("https://")
    return node, cert.read_text()


class RecordedSecrets:
    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, str]] = {}

    async def put(self, name: str, volume: str, data: dict[str, str]) -> None:
        self.secrets[name] = dict(data)

    async def delete(self, name: str) -> None:
        self.secrets.pop(name, None)


@pytest.fixture
async def controller(
    tls_node: tuple[NodeProcess, str], tmp_path: Path
) -> AsyncIterator[tuple[csi_pb2_grpc.ControllerStub, RecordedSecrets]]:
    recorded = RecordedSecrets()  # the cluster is named per request (tls_node), none by default
    config = DriverConfig(node_id="n1", mode=Mode.CONTROLLER, state_dir=str(tmp_path / "state"))
    server = grpc.aio.server()
    csi_pb2_grpc.add_ControllerServicer_to_server(ControllerService(config, recorded), server)
    address = f"unix://{tmp_path}/controller.sock"
    server.add_insecure_port(address)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield csi_pb2_grpc.ControllerStub(channel), recorded
    finally:
        await server.stop(None)


def tls_request(node: NodeProcess, name: str, ca: str | None) -> csi_pb2.CreateVolumeRequest:
    request = create_request(name, GiB, server=node.url)
    request.secrets["apiKey"] = node.key_for("root")
    if ca is not None:
        request.secrets["caBundle"] = ca
    return request


async def test_the_controller_trusts_the_secret_ca_bundle_and_passes_it_on(
    tls_node: tuple[NodeProcess, str], controller: tuple[csi_pb2_grpc.ControllerStub, RecordedSecrets]
) -> None:
    node, ca = tls_node
    stub, recorded = controller
    response = await stub.CreateVolume(tls_request(node, "pvc-tls", ca))
    assert response.volume.volume_context["server"] == node.url
    data = recorded.secrets["callfs-volume-pvc-tls"]
    assert data["caBundle"] == ca and data["serverURL"] == node.url
    async with CallFSClient(node.url, data["apiKey"], ssl=ssl_context(data["caBundle"])) as fs:
        await fs.upload("/volumes/pvc-tls/f", b"over tls")


async def test_a_cluster_reference_uses_the_advertised_https_endpoint_and_ca_of_the_operator_secret(
    tls_node: tuple[NodeProcess, str], controller: tuple[csi_pb2_grpc.ControllerStub, RecordedSecrets]
) -> None:
    node, ca = tls_node
    stub, recorded = controller
    request = create_request("pvc-ref", GiB, cluster="storage/main")
    # The <name>-api-key Secret as the operator writes it for a TLS cluster (operator/callfs_operator/builders/
    # secrets.py): its Service name does not resolve here, so the advertised endpoint is this node's URL.
    request.secrets.update({"api-key": node.key_for("root"), "serverURL": node.url, "ca.crt": ca})
    response = await stub.CreateVolume(request)
    assert response.volume.volume_context["server"] == node.url
    assert response.volume.volume_id == f"pvc-ref@{node.url}"
    assert recorded.secrets["callfs-volume-pvc-ref"]["caBundle"] == ca


async def test_without_the_ca_the_certificate_is_refused(
    tls_node: tuple[NodeProcess, str], controller: tuple[csi_pb2_grpc.ControllerStub, RecordedSecrets]
) -> None:
    node, _ = tls_node
    stub, _ = controller
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateVolume(tls_request(node, "pvc-untrusted", None))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "certificate" in (raised.value.details() or "").lower()


async def test_a_ca_bundle_without_a_certificate_is_invalid_argument(
    tls_node: tuple[NodeProcess, str], controller: tuple[csi_pb2_grpc.ControllerStub, RecordedSecrets]
) -> None:
    node, _ = tls_node
    stub, _ = controller
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateVolume(tls_request(node, "pvc-bad-ca", "not a certificate"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def plugin(tls_node: tuple[NodeProcess, str], tmp_path: Path) -> Iterator[Plugin]:
    require_fuse()
    node, ca = tls_node
    base = tmp_path / "csi"
    base.mkdir()
    started = Plugin(node, base, secrets={"apiKey": node.key_for("root"), "caBundle": ca})  # type: ignore[arg-type]
    started.start()
    try:
        yield started
    finally:
        started.kill()
        unmount_all_under(tmp_path)


def test_the_node_mounts_an_https_cluster_with_the_ca_of_its_secret(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-tls-mount")
    staging, target = tmp_path / "staging", tmp_path / "pods" / "target"
    target.parent.mkdir()
    plugin.stage(volume, staging)
    plugin.publish(volume, staging, target)
    (target / "hello.txt").write_text("hello over tls")
    assert (staging / "hello.txt").read_text() == "hello over tls"
    stats = plugin.stats(volume, target)
    assert not stats.volume_condition.abnormal, stats.volume_condition.message


def test_credentials_take_the_ca_of_the_secret_over_the_default() -> None:
    default = Credentials("https://a:8443", "k" * 20, "DEFAULT CA")
    assert credentials({}, None, default).ca_bundle == "DEFAULT CA"
    assert credentials({"caBundle": "SECRET CA"}, None, default).ca_bundle == "SECRET CA"
    assert credentials({"ca.crt": "TLS SECRET CA"}, None, default).ca_bundle == "TLS SECRET CA"
