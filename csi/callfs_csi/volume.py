"""Volumes as the controller names and sizes them: IDs, paths on the cluster, capacity math, list tokens.

Pure functions only (no I/O), shared by the controller and node services.

Layout on a CallFS cluster (docs/architecture.md, "CSI"):

* ``/volumes/<name>``        the volume: a directory with a quota of ``capacity`` bytes;
* ``/volumes/.csi/<name>.json`` its record (``on_delete`` policy and the capacity asked for), written before the
  directory so that a retried ``CreateVolume`` finds it;
* ``/archive/<name>-<UTC timestamp>`` where ``onDelete: archive`` moves a deleted volume.

Volume IDs: the CSI ``name`` itself for a volume on the driver's default cluster, ``<name>@<server URL>`` for a
volume on another cluster (named by the StorageClass ``server``/``cluster`` parameter), so that ``DeleteVolume``,
``ControllerExpandVolume`` and ``ValidateVolumeCapabilities`` — which get no parameters — still find it. Names
that could not round-trip (``/``, ``@``, a leading ``.``, control characters) are refused.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from callfs_csi.errors import Aborted, InvalidArgument, OutOfRange

__all__ = [
    "ARCHIVE_ROOT",
    "DEFAULT_CAPACITY",
    "MAX_NAME_BYTES",
    "RECORDS_DIR",
    "VOLUMES_ROOT",
    "VolumeRef",
    "archive_path",
    "capacity_fits",
    "decode_list_token",
    "encode_list_token",
    "parse_volume_id",
    "requested_capacity",
    "validate_name",
]

VOLUMES_ROOT: Final = "/volumes"
RECORDS_DIR: Final = "/volumes/.csi"
ARCHIVE_ROOT: Final = "/archive"
DEFAULT_CAPACITY: Final = 1 << 30
"""Bytes given to a volume whose request names no capacity (1 GiB)."""
MAX_NAME_BYTES: Final = 200
"""Longest volume name accepted (bytes of UTF-8); Kubernetes names its volumes ``pvc-<uuid>`` (40 bytes)."""
_TOKEN_PREFIX: Final = "after:"  # noqa: S105 - a pagination token, not a password


def validate_name(name: str, what: str = "name") -> str:
    """Return ``name`` when it can be a volume name: one path segment that round-trips through a volume ID.

    Raises:
        InvalidArgument: empty, longer than :data:`MAX_NAME_BYTES`, starting with ``.``, or containing ``/``,
            ``@``, ``\\``, ``?``, ``#`` or a control character (CSI spec: "CreateVolume", ``name`` is required).
    """
    if not name:
        raise InvalidArgument(f"{what} is required")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(f"{what} is longer than {MAX_NAME_BYTES} bytes")
    if name.startswith("."):
        raise InvalidArgument(f"{what} {name!r} must not start with '.'")
    bad = [c for c in name if c in "/@\\?#" or ord(c) < 0x20 or ord(c) == 0x7F]
    if bad:
        raise InvalidArgument(f"{what} {name!r} contains {bad[0]!r}")
    return name


@dataclass(frozen=True, slots=True)
class VolumeRef:
    """Where a volume lives: its ``name`` and ``server`` (``None``: the driver's default cluster)."""

    name: str
    server: str | None = None

    @property
    def volume_id(self) -> str:
        """``name`` or ``name@server``: the stable ID handed to the CO."""
        return self.name if self.server is None else f"{self.name}@{self.server}"

    @property
    def path(self) -> str:
        """The volume directory on the cluster, ``/volumes/<name>``."""
        return f"{VOLUMES_ROOT}/{self.name}"

    @property
    def record_path(self) -> str:
        """The volume's record file, ``/volumes/.csi/<name>.json``."""
        return f"{RECORDS_DIR}/{self.name}.json"

    @classmethod
    def on(cls, name: str, server: str | None, default_server: str | None) -> VolumeRef:
        """The ref of ``name`` on ``server``; the server is dropped from the ID when it is the default one."""
        if server is not None and default_server is not None and server.rstrip("/") == default_server.rstrip("/"):
            server = None
        return cls(name, server.rstrip("/") if server else None)


def parse_volume_id(volume_id: str) -> VolumeRef | None:
    """The :class:`VolumeRef` of a volume ID, or ``None`` when no volume could have that ID.

    ``None`` lets each RPC answer as the spec says for an unknown volume (``DeleteVolume`` succeeds, the others
    answer ``NOT_FOUND``) instead of treating a foreign ID as malformed input.

    >>> parse_volume_id("pvc-1")
    VolumeRef(name='pvc-1', server=None)
    >>> parse_volume_id("pvc-1@http://callfs.ns.svc:8443")
    VolumeRef(name='pvc-1', server='http://callfs.ns.svc:8443')
    """
    name, sep, server = volume_id.partition("@")
    try:
        validate_name(name)
    except InvalidArgument:
        return None
    if sep and not server.startswith(("http://", "https://")):
        return None
    return VolumeRef(name, server or None)


def requested_capacity(required_bytes: int, limit_bytes: int, default: int = DEFAULT_CAPACITY) -> int:
    """The capacity (bytes) to give a new volume for a CSI ``CapacityRange``.

    ``required_bytes`` when set; else ``min(default, limit_bytes)`` so that an upper bound alone is honoured;
    else ``default``. Zero means "unset" (spec, ``CapacityRange``).

    Raises:
        InvalidArgument: a negative value (spec: values are non-negative).
        OutOfRange: ``limit_bytes`` below ``required_bytes`` (no capacity satisfies both).
    """
    if required_bytes < 0 or limit_bytes < 0:
        raise InvalidArgument("capacity_range values must not be negative")
    if limit_bytes and required_bytes > limit_bytes:
        raise OutOfRange(f"required_bytes {required_bytes} exceeds limit_bytes {limit_bytes}")
    if required_bytes:
        return required_bytes
    if limit_bytes:
        return min(default, limit_bytes)
    return default


def capacity_fits(capacity: int, required_bytes: int, limit_bytes: int) -> bool:
    """True when an existing volume of ``capacity`` bytes satisfies a request's ``CapacityRange``."""
    return capacity >= required_bytes and (not limit_bytes or capacity <= limit_bytes)


def encode_list_token(last_name: str) -> str:
    """The ``ListVolumes`` ``next_token`` that resumes after volume ``last_name`` (names are listed sorted).

    Resuming *after a name* (not at an index) keeps pages right when volumes are added or deleted between
    calls, including the last volume of the previous page.
    """
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(last_name.encode()).decode().rstrip("=")


def decode_list_token(token: str) -> str:
    """The name a ``starting_token`` resumes after.

    Raises:
        Aborted: not a token this driver issued (spec, ``ListVolumes``: "Invalid starting_token" → ``ABORTED``).
    """
    if not token.startswith(_TOKEN_PREFIX):
        raise Aborted(f"invalid starting_token {token!r}")
    raw = token[len(_TOKEN_PREFIX):]
    try:
        name = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Aborted(f"invalid starting_token {token!r}") from exc
    if encode_list_token(name) != token:  # only the exact form this driver issues
        raise Aborted(f"invalid starting_token {token!r}")
    return name


def archive_path(name: str, now: datetime) -> str:
    """Where ``onDelete: archive`` moves volume ``name``: ``/archive/<name>-<YYYYmmddTHHMMSSZ>`` (UTC)."""
    return f"{ARCHIVE_ROOT}/{name}-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
