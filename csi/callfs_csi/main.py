"""``callfs-csi``: the CSI plugin of CallFS (driver ``csi.callfs.io``).

    callfs-csi --endpoint unix:///csi/csi.sock --mode node --node-id "$NODE_NAME" --state-dir /var/lib/callfs-csi
    callfs-csi --endpoint unix:///csi/csi.sock --mode controller --server http://callfs.storage.svc:8443 \\
               --api-key-file /etc/callfs-csi/root.key

``--server``/``--api-key-file`` name the default cluster (used when a StorageClass names none, and by
``ListVolumes``/``GetCapacity``/``Probe``); the key must belong to user ``root`` for the controller, which sets
quotas. Every option can also come from the environment (``CSI_ENDPOINT``, ``CALLFS_CSI_NODE_ID``, ...).

Without sidecars: ``--kubelet-registration-path`` (the CSI socket's path on the host) makes a node plugin register
itself with the kubelet through ``--registration-socket`` (:mod:`callfs_csi.registration`, in place of
node-driver-registrar), and ``--http-endpoint :9808`` serves ``/healthz`` (:mod:`callfs_csi.health`, in place of
livenessprobe)::

    callfs-csi --mode node --endpoint unix:///csi/csi.sock --http-endpoint :9808 \
               --kubelet-registration-path /var/lib/kubelet/plugins/csi.callfs.io/csi.sock
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from callfs.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from callfs_csi.config import DRIVER_NAME, DriverConfig, Mode
from callfs_csi.errors import InvalidArgument
from callfs_csi.health import parse_http_endpoint
from callfs_csi.mounter import Mounter
from callfs_csi.params import Credentials, validate_server_url
from callfs_csi.registration import registration_socket_path
from callfs_csi.server import SelfServices, serve

__all__ = ["config_from_args", "main", "parser", "self_services_from_args"]

DEFAULT_REGISTRATION_SOCKET = registration_socket_path("/var/lib/kubelet/plugins_registry", DRIVER_NAME)


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="callfs-csi", description=f"CSI plugin {DRIVER_NAME} for CallFS volumes")
    p.add_argument("--endpoint", default=env("CSI_ENDPOINT", "unix:///csi/csi.sock"),
                   help="unix:///path/to/socket (or tcp://host:port); env CSI_ENDPOINT")
    p.add_argument("--node-id", default=env("CALLFS_CSI_NODE_ID") or socket.gethostname(),
                   help="this node's ID (default: the host name); env CALLFS_CSI_NODE_ID")
    p.add_argument("--mode", choices=[m.value for m in Mode], default=env("CALLFS_CSI_MODE", "all"),
                   help="services to run besides Identity")
    p.add_argument("--state-dir", default=env("CALLFS_CSI_STATE_DIR", "/var/lib/callfs-csi"),
                   help="where the node state and volume keys are kept (mode 0700)")
    p.add_argument("--server", default=env("CALLFS_CSI_SERVER"), help="URL of the default CallFS cluster")
    p.add_argument("--api-key-file", default=env("CALLFS_CSI_API_KEY_FILE"),
                   help="file holding the default cluster's API key (a root key for the controller)")
    p.add_argument("--ca-file", default=env("CALLFS_CSI_CA_FILE"),
                   help="PEM certificates to trust for the clusters' https:// URLs (a secret's caBundle overrides "
                        "it; default: the system's trust store)")
    p.add_argument("--default-capacity", type=int, default=int(env("CALLFS_CSI_DEFAULT_CAPACITY", str(1 << 30))),
                   help="bytes given to volumes whose request names no capacity (default 1 GiB)")
    p.add_argument("--max-volumes-per-node", type=int, default=0, help="reported by NodeGetInfo (0: no limit)")
    p.add_argument("--mount-command", default=env("CALLFS_CSI_MOUNT_COMMAND"),
                   help="the callfs-mount command line (default: callfs-mount beside this interpreter)")
    p.add_argument("--request-timeout", type=float, default=30.0, help="seconds per CallFS request")
    p.add_argument("--repair-interval", type=float, default=30.0,
                   help="seconds between checks for stale mounts, which are re-mounted (0: only at start-up)")
    p.add_argument("--volume-secret-namespace", default=env("CALLFS_CSI_VOLUME_SECRET_NAMESPACE"),
                   help="controller: write each volume's key into Secret callfs-volume-<name> of this Kubernetes "
                        "namespace, for the StorageClass to name as the node-stage secret (default: none)")
    p.add_argument("--kubelet-registration-path", default=env("CALLFS_CSI_KUBELET_REGISTRATION_PATH"),
                   help="node mode: register with the kubelet, giving it this path of the CSI socket (as the "
                        "kubelet sees it, e.g. /var/lib/kubelet/plugins/csi.callfs.io/csi.sock); default: no "
                        "registration (a node-driver-registrar sidecar does it)")
    p.add_argument("--registration-socket", default=env("CALLFS_CSI_REGISTRATION_SOCKET", DEFAULT_REGISTRATION_SOCKET),
                   help="where the registration socket goes: the kubelet's plugins_registry directory as this "
                        f"process sees it (default {DEFAULT_REGISTRATION_SOCKET})")
    p.add_argument("--http-endpoint", default=env("CALLFS_CSI_HTTP_ENDPOINT"),
                   help="HOST:PORT (or :PORT, every interface) serving /healthz, which probes the CSI socket; "
                        "default: none (a livenessprobe sidecar does it)")
    p.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default=env("CALLFS_CSI_LOG_LEVEL", "info"),
                   help="lowest level logged (default info); env CALLFS_CSI_LOG_LEVEL")
    p.add_argument("--log-format", choices=LOG_FORMATS, default=env("CALLFS_CSI_LOG_FORMAT", "console"),
                   help="json (one object per line) or console (default); env CALLFS_CSI_LOG_FORMAT")
    return p


def config_from_args(args: argparse.Namespace) -> DriverConfig:
    """The :class:`DriverConfig` of parsed arguments.

    Raises:
        InvalidArgument: ``--server`` without ``--api-key-file`` (or the reverse), a bad URL, an empty key file.
    """
    default = None
    ca_bundle = Path(args.ca_file).read_text() if args.ca_file else None
    if bool(args.server) != bool(args.api_key_file):
        raise InvalidArgument("--server and --api-key-file go together")
    if args.server:
        key = Path(args.api_key_file).read_text().strip()
        if not key:
            raise InvalidArgument(f"{args.api_key_file} is empty")
        default = Credentials(validate_server_url(args.server, "--server"), key, ca_bundle)
    if not args.node_id:
        raise InvalidArgument("--node-id is required")
    if args.default_capacity <= 0:
        raise InvalidArgument("--default-capacity must be positive")
    if args.repair_interval < 0:
        raise InvalidArgument("--repair-interval must not be negative")
    return DriverConfig(node_id=args.node_id, mode=Mode(args.mode), state_dir=args.state_dir, default=default,
                        default_capacity=args.default_capacity, max_volumes_per_node=args.max_volumes_per_node,
                        request_timeout=args.request_timeout, repair_interval=args.repair_interval,
                        volume_secret_namespace=args.volume_secret_namespace or None)


def self_services_from_args(args: argparse.Namespace) -> SelfServices:
    """What the plugin serves in place of sidecars (:class:`SelfServices`), from parsed arguments.

    Raises:
        InvalidArgument: registration outside node mode, relative paths, a malformed ``--http-endpoint``.
    """
    registration = args.kubelet_registration_path
    if registration:
        if not Mode(args.mode).node:
            raise InvalidArgument("--kubelet-registration-path registers a node plugin: it needs --mode node or all")
        for option, path in (("--kubelet-registration-path", registration),
                             ("--registration-socket", args.registration_socket)):
            if not path.startswith("/"):
                raise InvalidArgument(f"{option} must be an absolute path, got {path!r}")
    if args.http_endpoint:
        try:
            parse_http_endpoint(args.http_endpoint)
        except ValueError as exc:
            raise InvalidArgument(f"--http-endpoint: {exc}") from None
    return SelfServices(registration_socket=args.registration_socket if registration else None,
                        kubelet_endpoint=registration or None, http_endpoint=args.http_endpoint or None)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``callfs-csi`` console script; exits 2 on bad options."""
    args = parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        config = config_from_args(args)
        self_services = self_services_from_args(args)
    except (InvalidArgument, OSError) as exc:
        print(f"callfs-csi: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    mounter = Mounter(shlex.split(args.mount_command) if args.mount_command else None)
    asyncio.run(serve(config, args.endpoint, mounter, self_services))


if __name__ == "__main__":
    main()
