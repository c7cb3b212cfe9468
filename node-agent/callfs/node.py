"""Assembly of one storage node from its configuration: secrets, metadata store, locks, backends, engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from callfs import __version__
from callfs.access_keys import AccessKeys
from callfs.backends.base import Backend, BackendUnavailable
from callfs.backends.localfs import LocalFSBackend
from callfs.config import Config, ConfigError, split_host_port
from callfs.convert import Converter
from callfs.drain import Drains
from callfs.engine import Engine
from callfs.links import Clock
from callfs.locks.base import LockService
from callfs.locks.file_locks import FileLockTable, LocalFileLockTable
from callfs.membership import Membership
from callfs.metadata.base import MetadataStore
from callfs.metrics import Metrics
from callfs.peers import PeerClient
from callfs.replication import Replication

log = logging.getLogger(__name__)

SECRETS_FILE = "secrets.json"
DATA_DIR_MODE = 0o700
"""The data directory holds secrets, the SQLite metadata and file bytes: only the node's user may enter it."""
READY_TIMEOUT = 2.0
"""Seconds each readiness check may take before it counts as failed."""


@dataclass(frozen=True, slots=True)
class NodeSecrets:
    """Secrets in effect. ``generated_api_key`` is set when the development key from the data dir is used."""

    users_by_key: dict[str, str]
    internal_proxy_secret: str
    link_secret: str
    instance_id: str
    generated_api_key: str | None = None


def secure_data_dir(config: Config) -> None:
    """Create ``data_dir`` with mode 0700, or tighten an existing one to 0700 (it may have been made 0755 by an
    older version). A directory the node cannot chmod (another user's) is logged, not fatal.

    Raises:
        ConfigError: the directory cannot be created.
    """
    try:
        config.data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data_dir {config.data_dir}: {exc.strerror}") from exc
    try:
        if config.data_dir.stat().st_mode & 0o777 != DATA_DIR_MODE:
            config.data_dir.chmod(DATA_DIR_MODE)
            log.info("data_dir %s tightened to mode %04o", config.data_dir, DATA_DIR_MODE)
    except OSError as exc:
        log.warning("cannot make data_dir %s mode %04o: %s", config.data_dir, DATA_DIR_MODE, exc.strerror)


def load_or_generate_secrets(config: Config) -> NodeSecrets:
    """Secrets from the config, completed by ones generated once and kept in ``<data_dir>/secrets.json``.

    The file is created with mode 0600. A development API key is generated only when the config has none.
    """
    path = config.data_dir / SECRETS_FILE
    try:
        stored: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the generated secrets in {path}: {exc}; fix or remove the file") from exc
    if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
        raise ConfigError(f"{path} must hold a JSON object of strings; fix or remove the file")
    changed = False

    def pick(key: str, configured: str | None, make: str) -> str:
        nonlocal changed
        if configured:
            return configured
        if key not in stored:
            stored[key] = make
            changed = True
        return stored[key]

    users = config.auth.users_by_key()
    generated_key = None
    if not users:
        generated_key = pick("api_key", None, secrets.token_urlsafe(32))
        users = {generated_key: "api-user-0"}
    internal = pick("internal_proxy_secret", config.auth.internal_proxy_secret, secrets.token_urlsafe(32))
    link = pick("single_use_link_secret", config.auth.single_use_link_secret, secrets.token_urlsafe(32))
    instance = pick("instance_id", config.instance_discovery.instance_id, f"node-{secrets.token_hex(4)}")
    if changed:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return NodeSecrets(users, internal, link, instance, generated_key)


def open_store(config: Config) -> MetadataStore:
    """The configured metadata store (not started)."""
    if config.metadata_store.type == "postgres":
        from callfs.metadata.postgres import PostgresStore

        assert config.metadata_store.dsn is not None
        return PostgresStore(
            config.metadata_store.dsn,
            min_size=config.metadata_store.pool_min_size,
            max_size=config.metadata_store.pool_max_size,
        )
    from callfs.metadata.sqlite import SQLiteStore

    return SQLiteStore(config.sqlite_path())


def redis_url(config: Config) -> str:
    """``redis://[:password@]host:port/db`` from the ``dlm`` section."""
    host, port = split_host_port(config.dlm.redis_addr)
    auth = f":{quote(config.dlm.redis_password, safe='')}@" if config.dlm.redis_password else ""
    host = f"[{host}]" if ":" in host else host
    return f"redis://{auth}{host}:{port}/{config.dlm.redis_db}"


def open_locks(config: Config) -> LockService:
    """The configured lock service (not started)."""
    if config.dlm.type == "redis":
        from callfs.locks.redis import RedisLockService

        return RedisLockService(url=redis_url(config), wait_timeout=config.dlm.wait_timeout,
                                lease_ttl=config.dlm.lease_ttl)
    from callfs.locks.local import LocalLockService

    return LocalLockService(wait_timeout=config.dlm.wait_timeout, lease_ttl=config.dlm.lease_ttl)


def open_file_locks(config: Config) -> FileLockTable:
    """The configured file lock table (not started): in Redis with ``dlm.type: redis``, else in this process."""
    if config.dlm.type == "redis":
        from callfs.locks.redis_file_locks import RedisFileLockTable

        return RedisFileLockTable(url=redis_url(config))
    return LocalFileLockTable()


def open_backends(config: Config) -> dict[str, Backend]:
    """The configured byte backends (not started): always ``localfs``; ``s3`` when a bucket is configured."""
    backends: dict[str, Backend] = {"localfs": LocalFSBackend(config.localfs_root())}
    if config.backend.s3_bucket_name:
        from callfs.backends.s3 import S3Backend

        backends["s3"] = S3Backend(config.backend)
    return backends


