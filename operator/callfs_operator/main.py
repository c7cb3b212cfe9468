"""``callfs-operator``: run the CallFSCluster operator (kopf) against the cluster of a kubeconfig or the
in-cluster service account.

Scope is one or more namespaces (``--namespace``, repeatable) or the whole cluster (``--all-namespaces``).
``/healthz`` on ``--health-port`` answers while the operator runs (kopf's liveness endpoint); Prometheus
metrics are on ``--metrics-port``. Several replicas coordinate through kopf peering (``--peering NAME``,
which needs kopf's peering CRDs, shipped in the chart's ``crds/``): the replica of the highest
``--peering-priority`` reconciles, the others stand by and take over once its peering record is gone (a clean
exit removes it at once, a crash after kopf's 60 s peer lifetime). kopf pauses *every* replica when two share
a priority, so the default priority is drawn at random per process. Without ``--peering`` the operator runs
standalone and must be a single replica.
Status conditions also weigh the nodes' own ``GET /v1/cluster/nodes`` when the client Service is reachable
(``--no-node-probe`` turns that off, e.g. for an operator running outside the cluster network).
Clusters that pin no ``spec.image`` run ``--node-image``, by default the node release of the operator's own
version: upgrading the operator rolls their nodes to the matching version.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kopf
from kubernetes import client as kclient
from kubernetes import config as kconfig
from prometheus_client import start_http_server

from callfs.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from callfs_operator.handlers import Reconciler, register
from callfs_operator.metrics import OperatorMetrics
from callfs_operator.node_report import PROBE_TIMEOUT
from callfs_operator.spec import DEFAULT_NODE_IMAGE

DEFAULT_RESYNC_SECONDS = 30.0
log = logging.getLogger(__name__)


@dataclass
class Options:
    """Command-line options (seconds for intervals; TCP ports on ``listen_address``, 0 disables a port;
    ``log_level``/``log_format`` as :func:`callfs.logs.configure_logging` takes them)."""

    namespaces: list[str] = field(default_factory=list)
    all_namespaces: bool = False
    kubeconfig: Path | None = None
    listen_address: str = "0.0.0.0"
    health_port: int = 8080
    metrics_port: int = 0
    resync_interval: float = DEFAULT_RESYNC_SECONDS
    peering: str | None = None
    peering_priority: int = 0
    node_probe: bool = True
    node_probe_timeout: float = PROBE_TIMEOUT
    node_image: str = DEFAULT_NODE_IMAGE
    log_level: str = "info"
    log_format: str = "console"


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Parse the command line; exits with status 2 and a usage message when it is invalid."""
    parser = argparse.ArgumentParser(prog="callfs-operator", description=__doc__.split("\n\n")[0])
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", dest="namespaces", default=[],
                       help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    parser.add_argument("--listen-address", default="0.0.0.0",
                        help="address of the health and metrics ports (default 0.0.0.0)")
    parser.add_argument("--health-port", type=int, default=8080, help="port of /healthz (0: none; default 8080)")
    parser.add_argument("--metrics-port", type=int, default=0, help="port of Prometheus /metrics (0: none)")
    parser.add_argument("--resync-interval", type=float, default=DEFAULT_RESYNC_SECONDS,
                        help="seconds between drift checks of each cluster (default 30)")
    parser.add_argument("--peering", help="kopf peering name, for several operator replicas")
    parser.add_argument("--peering-priority", type=int, default=None,
                        help="kopf peering priority: the highest live replica reconciles (default: random, so "
                             "that replicas never tie)")
    parser.add_argument("--no-node-probe", dest="node_probe", action="store_false",
                        help="do not read the nodes' own /v1/cluster/nodes for the status conditions")
    parser.add_argument("--node-probe-timeout", type=float, default=PROBE_TIMEOUT,
                        help=f"seconds allowed to reach a cluster's client Service (default {PROBE_TIMEOUT:g})")
    parser.add_argument("--node-image", default=DEFAULT_NODE_IMAGE,
                        help="node image of clusters whose spec.image is unset (default: the node release of this "
                             f"operator's version, {DEFAULT_NODE_IMAGE})")
    parser.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default="info",
                        help="lowest level logged (default info)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="console",
                        help="json (one object per line) or console (default)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (same as --log-level debug)")
    ns = parser.parse_args(argv)
    if ns.resync_interval <= 0:
        parser.error("--resync-interval must be positive")
    if ns.peering_priority is not None and ns.peering is None:
        parser.error("--peering-priority needs --peering")
    priority = 0
    if ns.peering is not None:
        priority = ns.peering_priority if ns.peering_priority is not None else 1 + secrets.randbelow(2**31 - 1)
    if ns.node_probe_timeout <= 0:
        parser.error("--node-probe-timeout must be positive")
    return Options(namespaces=ns.namespaces, all_namespaces=ns.all_namespaces, kubeconfig=ns.kubeconfig,
                   listen_address=ns.listen_address, health_port=ns.health_port, metrics_port=ns.metrics_port,
                   resync_interval=ns.resync_interval,
                   peering=ns.peering, peering_priority=priority,
                   node_probe=ns.node_probe, node_probe_timeout=ns.node_probe_timeout, node_image=ns.node_image,
                   log_level="debug" if ns.verbose else ns.log_level, log_format=ns.log_format)


