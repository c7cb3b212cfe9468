"""StorageClass parameters and CSI secrets: which CallFS cluster a volume lives on and which key opens it.

StorageClass ``parameters`` (passed to ``CreateVolume``; Kubernetes strips its own ``csi.storage.k8s.io/*`` keys
and we ignore any that remain):

* ``server``: the cluster's URL, e.g. ``https://callfs.example:8443``; or
* ``cluster``: ``<namespace>/<name>`` of a ``CallFSCluster`` resource: the endpoint it advertises, which its
  operator writes as ``serverURL`` into the ``<name>-api-key`` Secret (``https://`` for a TLS cluster, with the
  CA as ``ca.crt``), when the request's secret holds one; else its client Service
  ``http://<name>.<namespace>.svc:8443`` (:func:`cluster_service_url`, e.g. ``GetCapacity``, which has no
  secrets);
* neither: the driver's default cluster (``callfs-csi --server``), else the secret's ``serverURL``.
* ``onDelete``: ``delete`` (default) | ``retain`` | ``archive`` — what ``DeleteVolume`` does with the directory.
* ``maxInodes``: a positive integer, the volume quota's inode limit (default: none).

Mutable parameters (a ``VolumeAttributesClass``, ``CreateVolume``'s ``mutable_parameters`` and
``ControllerModifyVolume``): ``onDelete`` and ``maxInodes``, same values; they override the StorageClass ones.

Secrets (the standard ``csi.storage.k8s.io/provisioner-secret-name``/``-namespace``,
``controller-expand-secret-*`` and ``node-stage-secret-*`` StorageClass parameters make Kubernetes put the
Secret's data in each request's ``secrets`` field):

* ``apiKey`` (or ``api-key``, the key of the ``<name>-api-key`` Secret a ``CallFSCluster``'s operator generates,
  so that a StorageClass can name that Secret directly): a CallFS API key. The controller sets and changes
  directory quotas, which the server allows to ``root`` only, so the provisioner and controller-expand secrets
  must hold a key of user ``root``; the node-stage secret's key is the identity the mount acts as (root too,
  unless a narrower user owns the volumes).
* ``serverURL`` (optional): the cluster's URL when the StorageClass names none.
* ``caBundle`` (or ``ca.crt``, optional): PEM certificates to trust for an ``https://`` cluster whose certificate
  no public CA signed (a ``CallFSCluster`` with ``spec.tls``); else the driver's ``--ca-file``, else the system's.

Pure functions; errors are :class:`~callfs_csi.errors.InvalidArgument` with the offending key in the message.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from callfs_csi.errors import InvalidArgument

__all__ = [
    "API_KEY_SECRET",
    "CLIENT_SERVICE_PORT",
    "SERVER_SECRET",
    "Credentials",
    "MutableParameters",
    "OnDelete",
    "VolumeParameters",
    "cluster_service_url",
    "credentials",
    "parse_mutable_parameters",
    "parse_parameters",
    "validate_server_url",
]

API_KEY_SECRET: Final = "apiKey"  # noqa: S105 - the name of a secret key, not a secret
OPERATOR_API_KEY_SECRET: Final = "api-key"  # noqa: S105 - the key in a CallFSCluster's generated Secret
SERVER_SECRET: Final = "serverURL"  # noqa: S105
CA_SECRET: Final = "caBundle"  # noqa: S105 - the name of a secret key
CA_CRT_SECRET: Final = "ca.crt"  # noqa: S105 - the key of a kubernetes.io/tls Secret's CA
CLIENT_SERVICE_PORT: Final = 8443
"""Port of a ``CallFSCluster``'s client Service."""
KUBERNETES_PREFIX: Final = "csi.storage.k8s.io/"
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class OnDelete(enum.StrEnum):
    """What ``DeleteVolume`` does with the volume directory (StorageClass parameter ``onDelete``)."""

    DELETE = "delete"
    """Remove the directory and everything in it."""
    RETAIN = "retain"
    """Leave the directory (and its quota) in place."""
    ARCHIVE = "archive"
    """Move it to ``/archive/<name>-<timestamp>``."""


@dataclass(frozen=True, slots=True)
class VolumeParameters:
    """Parsed StorageClass parameters: ``server`` (a URL, ``None``: not named), the ``on_delete`` policy, the
    inode limit ``max_inodes`` (``None``: unlimited) and the ``cluster`` reference ``server`` came from."""

    server: str | None = None
    on_delete: OnDelete = OnDelete.DELETE
    max_inodes: int | None = None
    cluster: str | None = None

    def server_for(self, secrets: Mapping[str, str]) -> str | None:
        """The server of a request with ``secrets``: for a ``cluster`` reference, the secret's ``serverURL`` (the
        endpoint the cluster advertises) when it has one; else :attr:`server`."""
        if self.cluster is not None and secrets.get(SERVER_SECRET):
            return None  # credentials() takes the secret's serverURL
        return self.server


