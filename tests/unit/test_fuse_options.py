"""Mount settings from the command line (csi/callfs_csi/fuse/options.py)."""

from __future__ import annotations

import os

import pytest

from callfs.errors import BadRequest
from callfs_csi.fuse.options import OptionError, build_settings, split_option


def settings(*options: str, **kwargs: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"server_url": "http://127.0.0.1:1", "volume_path": "/volumes/v", "mountpoint": "/m"}
    args.update(kwargs)
    return build_settings(options=options, **args)  # type: ignore[arg-type]


def test_defaults() -> None:
    s = settings()
    assert (s.uid, s.gid) == (os.getuid(), os.getgid())
    assert (s.attr_timeout, s.negative_timeout, s.request_deadline, s.read_ahead) == (1.0, 1.0, 30.0, 8)
    assert (s.kernel_read_ahead, s.writeback_cache) == (1024, False)
    assert s.fsname == "callfs:/volumes/v"
    assert not s.read_only and not s.quiet and s.xattr and dict(s.fuse_options) == {}


def test_volume_path_is_canonicalised() -> None:
    assert settings(volume_path="volumes/a/../b/").volume_path == "/volumes/b"


def test_tuning_keys_are_consumed_and_others_go_to_fuse() -> None:
    s = settings("attr_timeout=0.5", "negative_timeout=0", "request_deadline=5", "read_ahead=8",
                 "spool_dir=/var/tmp", "quiet", "max_read=1048576", "noatime", "kernel_read_ahead=0",
                 "writeback_cache=true", "xattr=false")
    assert not s.xattr
    assert (s.attr_timeout, s.negative_timeout, s.request_deadline, s.read_ahead) == (0.5, 0.0, 5.0, 8)
    assert (s.kernel_read_ahead, s.writeback_cache) == (0, True)
    assert s.spool_dir == "/var/tmp" and s.quiet
    assert dict(s.fuse_options) == {"max_read": "1048576", "noatime": None}


def test_ro_option_makes_the_mount_read_only() -> None:
    assert settings("ro").read_only
    assert settings(read_only=True).read_only


@pytest.mark.parametrize("option", ["attr_timeout=-1", "attr_timeout=nan", "attr_timeout=x",
                                    "request_deadline=0", "read_ahead=65", "read_ahead=-1", "spool_dir=",
                                    "quiet=maybe", "writeback_cache=2", "xattr=no",
                                    "kernel_read_ahead=x", "kernel_read_ahead=16385", "fsname=other",
                                    "subtype=x", "=v", "a=b,c"])
def test_bad_options_are_refused(option: str) -> None:
    with pytest.raises(OptionError):
        settings(option)


def test_url_must_be_http() -> None:
    with pytest.raises(OptionError):
        settings(server_url="ftp://x")


def test_negative_ids_are_refused() -> None:
    with pytest.raises(OptionError):
        settings(uid=-1)


def test_volume_path_with_forbidden_characters_is_refused() -> None:
    with pytest.raises(BadRequest):
        settings(volume_path="/volumes/\x01")


def test_split_option() -> None:
    assert split_option("a=b=c") == ("a", "b=c")
    assert split_option("flag") == ("flag", None)
    assert split_option("k=") == ("k", "")
