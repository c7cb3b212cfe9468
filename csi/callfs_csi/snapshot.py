"""Snapshots as full copies: ``/snapshots/<name>`` holds a copy of the source volume's tree.

CallFS has no copy-on-write, so a snapshot is a streamed copy (:func:`callfs_csi.clone.copy_tree`) taken when
``CreateSnapshot`` runs; writes to the volume during the copy may or may not be in it (the CO is expected to
quiesce the application, as for any crash-consistent snapshot). Layout on the cluster:

* ``/snapshots/<name>``: the copy (no quota: it never grows);
* ``/snapshots/.csi/<name>.json``: its record ``{name, source_volume_id, creation_time, size_bytes, ready}``,
  written before the copy with ``ready: false`` so that a retried ``CreateSnapshot`` finishes an interrupted one.

Snapshot IDs follow the volume ID grammar (:func:`callfs_csi.volume.parse_volume_id`): the name, plus
``@<server>`` for a snapshot on a cluster other than the driver's default one.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from google.protobuf.timestamp_pb2 import Timestamp

from callfs import errors as fs_errors
from callfs.client import CallFSClient
from callfs_csi import csi_pb2
from callfs_csi.volume import VolumeRef

__all__ = [
    "SNAPSHOTS_ROOT",
    "SnapshotRecord",
    "delete_record",
    "list_records",
    "now",
    "read_record",
    "snapshot_path",
    "write_record",
]

SNAPSHOTS_ROOT: Final = "/snapshots"
RECORDS_DIR: Final = "/snapshots/.csi"


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

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source_volume_id": self.source_volume_id,
                "creation_time": self.creation_time.isoformat(), "size_bytes": self.size_bytes, "ready": self.ready}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotRecord:
        """Raises ``KeyError``/``ValueError``/``TypeError`` on a malformed record."""
        created = datetime.fromisoformat(str(data["creation_time"]))
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return cls(str(data["name"]), str(data["source_volume_id"]), created, int(data.get("size_bytes", 0)),
                   bool(data.get("ready", False)))

    def to_proto(self, snapshot_id: str) -> csi_pb2.Snapshot:
        created = Timestamp()
        created.FromDatetime(self.creation_time)
        return csi_pb2.Snapshot(snapshot_id=snapshot_id, source_volume_id=self.source_volume_id,
                                size_bytes=self.size_bytes, creation_time=created, ready_to_use=self.ready)


async def read_record(fs: CallFSClient, name: str) -> SnapshotRecord | None:
    """The record of snapshot ``name``; ``None`` when there is none (or it is unreadable)."""
    try:
        data = json.loads(await fs.read(record_path(name)))
        return SnapshotRecord.from_json(data)
    except fs_errors.NotFound:
        return None
    except (ValueError, KeyError, TypeError):
        return None


async def write_record(fs: CallFSClient, record: SnapshotRecord) -> None:
    await fs.upload(record_path(record.name), json.dumps(record.to_json()).encode())


async def delete_record(fs: CallFSClient, name: str) -> None:
    with contextlib.suppress(fs_errors.NotFound):
        await fs.delete(record_path(name))


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


def now() -> datetime:
    """The current time, UTC (second resolution, as the records store it)."""
    return datetime.now(UTC).replace(microsecond=0)
