"""Snapshots as copies: ``/snapshots/<name>`` holds a copy of the source volume's tree.

A snapshot is a copy-on-write copy made by the server when ``CreateSnapshot`` runs
(:func:`callfs_csi.clone.share_tree`): one metadata transaction that shares the volume's blocks and blobs, so it
costs O(files), adds no stored byte, and holds the volume as it was at one instant (a crash-consistent
snapshot; the CO is expected to quiesce the application for more). Against a server without copies it is a
streamed copy, and writes to the volume during that copy may or may not be in it. Layout on the cluster:

* ``/snapshots/<name>``: the copy (no quota: it never grows);
* ``/snapshots/.csi/<name>.json``: its record ``{name, source_volume_id, creation_time, size_bytes, ready,
  group_snapshot_id}``, written before the copy with ``ready: false`` so that a retried ``CreateSnapshot``
  finishes an interrupted one (``group_snapshot_id`` is ``""`` for a snapshot outside a group);
* ``/snapshots/.csi/groups/<name>.json``: the record of volume group snapshot ``<name>``
  ``{name, source_volume_ids, snapshot_ids, creation_time}`` (:class:`GroupRecord`), whose members are ordinary
  snapshots named by :func:`member_name`.

Snapshot IDs follow the volume ID grammar (:func:`callfs_csi.volume.parse_volume_id`): the name, plus
``@<server>`` for a snapshot on a cluster other than the driver's default one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from callfs import errors as fs_errors
from callfs.client import CallFSClient
from callfs_csi import csi_pb2
from callfs_csi.errors import InvalidArgument
from callfs_csi.volume import MAX_NAME_BYTES, VolumeRef, validate_name

_R = TypeVar("_R")

__all__ = [
    "SNAPSHOTS_ROOT",
    "GroupRecord",
    "SnapshotRecord",
    "delete_group_record",
    "delete_record",
    "list_records",
    "member_name",
    "now",
    "read_group_record",
    "read_record",
    "snapshot_path",
    "validate_group_name",
    "write_group_record",
    "write_record",
]

SNAPSHOTS_ROOT: Final = "/snapshots"
RECORDS_DIR: Final = "/snapshots/.csi"
GROUP_RECORDS_DIR: Final = "/snapshots/.csi/groups"
_MEMBER_SUFFIX_CHARS: Final = 12
"""Hex digits of the source volume ID's SHA-256 that a member snapshot's name ends with."""


def snapshot_path(ref: VolumeRef) -> str:
    """The directory holding snapshot ``ref``'s copy."""
    return f"{SNAPSHOTS_ROOT}/{ref.name}"


def record_path(name: str) -> str:
    return f"{RECORDS_DIR}/{name}.json"


@dataclass(slots=True)
class SnapshotRecord:
    """What is known of one snapshot; ``size_bytes`` is the bytes copied, ``ready`` False while copying."""

    name: str
    source_volume_id: str
    creation_time: datetime
    size_bytes: int = 0
    ready: bool = False
    group_snapshot_id: str = ""
    """The ID of the volume group snapshot this snapshot belongs to; ``""``: none (spec, ``Snapshot``)."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source_volume_id": self.source_volume_id,
                "creation_time": self.creation_time.isoformat(), "size_bytes": self.size_bytes, "ready": self.ready,
                "group_snapshot_id": self.group_snapshot_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotRecord:
        """Raises ``KeyError``/``ValueError``/``TypeError`` on a malformed record."""
        return cls(str(data["name"]), str(data["source_volume_id"]), _time(data["creation_time"]),
                   int(data.get("size_bytes", 0)), bool(data.get("ready", False)),
                   str(data.get("group_snapshot_id", "")))

    def to_proto(self, snapshot_id: str) -> csi_pb2.Snapshot:
        return csi_pb2.Snapshot(snapshot_id=snapshot_id, source_volume_id=self.source_volume_id,
                                size_bytes=self.size_bytes, creation_time=_timestamp(self.creation_time),
                                ready_to_use=self.ready, group_snapshot_id=self.group_snapshot_id)


@dataclass(slots=True)
class GroupRecord:
    """What is known of one volume group snapshot: the source volume IDs in the order first asked for, and the
    IDs of its member snapshots in the same order (``snapshot_ids[i]`` is the snapshot of
    ``source_volume_ids[i]``)."""

    name: str
    source_volume_ids: list[str]
    snapshot_ids: list[str]
    creation_time: datetime

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source_volume_ids": list(self.source_volume_ids),
                "snapshot_ids": list(self.snapshot_ids), "creation_time": self.creation_time.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupRecord:
        """Raises ``KeyError``/``ValueError``/``TypeError`` on a malformed record."""
        sources, members = data["source_volume_ids"], data["snapshot_ids"]
        if not isinstance(sources, list) or not isinstance(members, list) or len(sources) != len(members):
            raise ValueError("source_volume_ids and snapshot_ids must be lists of one length")
        return cls(str(data["name"]), [str(s) for s in sources], [str(m) for m in members],
                   _time(data["creation_time"]))

    def same_sources(self, source_volume_ids: list[str]) -> bool:
        """True when a request for ``source_volume_ids`` asks for this group (the order does not matter)."""
        return sorted(self.source_volume_ids) == sorted(source_volume_ids)

    def same_members(self, snapshot_ids: list[str]) -> bool:
        """True when ``snapshot_ids`` are exactly this group's members (in any order)."""
        return sorted(self.snapshot_ids) == sorted(snapshot_ids)

    def to_proto(self, group_snapshot_id: str, members: list[csi_pb2.Snapshot]) -> csi_pb2.VolumeGroupSnapshot:
        """The group as CSI reports it: ready when every member is (spec, ``VolumeGroupSnapshot``)."""
        return csi_pb2.VolumeGroupSnapshot(
            group_snapshot_id=group_snapshot_id, snapshots=members, creation_time=_timestamp(self.creation_time),
            ready_to_use=bool(members) and all(m.ready_to_use for m in members),
        )


