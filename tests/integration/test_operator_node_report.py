"""The operator's view of a cluster through the nodes' own ``GET /v1/cluster/nodes``: real storage nodes
sharing real PostgreSQL and Redis, named as the operator names its pods, and a node that dies."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from callfs.client import CallFSClient, ReplicationInfo
from callfs_operator import names, scaling
from callfs_operator.node_report import NodeReporter, drain, fetch, fetch_replication, tls_context
from callfs_operator.spec import parse_cluster
from callfs_operator.status import Observed, Workload, compute
from support.app_node import AppNode
from support.node import NodeProcess, make_certificate
from support.ports import free_port
from support.waiting import wait_for

SETTLED = Workload(replicas=2, ready=2, updated=2, generation=1, observed_generation=1)


def wait_report(node: NodeProcess, wanted: dict[str, str], timeout: float = 15.0) -> dict[str, str] | None:
    """``node``'s membership report once it is ``wanted``; ``AssertionError`` (with the last) after ``timeout`` s."""
    return wait_for(lambda: fetch(node.url, node.api_key), timeout, f"the membership report {wanted}",
                    until=lambda report: report == wanted)


def test_a_dead_node_turns_the_status_degraded(cluster_factory: Callable[..., list[NodeProcess]]) -> None:
    first, second = cluster_factory(2, instance_prefix="demo-node")
    cluster = parse_cluster("demo", "ns1", {"replicas": 2})
    everyone_up = {"demo-node-0": "up", "demo-node-1": "up"}
    assert wait_report(first, everyone_up) == everyone_up
    replication = fetch_replication(first.url, first.api_key)
    assert replication == ReplicationInfo("localfs", 2, 0)  # two nodes: two copies by default, none missing
    healthy = compute(cluster, 1, Observed(nodes=SETTLED, metadata=SETTLED, locks=SETTLED, reported=everyone_up,
                                           replication=replication))
    assert {c["type"]: c["status"] for c in healthy["conditions"]}["Ready"] == "True"
    assert {c["type"]: c["reason"] for c in healthy["conditions"]}["DataRedundant"] == "Redundant"

    second.kill()  # its pod would still look ready until the kubelet's next probe
    report = wait_report(first, {"demo-node-0": "up", "demo-node-1": "down"})
    assert report == {"demo-node-0": "up", "demo-node-1": "down"}
    status = compute(cluster, 1, Observed(nodes=SETTLED, metadata=SETTLED, locks=SETTLED, reported=report))
    nodes_ready = next(c for c in status["conditions"] if c["type"] == "NodesReady")
    assert (nodes_ready["status"], nodes_ready["reason"]) == ("False", "NodesDown")
    assert "demo-node-1" in nodes_ready["message"]
    assert (status["phase"], status["readyNodes"]) == ("Degraded", 1)


def test_the_pods_a_scale_down_removes_are_drained_and_those_that_stay_are_not(
    cluster_factory: Callable[..., list[NodeProcess]],
) -> None:
    first, _ = cluster_factory(2, instance_prefix="demo-node")
    assert wait_report(first, {"demo-node-0": "up", "demo-node-1": "up"})
    root = first.key_for("root")

    def leaving() -> dict[str, bool]:
        async def ask() -> dict[str, bool]:
            async with CallFSClient(first.url, root) as fs:
                return {str(n.instance_id): bool(n.leaving) for n in await fs.cluster_nodes()}

        return asyncio.run(ask())

    smaller = parse_cluster("demo", "ns1", {"replicas": 1})
    wanted = scaling.requests(smaller, 2, ())
    assert drain(first.url, first.api_key, wanted.drain, wanted.keep) is None  # not root: the nodes refuse
    found = drain(first.url, root, wanted.drain, wanted.keep)
    assert found is not None and set(found) == {"demo-node-1"}
    assert leaving() == {"demo-node-0": False, "demo-node-1": True}
    # Nothing is stored: the node is drained at once, and the scale-down may go ahead.
    assert scaling.plan(smaller, 2, (), found) == scaling.ReplicaPlan(1)
    assert drain(first.url, root, ["demo-node-7"], []) == {"demo-node-7": None}  # never registered

    # spec.replicas back at 2: demo-node-1 stays, so its drain is cancelled.
    again = scaling.requests(parse_cluster("demo", "ns1", {"replicas": 2}), 2, ())
    assert drain(first.url, root, again.drain, again.keep) == {}
    assert leaving() == {"demo-node-0": False, "demo-node-1": False}


def test_a_refused_key_gives_no_report(app_node: AppNode) -> None:
    report = fetch(app_node.url, app_node.api_key)
    assert report is not None and list(report.values()) == ["up"]
    assert fetch(app_node.url, "not-a-key") is None
    assert fetch_replication(app_node.url, app_node.api_key) == ReplicationInfo("localfs", 1, 0)  # alone: one
    assert fetch_replication(app_node.url, "not-a-key") is None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose connections are accepted by the kernel but never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_an_unreachable_cluster_gives_no_report_within_the_timeout(silent_port: int) -> None:
    started = time.monotonic()
    assert fetch(f"http://127.0.0.1:{silent_port}", "key", timeout=0.5) is None
    refused = free_port()
    assert fetch(f"http://127.0.0.1:{refused}", "key", timeout=0.5) is None
    assert fetch("http://demo.ns1.svc.cluster.local:8443", "key", timeout=0.5) is None
    assert time.monotonic() - started < 5


def test_tls_nodes_are_trusted_through_their_secret(node_factory: Callable[..., NodeProcess],
                                                    tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    node = node_factory(server={"cert_file": str(cert), "key_file": str(key)},
                        instance_discovery={"instance_id": "demo-node-0"})
    assert node.url.startswith("https://")
    context = tls_context({"tls.crt": cert.read_text(), "tls.key": key.read_text()})
    assert isinstance(context, ssl.SSLContext)
    assert fetch(node.url, node.api_key, ssl_context=context) == {"demo-node-0": "up"}
    # Without the trust anchor the certificate is refused: no report, no exception.
    assert fetch(node.url, node.api_key) is None
    assert tls_context({"tls.crt": "not a certificate"}) is None
    assert tls_context({}) is None


class SecretsOf:
    """The two Secrets :class:`NodeReporter` reads, as the API server would return them (plain data)."""

    def __init__(self, data: dict[str, dict[str, str]]) -> None:
        self.data = data

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.data.get(f"{namespace}/{name}")


def reporter(data: dict[str, dict[str, str]], **kwargs: Any) -> NodeReporter:
    return NodeReporter(SecretsOf(data), **kwargs)  # type: ignore[arg-type]


def test_reporter_needs_the_root_key_and_a_trust_anchor() -> None:
    plain = parse_cluster("demo", "ns1", {"replicas": 1})
    secured = parse_cluster("demo", "ns1", {"replicas": 1, "tls": {"secretName": "demo-tls"}})
    key_secret = f"ns1/{names.api_key_secret(plain)}"
    assert reporter({})(plain) is None  # no API-key Secret yet
    assert reporter({key_secret: {"other": "x"}})(plain) is None
    assert reporter({key_secret: {names.API_KEY: "k"}})(secured) is None  # no TLS Secret: nothing to trust
    assert reporter({key_secret: {names.API_KEY: "k"}}, enabled=False)(plain) is None
    started = time.monotonic()  # the Service name does not resolve outside a cluster: fails fast
    assert reporter({key_secret: {names.API_KEY: "k"}}, timeout=0.5)(plain) is None
    assert time.monotonic() - started < 5