@dataclass(frozen=True, slots=True)
class MutableParameters:
    """Parsed mutable parameters; ``None`` leaves a property as it is."""

    on_delete: OnDelete | None = None
    max_inodes: int | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to reach a cluster: ``server`` URL (no trailing slash), ``api_key``, and the PEM certificates to trust
    for it (``ca_bundle``; ``None``: the system's)."""

    server: str
    api_key: str
    ca_bundle: str | None = None


def validate_server_url(url: str, what: str = "server") -> str:
    """``url`` without a trailing slash when it is an ``http(s)://host[:port]`` URL.

    Raises:
        InvalidArgument: another scheme, no host, or a query/fragment.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"{what} must be an http(s)://host[:port] URL, got {url!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidArgument(f"{what} {url!r} must not carry credentials, a query or a fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidArgument(f"{what} {url!r} has a bad port") from exc
    return url.rstrip("/")


def cluster_service_url(ref: str) -> str:
    """The client Service URL of the ``CallFSCluster`` ``<namespace>/<name>``.

    >>> cluster_service_url("storage/callfs")
    'http://callfs.storage.svc:8443'

    Raises:
        InvalidArgument: not ``namespace/name`` with both parts DNS-1123 labels.
    """
    namespace, sep, name = ref.partition("/")
    if not sep or not _DNS_LABEL.match(namespace) or not _DNS_LABEL.match(name):
        raise InvalidArgument(f"cluster must be '<namespace>/<name>' of a CallFSCluster, got {ref!r}")
    return f"http://{name}.{namespace}.svc:{CLIENT_SERVICE_PORT}"


def parse_parameters(parameters: Mapping[str, str]) -> VolumeParameters:
    """Parse ``CreateVolume``/``GetCapacity`` parameters (see the module docstring).

    Raises:
        InvalidArgument: both ``server`` and ``cluster``, a malformed value, or an unknown key (a typo would
            otherwise be ignored silently).
    """
    known = {"server", "cluster", "onDelete", "maxInodes"}
    unknown = sorted(k for k in parameters if k not in known and not k.startswith(KUBERNETES_PREFIX))
    if unknown:
        raise InvalidArgument(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "server" in parameters and "cluster" in parameters:
        raise InvalidArgument("give either server or cluster, not both")
    server: str | None = None
    if "server" in parameters:
        server = validate_server_url(parameters["server"])
    elif "cluster" in parameters:
        server = cluster_service_url(parameters["cluster"])
    on_delete = _on_delete(parameters.get("onDelete", OnDelete.DELETE.value))
    max_inodes = _max_inodes(parameters["maxInodes"]) if "maxInodes" in parameters else None
    return VolumeParameters(server, on_delete, max_inodes, parameters.get("cluster"))


def parse_mutable_parameters(parameters: Mapping[str, str]) -> MutableParameters:
    """Parse mutable parameters (``onDelete``, ``maxInodes``).

    Raises:
        InvalidArgument: an unknown key or a malformed value (spec, ``ControllerModifyVolume``: unsupported
            mutable parameters are ``INVALID_ARGUMENT``).
    """
    unknown = sorted(k for k in parameters if k not in ("onDelete", "maxInodes"))
    if unknown:
        raise InvalidArgument(f"unsupported mutable parameter(s) {', '.join(unknown)}; supported: maxInodes, onDelete")
    return MutableParameters(
        _on_delete(parameters["onDelete"]) if "onDelete" in parameters else None,
        _max_inodes(parameters["maxInodes"]) if "maxInodes" in parameters else None,
    )


def _on_delete(raw: str) -> OnDelete:
    try:
        return OnDelete(raw)
    except ValueError:
        raise InvalidArgument(f"onDelete must be delete, retain or archive, got {raw!r}") from None


def _max_inodes(raw: str) -> int:
    if not raw.isdigit() or int(raw) <= 0:
        raise InvalidArgument(f"maxInodes must be a positive integer, got {raw!r}")
    return int(raw)


def credentials(
    secrets: Mapping[str, str], server: str | None, default: Credentials | None
) -> Credentials:
    """The credentials of a request: the volume's ``server`` (else the secret's ``serverURL``, else the
    default's) with the secret's ``apiKey`` (else its ``api-key``, else the default key, when the server is the
    default one), trusting the secret's ``caBundle`` (else its ``ca.crt``, else the default's CA bundle).

    Raises:
        InvalidArgument: no server can be determined, or no key for it (spec: missing secrets are
            ``INVALID_ARGUMENT``).
    """
    if server is None and SERVER_SECRET in secrets:
        server = validate_server_url(secrets[SERVER_SECRET], f"secret {SERVER_SECRET}")
    if server is None:
        if default is None:
            raise InvalidArgument(
                f"no CallFS cluster: set StorageClass parameter server or cluster, or secret {SERVER_SECRET}"
            )
        server = default.server
    key = secrets.get(API_KEY_SECRET) or secrets.get(OPERATOR_API_KEY_SECRET, "")
    if not key:
        if default is None or default.server.rstrip("/") != server.rstrip("/"):
            raise InvalidArgument(f"secret {API_KEY_SECRET} (or {OPERATOR_API_KEY_SECRET}) is required for {server}")
        key = default.api_key
    ca_bundle = secrets.get(CA_SECRET) or secrets.get(CA_CRT_SECRET) or (default.ca_bundle if default else None)
    return Credentials(server.rstrip("/"), key, ca_bundle or None)
