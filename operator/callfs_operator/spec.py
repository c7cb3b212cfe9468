"""The ``CallFSCluster`` spec as a typed, validated object.

The API server already enforces the CRD's structural schema and CEL rules
(``charts/callfs/crds/callfsclusters.yaml``); this module parses the spec dict once more so that the operator
works on typed values and so that a spec that reached the operator some other way (an older CRD, a unit test)
fails with a message naming the field (``spec.storage.size: ...``) instead of a ``KeyError`` deep in a
builder. Field names are the CR's camelCase; defaults equal the CRD's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

NODE_IMAGE_REPOSITORY = "ghcr.io/callfs/callfs-node"


def _own_version() -> str:
    try:
        return metadata.version("callfs")
    except metadata.PackageNotFoundError:
        return "0.0.0"


DEFAULT_NODE_IMAGE = f"{NODE_IMAGE_REPOSITORY}:{_own_version()}"
"""The node image when ``spec.image`` is unset: the node release of the operator's own version, so that
upgrading the operator upgrades the nodes (``callfs-operator --node-image`` overrides it)."""
DEFAULT_PROGRESS_DEADLINE = 600
DEFAULT_POSTGRES_IMAGE = "docker.io/library/postgres:16-alpine"
DEFAULT_REDIS_IMAGE = "docker.io/library/redis:7-alpine"
DEFAULT_NODE_STORAGE = "10Gi"
DEFAULT_DEPENDENCY_STORAGE = "5Gi"
MAX_CLUSTER_NAME = 40
"""Longest CR name: child names add up to 12 characters and StatefulSet pods need room for their hash label."""

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class SpecError(ValueError):
    """The spec is invalid; ``str()`` names every offending field (``spec.<path>: <problem>``)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


def _check_quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a storage quantity such as 10Gi or 500Mi")
    return value


