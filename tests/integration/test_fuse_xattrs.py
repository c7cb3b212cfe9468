"""Extended attributes through ``callfs-mount`` (``getxattr(2)`` and friends), on SQLite and on PostgreSQL + Redis:
``user.*`` attributes kept on the server and shared with the REST API, hard links and renames, the errno values
Linux gives, the namespaces the mount answers itself, and the ``attr`` tools and ``cp`` on top."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from callfs.client import CallFSClient
from support.app_node import AppNode
from support.machine import require_fuse
from support.mount import MountedVolume

MountFactory = Callable[..., MountedVolume]

NOBODY = 65534


@pytest.fixture(autouse=True)
def _fuse() -> None:
    require_fuse()
    if os.geteuid() != 0:
        pytest.skip("a mount as another user needs root")


def _server(node: AppNode, call: Callable[[CallFSClient], object]) -> object:
    async def run() -> object:
        async with CallFSClient(node.url, node.key_for("root")) as client:
            return await call(client)  # type: ignore[misc]

    return asyncio.run(run())


def _errno(call: Callable[[], object]) -> int:
    try:
        call()
    except OSError as exc:
        return exc.errno or 0
    return 0


def test_user_attributes_round_trip_and_are_the_servers(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    f = mount.path / "f.txt"
    f.write_bytes(b"content")
    os.setxattr(f, "user.mime_type", b"text/plain")
    os.setxattr(f, "user.bin", bytes(range(256)))
    os.setxattr(f, "user.empty", b"")
    assert os.getxattr(f, "user.mime_type") == b"text/plain"
    assert os.getxattr(f, "user.bin") == bytes(range(256))
    assert os.getxattr(f, "user.empty") == b""
    assert sorted(os.listxattr(f)) == ["user.bin", "user.empty", "user.mime_type"]
    # XATTR_CREATE / XATTR_REPLACE, missing names, removal: the errno values of Linux.
    assert _errno(lambda: os.setxattr(f, "user.bin", b"x", os.XATTR_CREATE)) == errno.EEXIST
    assert _errno(lambda: os.setxattr(f, "user.none", b"x", os.XATTR_REPLACE)) == errno.ENODATA
    os.setxattr(f, "user.bin", b"replaced", os.XATTR_REPLACE)
    assert _errno(lambda: os.getxattr(f, "user.none")) == errno.ENODATA
    os.removexattr(f, "user.empty")
    assert _errno(lambda: os.removexattr(f, "user.empty")) == errno.ENODATA
    assert _errno(lambda: os.getxattr(mount.path / "missing", "user.x")) == errno.ENOENT
    # The largest value Linux allows; one byte more is refused by the kernel itself.
    os.setxattr(f, "user.big", b"v" * 65536)
    assert os.getxattr(f, "user.big") == b"v" * 65536
    assert _errno(lambda: os.setxattr(f, "user.big2", b"v" * 65537)) == errno.E2BIG
    # What the mount set is on the server, and what the server has is read by the mount (no cache).
    assert _server(api_node, lambda c: c.getxattr(f"{mount.volume}/f.txt", "user.bin")) == b"replaced"
    _server(api_node, lambda c: c.setxattr(f"{mount.volume}/f.txt", "user.from-api", b"api"))
    assert os.getxattr(f, "user.from-api") == b"api"
    # Directories too, the volume's root included; the content is untouched.
    os.setxattr(mount.path, "user.volume", b"v")
    (mount.path / "d").mkdir()
    os.setxattr(mount.path / "d", "user.dir", b"d")
    assert os.getxattr(mount.path / "d", "user.dir") == b"d"
    assert os.listxattr(mount.path) == ["user.volume"]
    assert f.read_bytes() == b"content"


def test_other_namespaces_are_answered_by_the_mount(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    f = mount.path / "f"
    f.write_bytes(b"1")
    _server(api_node, lambda c: c.setxattr(f"{mount.volume}/f", "trusted.kept-by-root", b"t"))
    assert _errno(lambda: os.getxattr(f, "security.capability")) == errno.ENODATA
    assert _errno(lambda: os.getxattr(f, "security.selinux")) == errno.ENODATA
    assert _errno(lambda: os.getxattr(f, "trusted.kept-by-root")) == errno.ENODATA
    assert _errno(lambda: os.getxattr(f, "system.posix_acl_access")) in (errno.ENODATA, errno.ENOTSUP)
    assert _errno(lambda: os.setxattr(f, "security.selinux", b"x")) == errno.ENOTSUP
    assert _errno(lambda: os.setxattr(f, "trusted.x", b"x")) == errno.ENOTSUP
    assert _errno(lambda: os.setxattr(f, "other.x", b"x")) in (errno.ENOTSUP, errno.EOPNOTSUPP)
    assert os.listxattr(f) == []
    # ls -l asks for security.selinux and the ACLs of every entry: it works, and writes too.
    listing = subprocess.run(["ls", "-la", str(mount.path)], capture_output=True, text=True, check=True)
    assert " f\n" in listing.stdout
    with f.open("ab") as out:
        for _ in range(10):
            out.write(b"x" * 100)
            out.flush()
    assert f.read_bytes() == b"1" + b"x" * 1000


def test_hard_links_renames_and_unlinks(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    one, two = mount.path / "one", mount.path / "two"
    one.write_bytes(b"1")
    os.link(one, two)
    os.setxattr(one, "user.shared", b"s")
    assert os.getxattr(two, "user.shared") == b"s"
    os.rename(two, mount.path / "renamed")
    assert os.getxattr(mount.path / "renamed", "user.shared") == b"s"
    one.unlink()
    assert os.getxattr(mount.path / "renamed", "user.shared") == b"s"
    (mount.path / "renamed").unlink()
    (mount.path / "renamed").write_bytes(b"new")
    assert os.listxattr(mount.path / "renamed") == []


def test_a_file_not_uploaded_yet_gets_its_attributes_after_its_bytes(
    api_node: AppNode, mount_factory: MountFactory
) -> None:
    mount = mount_factory(api_node)
    path = mount.path / "new"
    with path.open("wb") as out:
        out.write(b"written before the attribute")
        assert os.listxattr(path) == []
        assert _errno(lambda: os.getxattr(path, "user.a")) == errno.ENODATA
        os.setxattr(path, "user.a", b"A")
        out.write(b", and after")
    assert path.read_bytes() == b"written before the attribute, and after"
    assert os.getxattr(path, "user.a") == b"A"


def test_permissions_are_the_kernels_and_the_servers(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    f = mount.path / "f"
    f.write_bytes(b"1")
    os.setxattr(f, "user.a", b"A")
    os.chmod(f, 0o600)
    os.chmod(mount.path, 0o755)  # noqa: S103
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 0
        try:
            os.chdir(mount.path)  # the test's directories above the mount are root's alone
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            for attempt in (lambda: os.getxattr("f", "user.a"), lambda: os.setxattr("f", "user.b", b"B")):
                try:
                    attempt()
                    code = 1
                except PermissionError:
                    pass
            code = code or (0 if os.listxattr("f") == ["user.a"] else 2)
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(shutil.which("getfattr") is None or shutil.which("setfattr") is None,
                    reason="the attr package (getfattr, setfattr) is not installed")
def test_attr_tools_and_cp_preserve(api_node: AppNode, mount_factory: MountFactory, tmp_path: Path) -> None:
    mount = mount_factory(api_node)
    f = mount.path / "f"
    f.write_bytes(b"data")
    subprocess.run(["setfattr", "-n", "user.comment", "-v", "hello world", str(f)], check=True)
    subprocess.run(["setfattr", "-n", "user.hex", "-v", "0x00ff10", str(f)], check=True)
    dump = subprocess.run(["getfattr", "-d", "-e", "hex", str(f)], capture_output=True, text=True, check=True)
    assert "user.comment=0x68656c6c6f20776f726c64" in dump.stdout and "user.hex=0x00ff10" in dump.stdout
    one = subprocess.run(["getfattr", "--only-values", "-n", "user.comment", str(f)], capture_output=True,
                         check=True)
    assert one.stdout == b"hello world"
    subprocess.run(["setfattr", "-x", "user.hex", str(f)], check=True)
    missing = subprocess.run(["getfattr", "-n", "user.hex", str(f)], capture_output=True, text=True)
    assert missing.returncode != 0 and "No such attribute" in missing.stderr
    # cp keeps them into, out of and within the mount.
    subprocess.run(["cp", "--preserve=xattr", str(f), str(mount.path / "copy")], check=True)
    assert os.getxattr(mount.path / "copy", "user.comment") == b"hello world"
    subprocess.run(["cp", "-a", str(f), str(tmp_path / "out")], check=True)
    assert os.getxattr(tmp_path / "out", "user.comment") == b"hello world"
    os.setxattr(tmp_path / "out", "user.back", b"in")
    subprocess.run(["cp", "-a", str(tmp_path / "out"), str(mount.path / "in")], check=True)
    assert sorted(os.listxattr(mount.path / "in")) == ["user.back", "user.comment"]


def test_xattr_false_leaves_them_out(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node, options=["xattr=false"])
    f = mount.path / "f"
    f.write_bytes(b"1")
    assert _errno(lambda: os.setxattr(f, "user.a", b"A")) == errno.ENOTSUP
    assert _errno(lambda: os.getxattr(f, "user.a")) == errno.ENOTSUP
    assert _errno(lambda: os.listxattr(f)) in (0, errno.ENOTSUP)
    with f.open("ab") as out:
        out.write(b"2")
    assert f.read_bytes() == b"12"