def validate_group_name(name: str) -> str:
    """Return ``name`` when it can name a group snapshot: a valid snapshot name short enough that its members'
    names (:func:`member_name`) are valid too.

    Raises:
        InvalidArgument: empty (spec, ``CreateVolumeGroupSnapshot``: ``name`` is REQUIRED), too long, or a
            character a snapshot name cannot hold.
    """
    validate_name(name)
    limit = MAX_NAME_BYTES - 1 - _MEMBER_SUFFIX_CHARS
    if len(name.encode()) > limit:
        raise InvalidArgument(f"name is longer than {limit} bytes (a group snapshot's members extend it)")
    return name


def member_name(group_name: str, source_volume_id: str) -> str:
    """The name of the snapshot of ``source_volume_id`` in group ``group_name``: ``<group>-<12 hex digits>`` of
    the source ID's SHA-256, so a retried ``CreateVolumeGroupSnapshot`` finds the member it started.

    >>> member_name("group-1", "pvc-a")
    'group-1-38f2b742b935'
    """
    digest = hashlib.sha256(source_volume_id.encode()).hexdigest()[:_MEMBER_SUFFIX_CHARS]
    return f"{group_name}-{digest}"


def _time(raw: object) -> datetime:
    created = datetime.fromisoformat(str(raw))
    return created.replace(tzinfo=UTC) if created.tzinfo is None else created


def _timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


async def _read_json(fs: CallFSClient, path: str, parse: Callable[[Any], _R]) -> _R | None:
    """``parse`` of the JSON file at ``path``; ``None`` when there is none (or it is unreadable)."""
    try:
        return parse(json.loads(await fs.read(path)))
    except fs_errors.NotFound:
        return None
    except (ValueError, KeyError, TypeError):
        return None


async def _write_json(fs: CallFSClient, path: str, data: Any) -> None:
    await fs.upload(path, json.dumps(data).encode())


async def _delete_file(fs: CallFSClient, path: str) -> None:
    with contextlib.suppress(fs_errors.NotFound):
        await fs.delete(path)


async def read_record(fs: CallFSClient, name: str) -> SnapshotRecord | None:
    """The record of snapshot ``name``; ``None`` when there is none (or it is unreadable)."""
    return await _read_json(fs, record_path(name), SnapshotRecord.from_json)


async def write_record(fs: CallFSClient, record: SnapshotRecord) -> None:
    await _write_json(fs, record_path(record.name), record.to_json())


async def delete_record(fs: CallFSClient, name: str) -> None:
    await _delete_file(fs, record_path(name))


async def list_records(fs: CallFSClient) -> list[SnapshotRecord]:
    """Every readable snapshot record on the cluster, sorted by name."""
    try:
        items = await fs.list_dir(RECORDS_DIR)
    except fs_errors.NotFound:
        return []
    records = []
    for item in items:
        if item.is_file and item.name.endswith(".json"):
            record = await read_record(fs, item.name[: -len(".json")])
            if record is not None:
                records.append(record)
    return sorted(records, key=lambda r: r.name)


def group_record_path(name: str) -> str:
    return f"{GROUP_RECORDS_DIR}/{name}.json"


async def read_group_record(fs: CallFSClient, name: str) -> GroupRecord | None:
    """The record of group snapshot ``name``; ``None`` when there is none (or it is unreadable)."""
    return await _read_json(fs, group_record_path(name), GroupRecord.from_json)


async def write_group_record(fs: CallFSClient, record: GroupRecord) -> None:
    await _write_json(fs, group_record_path(record.name), record.to_json())


async def delete_group_record(fs: CallFSClient, name: str) -> None:
    await _delete_file(fs, group_record_path(name))


def now() -> datetime:
    """The current time, UTC (second resolution, as the records store it)."""
    return datetime.now(UTC).replace(microsecond=0)