class SecretKeyRef(_Model):
    """A key of a Secret in the cluster's namespace."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class Storage(_Model):
    """One PersistentVolumeClaim per pod: ``size`` is a Kubernetes quantity (bytes: ``10Gi``)."""

    size: str = DEFAULT_NODE_STORAGE
    storage_class_name: str | None = None

    _size = field_validator("size")(_check_quantity)


class NodeStorage(Storage):
    """The storage nodes' claims, plus ``replicas``: on how many nodes each block of a file stored in blocks on
    ``localfs`` is written before a write is acknowledged (the node's ``backend.replicas``; ``None``: the
    node's default, 2 in a cluster of two nodes or more)."""

    replicas: int | None = Field(default=None, ge=1, le=16)


class Resources(_Model):
    """Container ``requests``/``limits`` (``cpu``, ``memory``, … → quantity strings), passed through."""

    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """The ``resources`` dict of a container (empty sections omitted)."""
        out: dict[str, Any] = {}
        if self.requests:
            out["requests"] = {k: str(v) for k, v in self.requests.items()}
        if self.limits:
            out["limits"] = {k: str(v) for k, v in self.limits.items()}
        return out


class Backend(_Model):
    """Where file bytes live: the node's PVC (``localfs``) or an S3 bucket.

    For ``s3`` the Secret ``credentialsSecret`` holds the keys ``accessKey`` and ``secretKey``.
    """

    type: Literal["localfs", "s3"] = "localfs"
    bucket: str | None = None
    endpoint: str | None = None
    region: str = "us-east-1"
    force_path_style: bool = True
    credentials_secret: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Backend:
        if self.type == "s3":
            if not self.bucket:
                raise ValueError("bucket is required when type is s3")
            if not self.credentials_secret:
                raise ValueError("credentialsSecret is required when type is s3")
        elif self.bucket or self.endpoint or self.credentials_secret:
            raise ValueError("bucket, endpoint and credentialsSecret are only valid when type is s3")
        return self


class ExternalDatabase(_Model):
    """A user's PostgreSQL: the Secret ``name`` holds a DSN under ``key``."""

    name: str = Field(min_length=1)
    key: str = "dsn"


class ExternalRedis(_Model):
    """A user's Redis: the Secret ``name`` holds ``host:port`` under ``addressKey`` and, optionally, the
    password under ``passwordKey``."""

    name: str = Field(min_length=1)
    address_key: str = "address"
    password_key: str = "password"  # noqa: S105 - a key name


class _ManagedDependency(_Model):
    """A dependency the operator runs itself unless the user points at their own (``externalSecret``)."""

    default_image: ClassVar[str]

    image: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    storage: Storage | None = None
    resources: Resources = Field(default_factory=Resources)

    def _external(self) -> object:
        raise NotImplementedError

    @model_validator(mode="after")
    def _check_exclusive(self) -> _ManagedDependency:
        if self._external() is not None and (
            self.image is not None or self.storage is not None or "resources" in self.model_fields_set
        ):
            raise ValueError("externalSecret excludes the managed settings image, storage and resources")
        return self

    @property
    def managed(self) -> bool:
        return self._external() is None

    @property
    def effective_image(self) -> str:
        return self.image or self.default_image

    @property
    def effective_storage(self) -> Storage:
        return self.storage or Storage(size=DEFAULT_DEPENDENCY_STORAGE)


class Metadata(_ManagedDependency):
    """The metadata store: a managed PostgreSQL StatefulSet, or ``externalSecret`` holding a DSN."""

    default_image: ClassVar[str] = DEFAULT_POSTGRES_IMAGE
    external_secret: ExternalDatabase | None = None

    def _external(self) -> object:
        return self.external_secret


class Locks(_ManagedDependency):
    """The lock service: a managed Redis StatefulSet, or ``externalSecret`` holding address and password."""

    default_image: ClassVar[str] = DEFAULT_REDIS_IMAGE
    external_secret: ExternalRedis | None = None

    def _external(self) -> object:
        return self.external_secret


class TLS(_Model):
    """A ``kubernetes.io/tls`` Secret (``tls.crt``/``tls.key``) the nodes serve HTTPS with."""

    secret_name: str = Field(min_length=1)


class Auth(_Model):
    """``apiKeysSecret`` holds the superuser (``root``) API key under ``api-key``; generated when absent."""

    api_keys_secret: str | None = None


class LocalObjectReference(_Model):
    name: str = Field(min_length=1)


DEFAULT_S3_PORT = 9000
"""The port of the nodes' S3 listener unless ``spec.s3Port`` says otherwise."""


class ClusterSpec(_Model):
    """The whole ``spec`` of a ``CallFSCluster`` (see the CRD for each field's documentation)."""

    replicas: int = Field(default=3, ge=1, le=64)
    port: int = Field(default=8443, ge=1, le=65535)
    s3_port: int | None = Field(default=None, ge=0, le=65535)
    image: str | None = Field(default=None, min_length=1)
    """Pinned node image; ``None`` follows the operator (:attr:`Cluster.default_node_image`)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: tuple[LocalObjectReference, ...] = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    cluster_domain: str = "cluster.local"
    storage: NodeStorage = Field(default_factory=NodeStorage)
    backend: Backend = Field(default_factory=Backend)
    metadata: Metadata = Field(default_factory=Metadata)
    locks: Locks = Field(default_factory=Locks)
    tls: TLS | None = None
    auth: Auth = Field(default_factory=Auth)
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = Field(default=None, min_length=1)
    topology_spread_constraints: tuple[dict[str, Any], ...] = ()
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    progress_deadline_seconds: int = Field(default=DEFAULT_PROGRESS_DEADLINE, ge=1)
    """Seconds a change may take before ``Progressing`` turns ``False`` (reason ``ProgressDeadlineExceeded``)."""

    @model_validator(mode="after")
    def _check_ports(self) -> ClusterSpec:
        if self.s3_port == self.port:
            raise ValueError("s3Port must differ from port")
        return self

    @property
    def s3_listen_port(self) -> int:
        """The port of the S3 listener: ``s3Port``, by default :data:`DEFAULT_S3_PORT` (or the next port when the
        REST API has that one); 0 serves none."""
        if self.s3_port is not None:
            return self.s3_port
        return DEFAULT_S3_PORT if self.port != DEFAULT_S3_PORT else DEFAULT_S3_PORT + 1

    @property
    def scheme(self) -> str:
        """``https`` when ``tls`` is set, else ``http``."""
        return "https" if self.tls is not None else "http"


class Cluster(_Model):
    """A parsed ``CallFSCluster``: its identity plus the typed spec."""

    name: str
    namespace: str
    spec: ClusterSpec
    default_node_image: str = DEFAULT_NODE_IMAGE
    """The operator's node image, used unless ``spec.image`` pins one."""

    @property
    def node_image(self) -> str:
        """The image the storage nodes run."""
        return self.spec.image or self.default_node_image

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if len(value) > MAX_CLUSTER_NAME or not _DNS_LABEL.match(value):
            raise ValueError(
                f"must be a DNS-1035 label of at most {MAX_CLUSTER_NAME} characters "
                "(lower-case letters, digits and '-', starting with a letter)"
            )
        return value


def parse_cluster(name: str, namespace: str, spec: Mapping[str, Any] | None,
                  default_node_image: str = DEFAULT_NODE_IMAGE) -> Cluster:
    """Parse a ``CallFSCluster``'s ``metadata.name``, namespace and ``spec`` dict; ``default_node_image`` is
    the image of nodes whose spec pins none.

    Raises:
        SpecError: an invalid field; the message lists each one as ``spec.<camelCase path>: <problem>``
            (``metadata.name: ...`` for the name).
    """
    try:
        return Cluster.model_validate({"name": name, "namespace": namespace, "spec": dict(spec or {}),
                                       "default_node_image": default_node_image})
    except ValidationError as exc:
        raise SpecError(describe(exc)) from exc


def describe(exc: ValidationError) -> str:
    """One line per error, each naming the field by its CR path."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = "metadata.name" if loc and loc[0] == "name" else ".".join(loc) or "spec"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)
