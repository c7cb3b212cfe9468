"""Volume capability checks (callfs_csi.capabilities)."""

from __future__ import annotations

import pytest

from callfs_csi import csi_pb2
from callfs_csi.capabilities import (
    SUPPORTED_MODES,
    check_capabilities,
    check_well_formed,
    is_read_only_mode,
    unsupported_reason,
)
from callfs_csi.errors import InvalidArgument

Mode = csi_pb2.VolumeCapability.AccessMode
ALL_MODES = [m for m in Mode.Mode.values() if m != Mode.UNKNOWN]


def mount_cap(mode: int, fs_type: str = "", flags: tuple[str, ...] = ()) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs_type, mount_flags=list(flags)),
        access_mode=Mode(mode=mode),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("mode", ALL_MODES)
def test_every_access_mode_of_a_mount_volume_is_supported(mode: int) -> None:
    assert mode in SUPPORTED_MODES
    assert unsupported_reason(mount_cap(mode)) is None
    check_capabilities([mount_cap(mode)])


def test_block_access_is_unsupported() -> None:
    cap = csi_pb2.VolumeCapability(block=csi_pb2.VolumeCapability.BlockVolume(),
                                   access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))
    assert "block" in (unsupported_reason(cap) or "")
    with pytest.raises(InvalidArgument):
        check_capabilities([cap])


@pytest.mark.parametrize("fs_type", ["", "callfs", "fuse.callfs"])
def test_own_fs_types_are_accepted(fs_type: str) -> None:
    assert unsupported_reason(mount_cap(Mode.SINGLE_NODE_WRITER, fs_type)) is None


def test_other_fs_types_are_unsupported() -> None:
    assert "ext4" in (unsupported_reason(mount_cap(Mode.SINGLE_NODE_WRITER, "ext4")) or "")


def test_missing_access_type_or_mode_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="access_type"):
        check_well_formed(csi_pb2.VolumeCapability(access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER)))
    with pytest.raises(InvalidArgument, match="access_mode is required"):
        check_well_formed(csi_pb2.VolumeCapability(mount=csi_pb2.VolumeCapability.MountVolume()))
    with pytest.raises(InvalidArgument, match="UNKNOWN"):
        check_well_formed(mount_cap(Mode.UNKNOWN))


def test_no_capabilities_is_invalid_when_required() -> None:
    with pytest.raises(InvalidArgument):
        check_capabilities([])
    check_capabilities([], required=False)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_only_reader_modes_are_read_only(mode: int) -> None:
    expected = mode in (Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY)
    assert is_read_only_mode(mount_cap(mode)) is expected
