"""callfs-csi command line: endpoints, options → DriverConfig, mount groups (callfs_csi.main/server/node)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callfs_csi.config import Mode
from callfs_csi.errors import InvalidArgument
from callfs_csi.health import parse_http_endpoint
from callfs_csi.main import config_from_args, parser, self_services_from_args
from callfs_csi.node import mount_group
from callfs_csi.server import SelfServices, grpc_address


@pytest.mark.parametrize(
    ("endpoint", "address"),
    [("unix:///csi/csi.sock", "unix:///csi/csi.sock"), ("tcp://127.0.0.1:10000", "127.0.0.1:10000")],
)
def test_grpc_address(endpoint: str, address: str) -> None:
    assert grpc_address(endpoint) == address


@pytest.mark.parametrize("endpoint", ["unix://relative.sock", "/csi/csi.sock", "http://x"])
def test_bad_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(InvalidArgument):
        grpc_address(endpoint)


def test_options_make_the_config(tmp_path: Path) -> None:
    key = tmp_path / "root.key"
    key.write_text("root-key-0123456789\n")
    args = parser().parse_args(["--mode", "node", "--node-id", "n1", "--state-dir", str(tmp_path),
                                "--server", "http://127.0.0.1:8443/", "--api-key-file", str(key),
                                "--repair-interval", "5"])
    config = config_from_args(args)
    assert config.mode is Mode.NODE and config.mode.node and not config.mode.controller
    assert config.default is not None
    assert (config.default.server, config.default.api_key) == ("http://127.0.0.1:8443", "root-key-0123456789")
    assert config.repair_interval == 5


@pytest.mark.parametrize(
    "argv",
    [["--server", "http://x:1"], ["--default-capacity", "0"], ["--repair-interval", "-1"], ["--node-id", ""]],
)
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        config_from_args(parser().parse_args(argv))


def test_empty_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("\n")
    with pytest.raises(InvalidArgument, match="empty"):
        config_from_args(parser().parse_args(["--server", "http://x:1", "--api-key-file", str(tmp_path / "k")]))


def test_mount_group() -> None:
    assert mount_group("") is None
    assert mount_group("2000") == 2000
    for bad in ("staff", "-1", "1.5"):
        with pytest.raises(InvalidArgument):
            mount_group(bad)


def test_registration_and_health_are_off_unless_asked() -> None:
    services = self_services_from_args(parser().parse_args(["--mode", "node"]))
    assert services == SelfServices()


def test_a_kubelet_registration_path_turns_on_registration_at_the_default_socket() -> None:
    args = parser().parse_args(["--mode", "node", "--http-endpoint", ":9808",
                                "--kubelet-registration-path", "/var/lib/kubelet/plugins/csi.callfs.io/csi.sock"])
    assert self_services_from_args(args) == SelfServices(
        registration_socket="/var/lib/kubelet/plugins_registry/csi.callfs.io-reg.sock",
        kubelet_endpoint="/var/lib/kubelet/plugins/csi.callfs.io/csi.sock", http_endpoint=":9808")


@pytest.mark.parametrize(
    "argv",
    [["--mode", "controller", "--kubelet-registration-path", "/k/csi.sock"],
     ["--mode", "node", "--kubelet-registration-path", "k/csi.sock"],
     ["--mode", "node", "--kubelet-registration-path", "/k/csi.sock", "--registration-socket", "reg.sock"],
     ["--http-endpoint", "9808"], ["--http-endpoint", "host:"], ["--http-endpoint", ":70000"]],
)
def test_bad_self_service_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        self_services_from_args(parser().parse_args(argv))


@pytest.mark.parametrize(
    ("endpoint", "parsed"),
    [(":9808", (None, 9808)), ("127.0.0.1:9808", ("127.0.0.1", 9808)), ("[::1]:9808", ("::1", 9808))],
)
def test_http_endpoint(endpoint: str, parsed: tuple[str | None, int]) -> None:
    assert parse_http_endpoint(endpoint) == parsed
