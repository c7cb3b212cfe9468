"""Node configuration: one typed model loaded from YAML/JSON plus ``CALLFS_<SECTION>__<KEY>`` overrides.

Every key is described in docs/operations.md ("Configuration"). Values from the environment are parsed as YAML scalars
or flow collections (``CALLFS_AUTH__API_KEYS='[k1, k2]'``), so lists and maps can be overridden too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from callfs.permissions import is_valid_name

ENV_PREFIX = "CALLFS_"
DEFAULT_CONFIG_FILE = "config.yaml"
MIN_KEY_LENGTH = 16
S3_ACCESS_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{3,128}")


class ConfigError(Exception):
    """The configuration cannot be loaded or is invalid; the message names the offending field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    """HTTP listener. Timeouts are seconds; ``max_body_bytes`` bounds one request body (bytes).

    ``read_timeout``: the longest a client may stay silent while sending a request — before its headers are
    complete (the connection is closed, as is an idle keep-alive connection) and between two pieces of its body
    (the request fails with 408 ``REQUEST_TIMEOUT``; an upload then writes nothing and releases its path lock).
    ``shutdown_timeout``: how long in-flight requests may run on after SIGTERM/SIGINT.
    ``max_connections``: the most connections open at once; one more is answered 503 and closed. Unset: the
    process's open-files limit (``ulimit -n``) less 128 descriptors kept for the node's own files.
    ``http3_listen_addr``: ``host:port`` of an HTTP/3 (QUIC, UDP) listener serving the same API; empty (the
    default) serves none. Needs TLS (``cert_file``/``key_file``).
    ``workers``: how many processes serve the API (see :mod:`callfs.workers`). Unset: one per CPU the process
    may run on when the metadata store and locks are shared services (PostgreSQL and Redis), else 1. More than
    1 needs PostgreSQL and Redis: SQLite metadata and in-process locks belong to one process.
    ``directory_time_skip``: seconds within which a directory's ``mtime``/``ctime``, moved by an entry added,
    removed or renamed in it, is not moved again (0: every change moves them, as POSIX says; the default
    bounds how often a busy directory's row is written).
    """

    listen_addr: str = "127.0.0.1:8443"
    protocol: Literal["http", "https", "auto"] = "auto"
    external_url: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    read_timeout: float = Field(default=300.0, gt=0)
    shutdown_timeout: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=1 << 40, gt=0)
    max_json_bytes: int = Field(default=64 * 1024, gt=0)
    max_connections: int | None = Field(default=None, gt=0)
    http3_listen_addr: str = ""
    workers: int | None = Field(default=None, ge=1, le=256)
    directory_time_skip: float = Field(default=0.1, ge=0, le=60)

    @field_validator("listen_addr")
    @classmethod
    def _check_listen_addr(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("http3_listen_addr")
    @classmethod
    def _check_http3_listen_addr(cls, value: str) -> str:
        if value:
            split_host_port(value)
        return value


class S3Credential(_Section):
    """One S3 access key's ``secret`` (the secret access key requests are signed with, AWS Signature Version 4)
    and the CallFS ``user`` its requests act as."""

    secret: str
    user: str


class AuthConfig(_Section):
    """API keys (``api_keys[i]`` → ``api-user-<i>``; ``api_key_users``: user → key), secrets, groups.

    ``s3_credentials``: S3 access key id → :class:`S3Credential` (secret and user) for the S3 listener.
    User and group names must satisfy :data:`callfs.permissions.NAME_PATTERN`, the rule chown applies too."""

    api_keys: list[str] = Field(default_factory=list)
    api_key_users: dict[str, str] = Field(default_factory=dict)
    internal_proxy_secret: str | None = None
    single_use_link_secret: str | None = None
    user_groups: dict[str, list[str]] = Field(default_factory=dict)
    s3_credentials: dict[str, S3Credential] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_keys(self) -> AuthConfig:
        keys = [k for k in self.api_keys if k] + list(self.api_key_users.values())
        for key in keys:
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(f"API keys must be at least {MIN_KEY_LENGTH} characters")
        if len(set(keys)) != len(keys):
            raise ValueError("the same API key appears twice")
        if self.internal_proxy_secret is not None:
            if len(self.internal_proxy_secret) < MIN_KEY_LENGTH:
                raise ValueError(f"internal_proxy_secret must be at least {MIN_KEY_LENGTH} characters")
            if self.internal_proxy_secret in keys:
                raise ValueError("internal_proxy_secret must not also be an API key")
        if self.single_use_link_secret is not None and len(self.single_use_link_secret) < MIN_KEY_LENGTH:
            raise ValueError(f"single_use_link_secret must be at least {MIN_KEY_LENGTH} characters")
        for access_key, credential in self.s3_credentials.items():
            if not S3_ACCESS_KEY_PATTERN.fullmatch(access_key):
                raise ValueError(f"invalid S3 access key id {access_key!r}: use 3-128 ASCII letters, digits, '-', '_'")
            if len(credential.secret) < MIN_KEY_LENGTH:
                raise ValueError(f"S3 secrets must be at least {MIN_KEY_LENGTH} characters")
        names = [*self.api_key_users, *self.user_groups, *(g for gs in self.user_groups.values() for g in gs),
                 *(c.user for c in self.s3_credentials.values())]
        for name in names:
            if not is_valid_name(name):
                raise ValueError(
                    f"invalid user or group name {name!r}: use 1-64 ASCII letters, digits, '_', '.', '@' or '-', "
                    "not starting with '.', '@' or '-'"
                )
        return self

    def users_by_key(self) -> dict[str, str]:
        """Map of API key → user ID (``api-user-<i>`` counts only non-empty keys)."""
        out = {key: f"api-user-{i}" for i, key in enumerate(k for k in self.api_keys if k)}
        out.update({key: user for user, key in self.api_key_users.items()})
        return out


class LogConfig(_Section):
    """Logging of ``callfs server`` (:func:`callfs.logs.configure_logging`): the lowest ``level`` written, and
    ``format`` ``json`` (one object per line) or ``console`` (readable text)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "console"


class MetricsConfig(_Section):
    """``enabled``: serve Prometheus metrics at ``GET /metrics`` (authenticated); when false it answers 404.

    ``listen_addr`` (``host:port``): also serve ``GET /metrics`` on a listener of its own (TLS when the API
    listener has TLS), which asks for an API key like the API unless ``open`` is true. Needs ``enabled``.
    """

    enabled: bool = True
    listen_addr: str | None = None
    open: bool = False

    @field_validator("listen_addr")
    @classmethod
    def _check_listen_addr(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value

    @model_validator(mode="after")
    def _check_enabled(self) -> MetricsConfig:
        if self.listen_addr is not None and not self.enabled:
            raise ValueError("metrics.listen_addr needs metrics.enabled")
        return self


class S3Config(_Section):
    """The S3-compatible listener (docs/s3.md). ``listen_addr``: ``host:port`` it serves on; empty (the
    default) serves none. ``region``: the region name clients sign requests for (any region is accepted when
    empty). ``max_keys``: the most keys one listing returns (clients may ask for fewer)."""

    listen_addr: str = ""
    region: str = ""
    max_keys: int = Field(default=1000, gt=0, le=100_000)

    @field_validator("listen_addr")
    @classmethod
    def _check_listen_addr(cls, value: str) -> str:
        if value:
            split_host_port(value)
        return value


class BackendConfig(_Section):
    """Byte backends. ``localfs_root_path`` defaults to ``<data_dir>/blobs``.

    Replication of the local-disk backend's blocks (files stored in blocks; S3 needs none): ``replicas`` is the
    number of distinct nodes each block is written to before a write is acknowledged (``None``: 2 once the
    cluster has two registered nodes, 1 for a node alone). A block with a copy on a node down for more than
    ``replica_repair_grace`` seconds is copied to another node by the repair job, run every
    ``replica_repair_interval`` seconds; the scrub re-hashes this node's copies every ``scrub_interval`` seconds at
    most ``scrub_bytes_per_second`` bytes a second, replacing a corrupt copy from a good one.
    ``whole_files_in_blocks`` stores whole writes to ``localfs`` in blocks too, so that every file gets its
    copies (``None``, the default: when writes need two copies or more; off: a file written whole is one blob
    on its owner, served with ``sendfile``, until written partially).

    ``convert_blobs`` converts, in the background, the files whose bytes are one blob (written by an older
    version, or whole by a node alone) to blocks (:mod:`callfs.convert`), reading at most
    ``convert_bytes_per_second`` bytes a second; a pass runs at start and every ``convert_interval`` seconds.
    """

    default_backend: Literal["localfs", "s3"] = "localfs"
    localfs_root_path: Path | None = None
    s3_bucket_name: str | None = None
    s3_region: str = "us-east-1"
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_force_path_style: bool = True
    s3_server_side_encryption: str | None = None
    replicas: int | None = Field(default=None, ge=1, le=16)
    replica_repair_grace: float = Field(default=900.0, gt=0)
    replica_repair_interval: float = Field(default=60.0, gt=0)
    scrub_interval: float = Field(default=86400.0, gt=0)
    scrub_bytes_per_second: int = Field(default=32 << 20, gt=0)
    whole_files_in_blocks: bool | None = None
    convert_blobs: bool = False
    convert_bytes_per_second: int = Field(default=32 << 20, gt=0)
    convert_interval: float = Field(default=3600.0, gt=0)


    @model_validator(mode="after")
    def _check_s3(self) -> BackendConfig:
        if self.default_backend == "s3" and not self.s3_bucket_name:
            raise ValueError("backend.s3_bucket_name is required when backend.default_backend is s3")
        return self


class MetadataStoreConfig(_Section):
    """``sqlite`` (embedded, ``sqlite_path`` defaults to ``<data_dir>/metadata.db``) or ``postgres`` (``dsn``)."""

    type: Literal["sqlite", "postgres"] = "sqlite"
    dsn: str | None = None
    sqlite_path: Path | None = None
    pool_min_size: int = Field(default=2, ge=1)
    pool_max_size: int = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _check(self) -> MetadataStoreConfig:
        if self.type == "postgres" and not self.dsn:
            raise ValueError("metadata_store.dsn is required when metadata_store.type is postgres")
        return self


class DLMConfig(_Section):
    """Locks: ``local`` (in-process) or ``redis``. Times are seconds. ``lease_ttl`` is the path locks' lease;
    ``lock_session_ttl`` the default life of a file lock session (a mount's ``flock``/``fcntl`` locks) that is not
    renewed: a mount killed loses its locks that long after its last heartbeat."""

    type: Literal["local", "redis"] = "local"
    redis_addr: str = "127.0.0.1:6379"
    redis_password: str | None = None
    redis_db: int = Field(default=0, ge=0)
    wait_timeout: float = Field(default=30.0, gt=0)
    lease_ttl: float = Field(default=15.0, gt=0)
    lock_session_ttl: float = Field(default=30.0, ge=1, le=3600)


class InstanceDiscoveryConfig(_Section):
    """Cluster membership. ``peer_endpoints`` maps instance IDs to URLs (overrides what nodes advertise);
    ``dns_name`` lists every node (a Kubernetes headless Service). Times are seconds: a node whose last
    heartbeat is older than ``node_timeout`` is reported down; ``forward_connect_timeout`` bounds how long a
    request waits for a peer before answering 502."""

    instance_id: str | None = None
    peer_endpoints: dict[str, str] = Field(default_factory=dict)
    dns_name: str | None = None
    heartbeat_interval: float = Field(default=5.0, gt=0)
    node_timeout: float = Field(default=30.0, gt=0)
    forward_connect_timeout: float = Field(default=3.0, gt=0)
    forward_read_timeout: float = Field(default=60.0, gt=0)
    orphan_sweep_interval: float = Field(default=600.0, gt=0)


class LinksConfig(_Section):
    """Single-use links: ``sweep_interval`` seconds between sweeps of expired/used links."""

    sweep_interval: float = Field(default=300.0, gt=0)


class RateLimitRule(_Section):
    """One endpoint class's token bucket: ``rate`` requests per second refilled (0 turns the limit off), up to
    ``burst`` requests at once, counted ``per`` client IP (``ip``) or per API key's user (``key``; requests
    without a key, such as downloads, count per IP)."""

    rate: float = Field(default=0.0, ge=0, le=1_000_000, allow_inf_nan=False)
    burst: int = Field(default=1, ge=1, le=1_000_000)
    per: Literal["ip", "key"] = "ip"


RATE_LIMIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "links": {"rate": 100.0, "burst": 1, "per": "ip"},
    "downloads": {"rate": 10.0, "burst": 5, "per": "ip"},
    "writes": {"rate": 0.0, "burst": 100, "per": "key"},
    "reads": {"rate": 0.0, "burst": 100, "per": "key"},
}
"""Each class's defaults; a class given in the config only changes the keys it names."""


class RateLimitClasses(_Section):
    """Buckets per endpoint class: ``links`` (``POST /v1/links/generate``), ``downloads`` (``/download/...``),
    ``writes`` (PUT/POST/PATCH/DELETE on other ``/v1/...`` routes), ``reads`` (GET/HEAD on ``/v1/...``)."""

    links: RateLimitRule = Field(default_factory=lambda: RateLimitRule(**RATE_LIMIT_DEFAULTS["links"]))
    downloads: RateLimitRule = Field(default_factory=lambda: RateLimitRule(**RATE_LIMIT_DEFAULTS["downloads"]))
    writes: RateLimitRule = Field(default_factory=lambda: RateLimitRule(**RATE_LIMIT_DEFAULTS["writes"]))
    reads: RateLimitRule = Field(default_factory=lambda: RateLimitRule(**RATE_LIMIT_DEFAULTS["reads"]))

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {name: {**RATE_LIMIT_DEFAULTS[name], **value}
                    if name in RATE_LIMIT_DEFAULTS and isinstance(value, dict) else value
                    for name, value in data.items()}
        return data


class RateLimitConfig(_Section):
    """Per-endpoint rate limits (answer 429 ``RATE_LIMIT_EXCEEDED``). Shared by the cluster's nodes through
    Redis when ``dlm.type`` is ``redis``, else kept per node. ``trusted_proxies``: CIDR networks whose
    ``X-Forwarded-For`` is believed when they are the connection's peer; by default the peer is the client."""

    enabled: bool = True
    trusted_proxies: list[str] = Field(default_factory=list)
    classes: RateLimitClasses = Field(default_factory=RateLimitClasses)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        from callfs.ratelimit import parse_networks

        parse_networks(value)
        return value


class Config(_Section):
    """The whole node configuration. ``data_dir`` holds generated secrets, SQLite and local blobs."""

    data_dir: Path = Path("callfs-data")
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    metadata_store: MetadataStoreConfig = Field(default_factory=MetadataStoreConfig)
    dlm: DLMConfig = Field(default_factory=DLMConfig)
    instance_discovery: InstanceDiscoveryConfig = Field(default_factory=InstanceDiscoveryConfig)
    links: LinksConfig = Field(default_factory=LinksConfig)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    s3: S3Config = Field(default_factory=S3Config)

    @model_validator(mode="after")
    def _check_listener(self) -> Config:
        host, _ = split_host_port(self.server.listen_addr)
        has_tls = self.server.cert_file is not None and self.server.key_file is not None
        if (self.server.cert_file is None) != (self.server.key_file is None):
            raise ValueError("server.cert_file and server.key_file must be given together")
        if self.server.protocol == "https" and not has_tls:
            raise ValueError("server.protocol https needs server.cert_file and server.key_file")
        # SECURITY: plain HTTP carries API keys in clear text; only loopback may do that implicitly.
        if self.server.protocol == "auto" and not has_tls and not is_loopback(host):
            raise ValueError(
                f"refusing to serve plain HTTP on non-loopback address {host!r}: "
                "configure TLS (server.cert_file/key_file) or set server.protocol: http explicitly"
            )
        if self.s3.listen_addr and self.server.protocol == "auto" and not has_tls:
            s3_host, _ = split_host_port(self.s3.listen_addr)
            # SECURITY: signed requests keep the secret, not the bytes: plain HTTP only on loopback implicitly.
            if not is_loopback(s3_host):
                raise ValueError(
                    f"refusing to serve S3 over plain HTTP on non-loopback address {s3_host!r}: "
                    "configure TLS (server.cert_file/key_file) or set server.protocol: http explicitly"
                )
        if self.server.http3_listen_addr and (not has_tls or self.server.protocol == "http"):
            raise ValueError(
                "server.http3_listen_addr needs TLS: HTTP/3 always runs over TLS 1.3, so set server.cert_file and "
                "server.key_file (and not server.protocol: http)"
            )
        return self

    @model_validator(mode="after")
    def _check_workers(self) -> Config:
        if (self.server.workers or 1) > 1 and not self.shares_state:
            raise ValueError(
                f"server.workers {self.server.workers} needs metadata_store.type postgres and dlm.type redis: "
                "SQLite metadata and in-process locks live in one process, so use server.workers: 1 with them"
            )
        return self

    @property
    def shares_state(self) -> bool:
        """True when metadata and locks are shared services (PostgreSQL and Redis) that several processes of one
        node can use at once."""
        return self.metadata_store.type == "postgres" and self.dlm.type == "redis"

    @property
    def workers(self) -> int:
        """Processes serving the API: ``server.workers``, or when unset one per CPU this process may run on
        (its affinity mask) if :attr:`shares_state`, else 1."""
        if self.server.workers is not None:
            return self.server.workers
        return max(1, len(os.sched_getaffinity(0))) if self.shares_state else 1

    @property
    def uses_tls(self) -> bool:
        return self.server.protocol != "http" and self.server.cert_file is not None

    def sqlite_path(self) -> Path:
        return self.metadata_store.sqlite_path or self.data_dir / "metadata.db"

    def localfs_root(self) -> Path:
        return self.backend.localfs_root_path or self.data_dir / "blobs"

    def masked(self) -> dict[str, Any]:
        """The effective settings as JSON-able data with every secret replaced by ``***``."""
        data = json.loads(self.model_dump_json())
        auth = data["auth"]
        auth["api_keys"] = ["***" for _ in auth["api_keys"]]
        auth["api_key_users"] = {user: "***" for user in auth["api_key_users"]}
        auth["s3_credentials"] = {key: {**value, "secret": "***"} for key, value in auth["s3_credentials"].items()}
        for key in ("internal_proxy_secret", "single_use_link_secret"):
            if auth[key] is not None:
                auth[key] = "***"
        for section, key in (("backend", "s3_secret_key"), ("dlm", "redis_password"), ("metadata_store", "dsn")):
            if data[section][key] is not None:
                data[section][key] = "***"
        return data  # type: ignore[no-any-return]


def split_host_port(addr: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port``; raise ``ValueError`` when malformed."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen address {addr!r} must be host:port with a port in 1..65535")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPv4/IPv6 literals."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested overrides from ``CALLFS_<SECTION>__<KEY>=value`` (keys lower-cased).

    A value is taken verbatim as a string (the model converts ``"30"`` or ``"true"`` where the field is a
    number or flag), so secrets such as ``null`` or ``pass #1`` are never reinterpreted. A value starting with
    ``[`` or ``{`` is a YAML flow list or map whose scalars stay strings: ``CALLFS_AUTH__API_KEYS='[k1, k2]'``.

    Raises:
        ConfigError: a malformed list/map value, or two variables that nest inconsistently.
    """
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys:
            continue
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = yaml.load(raw, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds only str/list/dict
            except yaml.YAMLError as exc:
                raise ConfigError(f"environment variable {name} is not a valid list or map: {exc}") from exc
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another override")
        node[keys[-1]] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the configuration.

    ``path`` is a YAML or JSON file; when ``None``, ``config.yaml`` in the working directory is used if it
    exists, else the embedded defaults. ``environ`` (default ``os.environ``) supplies overrides.

    Raises:
        ConfigError: unreadable file, syntax error, or validation error (message names the field).
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = Path(DEFAULT_CONFIG_FILE)
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        try:
            loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            kind = "JSON" if path.suffix == ".json" else "YAML"
            raise ConfigError(f"config file {path} is not valid {kind}: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        data = loaded
    _merge(data, env_overrides(environ))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        lines.append(f"{where}: {err['msg']}")
    return "invalid configuration: " + "; ".join(lines)