def external_url(config: Config) -> str:
    """The URL clients reach this node at (``server.external_url``, else derived from the listener)."""
    if config.server.external_url:
        return config.server.external_url.rstrip("/")
    host, port = split_host_port(config.server.listen_addr)
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if config.uses_tls else 'http'}://{host}:{port}"


@dataclass
class Node:
    """A running node's components. Build with :meth:`from_config`, then :meth:`start` / :meth:`close`."""

    config: Config
    credentials: NodeSecrets
    store: MetadataStore
    locks: LockService
    backends: dict[str, Backend]
    metrics: Metrics
    engine: Engine
    external_url: str
    membership: Membership
    peers: PeerClient
    access_keys: AccessKeys
    drains: Drains
    converter: Converter
    file_locks: FileLockTable = field(default_factory=LocalFileLockTable)
    started: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Config, *, clock: Clock = time.time) -> Node:
        """Assemble (without connecting) every component the config names; ``clock`` decides link expiry.

        Creates (or tightens) the data directory with mode 0700 first."""
        secure_data_dir(config)
        node_secrets = load_or_generate_secrets(config)
        store, locks, backends, metrics = open_store(config), open_locks(config), open_backends(config), Metrics()
        url = external_url(config)
        discovery = config.instance_discovery
        membership = Membership(
            store=store, instance_id=node_secrets.instance_id, url=url, version=__version__,
            data_root=config.data_dir, static_peers=discovery.peer_endpoints, dns_name=discovery.dns_name,
            node_timeout=discovery.node_timeout,
        )
        peers = PeerClient(
            membership=membership, secret=node_secrets.internal_proxy_secret,
            connect_timeout=discovery.forward_connect_timeout, read_timeout=discovery.forward_read_timeout,
        )
        replication = Replication(
            store=store, metrics=metrics, membership=membership, peers=peers,
            instance_id=node_secrets.instance_id, configured=config.backend.replicas,
        )
        engine = Engine(
            store=store, locks=locks, backends=backends, default_backend=config.backend.default_backend,
            instance_id=node_secrets.instance_id, metrics=metrics, link_secret=node_secrets.link_secret,
            max_file_bytes=config.server.max_body_bytes, remote_free=peers.free_blob,
            remote_read=peers.read_blob,
            remote_read_range=peers.read_file_range, clock=clock, replication=replication,
            whole_files_in_blocks=config.backend.whole_files_in_blocks,
            directory_time_skip=config.server.directory_time_skip,
        )
        access_keys = AccessKeys(store, [*node_secrets.users_by_key, node_secrets.internal_proxy_secret])
        drains = Drains(engine, membership, peers, replication)
        converter = Converter(engine, membership, peers, rate=config.backend.convert_bytes_per_second)
        return cls(config, node_secrets, store, locks, backends, metrics, engine, url, membership, peers, access_keys,
                   drains, converter, open_file_locks(config))

    async def start(self, *, primary: bool = True, fresh: bool = True) -> int:
        """Connect everything and make the system directories root's; returns how many orphans were removed.

        ``primary``: this process runs the node's background jobs (of several workers, one does), so it also
        sweeps orphans and registers the node. ``fresh``: the node is starting, nothing of it is in flight, so
        leftovers of interrupted writes may be removed too; false for a worker restarted beside running ones,
        whose uploads must not lose their temp files (the periodic sweep then removes only old orphans).

        Raises the component's own unavailability error (metadata, locks, backend) with a clear message.
        """
        await self.store.start()
        self.started.append("store")
        await self.engine.ensure_system_directories()
        await self.locks.start()
        self.started.append("locks")
        await self.file_locks.start()
        self.started.append("file_locks")
        self.started.append("backends")
        for name, backend in self.backends.items():
            try:
                await backend.start()
            except BackendUnavailable as exc:
                if backend.node_local:
                    raise
                # A shared backend that is down must not crash-loop the node: serve what can be served,
                # report it on /ready, and retry in the background.
                log.error("backend %s unavailable: %s", name, exc)
                self.engine.unavailable[name] = str(exc)
        if not primary:
            return 0
        swept = await self.engine.sweep_orphans() if fresh else 0
        await self.membership.heartbeat()
        return swept

    async def close(self) -> None:
        """Disconnect whatever :meth:`start` connected (a one-off conversion pass is cancelled first)."""
        await self.converter.stop()
        await self.peers.close()
        if "backends" in self.started:
            for backend in self.backends.values():
                with contextlib.suppress(Exception):
                    await backend.close()
        if "file_locks" in self.started:
            await self.file_locks.close()
        if "locks" in self.started:
            await self.locks.close()
        if "store" in self.started:
            await self.store.close()
        self.started.clear()

    async def retry_backends(self) -> list[str]:
        """Try again to start backends that were unavailable; returns the names that came back."""
        recovered = []
        for name in list(self.engine.unavailable):
            try:
                await self.backends[name].start()
            except BackendUnavailable as exc:
                self.engine.unavailable[name] = str(exc)
                continue
            del self.engine.unavailable[name]
            log.info("backend %s is available again", name)
            recovered.append(name)
        return recovered

    async def ready(self) -> dict[str, bool]:
        """Readiness of each dependency: ``{"metadata": bool, "locks": bool, "backend:<name>": bool}``."""
        checks = {"metadata": self.store.ping(), "locks": self.locks.ping()}
        checks.update({f"backend:{name}": backend.ping() for name, backend in self.backends.items()})
        out = {}
        for name, check in checks.items():
            try:
                out[name] = bool(await asyncio.wait_for(check, READY_TIMEOUT))
            except Exception:
                out[name] = False
        return out
