"""Volume capabilities: which access types and modes a CallFS volume supports, checked as pure functions.

A CallFS volume is a shared POSIX filesystem, so every access mode of the CSI spec is supported (RWO, ROX, RWX,
RWOP and the single-node multi-writer modes); only the ``mount`` access type is (no raw block device), with an
empty ``fs_type`` or one naming this filesystem (``callfs``, ``fuse.callfs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from callfs_csi import csi_pb2
from callfs_csi.errors import InvalidArgument

__all__ = [
    "FS_TYPES",
    "SUPPORTED_MODES",
    "check_capabilities",
    "check_well_formed",
    "is_read_only_mode",
    "unsupported_reason",
]

_Mode = csi_pb2.VolumeCapability.AccessMode

SUPPORTED_MODES: Final = frozenset({
    _Mode.SINGLE_NODE_WRITER,
    _Mode.SINGLE_NODE_READER_ONLY,
    _Mode.MULTI_NODE_READER_ONLY,
    _Mode.MULTI_NODE_SINGLE_WRITER,
    _Mode.MULTI_NODE_MULTI_WRITER,
    _Mode.SINGLE_NODE_SINGLE_WRITER,
    _Mode.SINGLE_NODE_MULTI_WRITER,
})
READ_ONLY_MODES: Final = frozenset({_Mode.SINGLE_NODE_READER_ONLY, _Mode.MULTI_NODE_READER_ONLY})
FS_TYPES: Final = frozenset({"", "callfs", "fuse.callfs"})
"""``fs_type`` values accepted in a mount capability (empty: the CO leaves it to the plugin)."""


def check_well_formed(capability: csi_pb2.VolumeCapability, what: str = "volume_capability") -> None:
    """Raise unless ``capability`` names an access type and an access mode.

    Raises:
        InvalidArgument: no ``block``/``mount`` access type, no access mode, or mode ``UNKNOWN`` (spec,
            ``VolumeCapability``: both are required).
    """
    if capability.WhichOneof("access_type") is None:
        raise InvalidArgument(f"{what}: access_type (mount or block) is required")
    if not capability.HasField("access_mode"):
        raise InvalidArgument(f"{what}: access_mode is required")
    if capability.access_mode.mode == _Mode.UNKNOWN:
        raise InvalidArgument(f"{what}: access_mode.mode is UNKNOWN")


def unsupported_reason(capability: csi_pb2.VolumeCapability) -> str | None:
    """Why this driver cannot serve ``capability`` (a well-formed one), or ``None`` when it can."""
    if capability.WhichOneof("access_type") == "block":
        return "block access is not supported: CallFS volumes are filesystems (use access type mount)"
    fs_type = capability.mount.fs_type
    if fs_type not in FS_TYPES:
        return f"fs_type {fs_type!r} is not supported (use '' or 'callfs')"
    if capability.access_mode.mode not in SUPPORTED_MODES:
        return f"access mode {capability.access_mode.mode} is not supported"
    return None


def check_capabilities(capabilities: Sequence[csi_pb2.VolumeCapability], *, required: bool = True) -> None:
    """Validate the capabilities of a ``CreateVolume`` (``required``) or stage/publish request.

    Raises:
        InvalidArgument: none given while ``required``, a malformed one, or one this driver does not support.
    """
    if required and not capabilities:
        raise InvalidArgument("volume_capabilities are required")
    for index, capability in enumerate(capabilities):
        check_well_formed(capability, f"volume_capabilities[{index}]")
        reason = unsupported_reason(capability)
        if reason is not None:
            raise InvalidArgument(f"volume_capabilities[{index}]: {reason}")


def is_read_only_mode(capability: csi_pb2.VolumeCapability) -> bool:
    """True for the reader-only access modes: a publish with them is mounted read-only whatever ``readonly``
    says."""
    return capability.access_mode.mode in READ_ONLY_MODES
