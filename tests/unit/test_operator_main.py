"""The ``callfs-operator`` command line and the credentials it hands kopf."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from kubernetes import client as kclient

from callfs_operator.main import connection_info, parse_args
from callfs_operator.metrics import OperatorMetrics
from callfs_operator.spec import DEFAULT_NODE_IMAGE


def test_namespaces_are_repeatable() -> None:
    options = parse_args(["-n", "a", "--namespace", "b", "--resync-interval", "5"])
    assert options.namespaces == ["a", "b"] and not options.all_namespaces
    assert options.resync_interval == 5.0
    assert options.health_port == 8080 and options.metrics_port == 0 and options.peering is None


def test_all_namespaces() -> None:
    options = parse_args(["--all-namespaces", "--kubeconfig", "/k", "--peering", "callfs", "--metrics-port", "9090"])
    assert options.all_namespaces and options.kubeconfig == Path("/k")
    assert (options.peering, options.metrics_port) == ("callfs", 9090)


@pytest.mark.parametrize("argv", [[], ["-n", "a", "-A"], ["-A", "--resync-interval", "0"]])
def test_scope_is_required_and_exclusive(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert "callfs-operator" in capsys.readouterr().err


def test_connection_info_mirrors_the_client_configuration() -> None:
    cfg = kclient.Configuration()
    cfg.host = "https://127.0.0.1:6443"
    cfg.ssl_ca_cert = "/pki/ca.crt"
    cfg.cert_file, cfg.key_file = "/pki/admin.crt", "/pki/admin.key"
    cfg.api_key = {"authorization": "Bearer tok-123"}
    info = connection_info(kclient.ApiClient(cfg))
    assert info.server == "https://127.0.0.1:6443"
    assert (info.ca_path, info.certificate_path, info.private_key_path) == ("/pki/ca.crt", "/pki/admin.crt",
                                                                           "/pki/admin.key")
    assert info.token == "tok-123" and info.insecure is False


@pytest.mark.parametrize("header", ["Bearer tok-123", "bearer tok-123", "tok-123"])
def test_connection_info_takes_the_token_alone_whatever_the_scheme_case(header: str) -> None:
    """The in-cluster loader of the kubernetes client stores "bearer <token>" (lower case)."""
    cfg = kclient.Configuration()
    cfg.api_key = {"authorization": header}
    assert connection_info(kclient.ApiClient(cfg)).token == "tok-123"


def test_metrics_record_reconciles() -> None:
    metrics = OperatorMetrics()
    metrics.reconciled("ok", 0.25)
    metrics.reconciled("ok", 0.5)
    metrics.reconciled("degraded", 0.1)
    assert metrics.registry.get_sample_value("callfs_operator_reconciles_total", {"result": "ok"}) == 2
    assert metrics.registry.get_sample_value("callfs_operator_reconcile_seconds_sum") == pytest.approx(0.85)


def test_node_probe_is_on_by_default_and_can_be_turned_off(capsys: pytest.CaptureFixture[str]) -> None:
    default = parse_args(["-A"])
    assert default.node_probe and default.node_probe_timeout == 2.0
    off = parse_args(["-A", "--no-node-probe", "--node-probe-timeout", "0.5"])
    assert not off.node_probe and off.node_probe_timeout == 0.5
    with pytest.raises(SystemExit):
        parse_args(["-A", "--node-probe-timeout", "0"])
    assert "--node-probe-timeout must be positive" in capsys.readouterr().err


def test_peered_replicas_get_distinct_priorities_unless_told(capsys: pytest.CaptureFixture[str]) -> None:
    # kopf pauses every operator when two peers share a priority: the default must not tie.
    drawn = {parse_args(["-A", "--peering", "callfs"]).peering_priority for _ in range(20)}
    assert len(drawn) == 20 and all(p > 0 for p in drawn)
    assert parse_args(["-A", "--peering", "callfs", "--peering-priority", "7"]).peering_priority == 7
    assert parse_args(["-A"]).peering_priority == 0
    with pytest.raises(SystemExit):
        parse_args(["-A", "--peering-priority", "7"])
    assert "--peering-priority needs --peering" in capsys.readouterr().err


def test_listen_address_defaults_to_every_interface() -> None:
    assert parse_args(["-A"]).listen_address == "0.0.0.0"  # the kubelet probes the pod IP
    assert parse_args(["-A", "--listen-address", "127.0.0.1"]).listen_address == "127.0.0.1"


def test_node_image_defaults_to_the_operators_own_release() -> None:
    assert parse_args(["-A"]).node_image == DEFAULT_NODE_IMAGE
    assert DEFAULT_NODE_IMAGE.endswith(":" + metadata.version("callfs"))
    assert parse_args(["-A", "--node-image", "reg.example/node:2"]).node_image == "reg.example/node:2"