def api_client(kubeconfig: Path | None) -> kclient.ApiClient:
    """A client from ``kubeconfig``, else the in-cluster service account, else the default kubeconfig."""
    if kubeconfig is not None:
        return kconfig.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call,no-any-return]
    try:
        kconfig.load_incluster_config()  # type: ignore[no-untyped-call]
    except kconfig.ConfigException:
        kconfig.load_kube_config()  # type: ignore[no-untyped-call]
    return kclient.ApiClient()


def connection_info(api: kclient.ApiClient) -> kopf.ConnectionInfo:
    """kopf's credentials, taken from the ``kubernetes`` client's configuration (so both use the same)."""
    cfg = api.configuration
    token = None
    auth = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    if auth:
        # The in-cluster loader writes "bearer <token>", a kubeconfig "Bearer <token>" (RFC 6750: the scheme is
        # case-insensitive); kopf wants the token alone.
        scheme, _, value = auth.strip().partition(" ")
        token = value.strip() if scheme.lower() == "bearer" and value.strip() else auth.strip()
    return kopf.ConnectionInfo(
        server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
        certificate_path=cfg.cert_file, private_key_path=cfg.key_file, token=token,
    )


async def run(options: Options, api: kclient.ApiClient, metrics: OperatorMetrics,
              stop_flag: asyncio.Event | threading.Event | None = None,
              ready_flag: asyncio.Event | threading.Event | None = None) -> None:
    """Run the operator until ``stop_flag`` is set (or forever); ``ready_flag`` is set once it watches."""
    registry = kopf.OperatorRegistry()
    reconciler = Reconciler(api, metrics, node_probe=options.node_probe,
                            node_probe_timeout=options.node_probe_timeout, default_node_image=options.node_image)
    register(registry, reconciler, connection_info(api), options.resync_interval)
    if options.peering is not None:
        # A follower starts paused and stays so silently while a higher priority is alive: say which it is.
        log.info("kopf peering %r with priority %d (the highest live replica reconciles)", options.peering,
                 options.peering_priority)
    await kopf.operator(
        registry=registry,
        clusterwide=options.all_namespaces,
        namespaces=options.namespaces,
        standalone=options.peering is None,
        peering_name=options.peering,
        priority=options.peering_priority if options.peering is not None else None,
        liveness_endpoint=f"http://{_host(options.listen_address)}:{options.health_port}/healthz"
        if options.health_port else None,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def _host(address: str) -> str:
    """``address`` as the host part of a URL (IPv6 literals in brackets)."""
    return f"[{address}]" if ":" in address else address


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``callfs-operator`` console script."""
    options = parse_args(argv)
    configure_logging(options.log_level, options.log_format)
    metrics = OperatorMetrics()
    if options.metrics_port:
        start_http_server(options.metrics_port, addr=options.listen_address, registry=metrics.registry)
    api = api_client(options.kubeconfig)
    try:
        asyncio.run(run(options, api, metrics))
    finally:
        api.close()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
