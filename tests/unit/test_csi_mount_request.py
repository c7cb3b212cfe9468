"""What a mount-service client sends and what the service accepts (callfs_csi.mount_main, callfs_csi.mount_service).

The service itself, its socket and real mounts: tests/integration/test_csi_mount_service.py.
"""

from __future__ import annotations

import json

import pytest

from callfs_csi.mount_main import without_via_service
from callfs_csi.mount_service import (
    MountReply,
    MountServiceError,
    RequestRefused,
    check_arguments,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)

PLUGIN_ARGV = ["http://callfs:8443", "/volumes/pvc-1", "/var/lib/kubelet/staging", "--key-file", "/state/keys/a.key",
               "--fs-name", "callfs:/volumes/pvc-1", "--read-only", "--gid", "2000", "--log-file", "/state/mount.log",
               "--pid-file", "/state/pids/a.pid"]
"""Arguments as callfs_csi.mounter.Mounter.mount_fuse passes them."""


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (["--via-service", "/s.sock", "a", "b", "c"], ["a", "b", "c"]),
        (["a", "--via-service=/s.sock", "b", "c"], ["a", "b", "c"]),
        (["a", "b", "c", "--key-file", "k", "--via-service", "/s.sock"], ["a", "b", "c", "--key-file", "k"]),
    ],
)
def test_the_service_is_sent_everything_but_via_service(argv: list[str], sent: list[str]) -> None:
    assert without_via_service(argv) == sent


def test_the_plugin_arguments_are_accepted() -> None:
    args = check_arguments(PLUGIN_ARGV)
    assert (args.mountpoint, args.gid, args.read_only) == ("/var/lib/kubelet/staging", 2000, True)
    assert decode_request(encode_request(PLUGIN_ARGV)) == PLUGIN_ARGV


@pytest.mark.parametrize(
    "extra",
    [["--foreground"], ["-f"], ["--via-service", "/s.sock"], ["--help"], ["-h"], ["--fore"], ["--gid", "staff"],
     ["--log-level", "TRACE"], ["--exec", "sh"], ["extra-positional"]],
)
def test_anything_else_is_refused(extra: list[str]) -> None:
    with pytest.raises(RequestRefused):
        check_arguments([*PLUGIN_ARGV, *extra])


@pytest.mark.parametrize("argv", [[], ["sh", "-c", "id"], ["/bin/sh"]])
def test_commands_are_refused(argv: list[str]) -> None:
    with pytest.raises(RequestRefused, match="not callfs-mount arguments"):
        check_arguments(argv)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"[]", b'{"argv": "x"}', b'{"argv": [1]}', b'{"argv": [], "env": {}}', b'{"cmd": ["x"]}'],
)
def test_malformed_requests_are_refused(data: bytes) -> None:
    with pytest.raises(RequestRefused):
        decode_request(data)


def test_replies_round_trip() -> None:
    reply = MountReply(1, "callfs-mount: no such volume\n")
    assert decode_reply(encode_reply(reply)) == reply


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", json.dumps({"exit_code": "0", "stderr": ""}).encode(),
     json.dumps({"exit_code": True, "stderr": ""}).encode(), json.dumps({"exit_code": 300, "stderr": ""}).encode(),
     json.dumps({"exit_code": 0}).encode()],
)
def test_anything_but_a_reply_is_a_service_error(data: bytes) -> None:
    with pytest.raises(MountServiceError):
        decode_reply(data)
