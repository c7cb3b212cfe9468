"""Persisted node state: which volumes are staged where, where they are published, and how to re-mount them.

The node plugin may be killed at any time while its FUSE mounts live on (they are separate processes). What it
needs to answer later calls and to repair a mount whose daemon died is kept in ``<state dir>/node-state.json``:

.. code-block:: json

    {"version": 1,
     "volumes": {"<volume id>": {
        "server": "http://...", "volume_path": "/volumes/pvc-1", "staging_path": "/var/lib/kubelet/...",
        "read_only": false, "key_file": "<state dir>/keys/<hash>.key",
        "targets": {"<target path>": {"read_only": false, "mount_flags": ["noatime"], "access_mode": 1}}}}}

API keys are not in this file but in one key file per staged volume under ``<state dir>/keys`` (mode 0600),
which ``callfs-mount --key-file`` reads; the state file itself is written with mode 0600 too, atomically
(temporary file, fsync, rename, fsync of the directory) so that a crash leaves either the old or the new state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["STATE_FILE", "NodeState", "PublishedTarget", "StagedVolume", "StateStore"]

STATE_FILE: Final = "node-state.json"
STATE_VERSION: Final = 1


@dataclass(slots=True)
class PublishedTarget:
    """One bind mount of a staged volume: read-only or not, the mount flags and the access mode (the CSI enum
    value) it was published with."""

    read_only: bool = False
    mount_flags: list[str] = field(default_factory=list)
    access_mode: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublishedTarget:
        return cls(bool(data.get("read_only", False)), [str(f) for f in data.get("mount_flags", [])],
                   int(data.get("access_mode", 0)))


@dataclass(slots=True)
class StagedVolume:
    """A volume mounted through FUSE at ``staging_path``; ``targets`` maps each published target path."""

    server: str
    volume_path: str
    staging_path: str
    key_file: str
    read_only: bool = False
    targets: dict[str, PublishedTarget] = field(default_factory=dict)
    gid: int | None = None
    """Group every inode appears to have (the pod's fsGroup, CSI ``volume_mount_group``); ``None``: the plugin's."""
    ca_file: str | None = None
    """PEM certificates the mount trusts for ``server`` (``None``: the system's)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StagedVolume:
        """Raises ``KeyError``/``TypeError`` on a malformed entry."""
        targets = {str(path): PublishedTarget.from_json(t) for path, t in dict(data.get("targets", {})).items()}
        return cls(server=str(data["server"]), volume_path=str(data["volume_path"]),
                   staging_path=str(data["staging_path"]), key_file=str(data["key_file"]),
                   read_only=bool(data.get("read_only", False)), targets=targets,
                   gid=None if data.get("gid") is None else int(data["gid"]),
                   ca_file=None if data.get("ca_file") is None else str(data["ca_file"]))


@dataclass(slots=True)
class NodeState:
    """All staged volumes by volume ID."""

    volumes: dict[str, StagedVolume] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "volumes": {vid: v.to_json() for vid, v in sorted(self.volumes.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeState:
        """Raises ``ValueError`` for another version or a malformed document."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported node state version {data.get('version')!r}")
        try:
            return cls({str(vid): StagedVolume.from_json(v) for vid, v in dict(data["volumes"]).items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed node state: {exc!r}") from exc

    def find_target(self, target_path: str) -> tuple[str, StagedVolume] | None:
        """The ``(volume id, volume)`` published at ``target_path``, if any."""
        for vid, volume in self.volumes.items():
            if target_path in volume.targets:
                return vid, volume
        return None

    def iter_targets(self) -> Iterator[tuple[str, str, PublishedTarget]]:
        """Every ``(volume id, target path, target)``."""
        for vid, volume in self.volumes.items():
            for path, target in volume.targets.items():
                yield vid, path, target


class StateStore:
    """Load and save :class:`NodeState` and the per-volume key files under ``state_dir`` (created 0700)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE
        self.keys_dir = self.dir / "keys"

    def ensure_dirs(self) -> None:
        """Create the state and key directories (mode 0700)."""
        for directory in (self.dir, self.keys_dir, self.dir / "pids"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)

    def load(self) -> NodeState:
        """The saved state; an empty one when there is no file yet.

        Raises:
            ValueError: the file exists but cannot be read as a state (the plugin refuses to start rather than
                forget mounts it no longer knows about).
        """
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return NodeState()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}: not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: not a JSON object")
        return NodeState.from_json(data)

    def save(self, state: NodeState) -> None:
        """Write ``state`` atomically with mode 0600 (temp file + fsync + rename + directory fsync)."""
        self.ensure_dirs()
        _atomic_write(self.path, (json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n").encode())

    def key_file_for(self, volume_id: str) -> Path:
        """Where the API key of ``volume_id`` is kept (the file name is a hash: IDs may hold any character)."""
        digest = hashlib.sha256(volume_id.encode()).hexdigest()[:32]
        return self.keys_dir / f"{digest}.key"

    def write_key(self, volume_id: str, api_key: str) -> Path:
        """Store ``api_key`` for ``volume_id`` (mode 0600, atomically); returns the file."""
        self.ensure_dirs()
        path = self.key_file_for(volume_id)
        _atomic_write(path, api_key.encode())
        return path

    def write_ca(self, volume_id: str, ca_bundle: str) -> Path:
        """Store the PEM certificates ``volume_id``'s mount trusts (beside its key); returns the file."""
        self.ensure_dirs()
        path = self.key_file_for(volume_id).with_suffix(".ca.pem")
        _atomic_write(path, ca_bundle.encode())
        return path

    def pid_file_for(self, volume_id: str) -> Path:
        """Where the FUSE daemon of ``volume_id`` writes its process ID (``callfs-mount --pid-file``)."""
        return self.keys_dir.parent / "pids" / (self.key_file_for(volume_id).stem + ".pid")

    def remove_key(self, volume_id: str) -> None:
        """Forget the key (and CA and daemon pid file) of ``volume_id`` (no error when there is none)."""
        key_file = self.key_file_for(volume_id)
        for path in (key_file, key_file.with_suffix(".ca.pem"), self.pid_file_for(volume_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
