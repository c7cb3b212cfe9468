"""POSIX ownership, modes and times through ``callfs-mount``, on SQLite and on PostgreSQL + Redis.

Real mounts (``support.mount``) of real nodes (``api_node``: both metadata stores); processes acting as other
users switch their ids in a child process (``as_user``), as pjdfstest does, so the kernel checks modes against
them (``default_permissions``). The suite-wide count is ``test_pjdfstest.py``'s; these name the rules.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callfs.client import CallFSClient, FileInfo
from support.app_node import AppNode
from support.machine import require_fuse
from support.mount import MountedVolume
from support.waiting import wait_for

MountFactory = Callable[..., MountedVolume]

NOBODY = 65534
UTIME_OMIT = (1 << 30) - 2


@pytest.fixture(autouse=True)
def _fuse() -> None:
    require_fuse()
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")


def as_user(uid: int, gid: int, cwd: Path, action: Callable[[Path], object]) -> int:
    """Run ``action(Path("."))`` in a child process with ``uid``/``gid`` (no supplementary groups) whose working
    directory is ``cwd`` (the test's temporary directories above a mount are root's alone); the ``errno`` of the
    ``OSError`` it raised, or 0."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 0
        try:
            os.chdir(cwd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            action(Path("."))
        except OSError as exc:
            code = exc.errno or 255
        except BaseException:
            code = 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def on_server(node: AppNode, path: str) -> FileInfo:
    async def run() -> FileInfo:
        async with CallFSClient(node.url, node.key_for("root")) as client:
            return await client.stat(path)

    return asyncio.run(run())


def server_call(node: AppNode, user: str, operation: Callable[[CallFSClient], Any]) -> Any:
    async def run() -> Any:
        async with CallFSClient(node.url, node.key_for(user)) as client:
            return await operation(client)

    return asyncio.run(run())


def test_numeric_owner_and_full_mode_are_stored_and_shown(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    path = mount.path / "prog"
    path.write_text("#!/bin/sh\n")
    os.chown(path, 1000, 2000)
    os.chmod(path, 0o4750)  # noqa: S103
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 2000, 0o4750)
    info = on_server(api_node, f"{mount.volume}/prog")
    assert (info.uid, info.gid, info.mode) == (1000, 2000, 0o4750)
    os.chown(path, -1, 3000)  # -1: the uid stays; the kernel clears setuid (chown(2))
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 3000, 0o750)
    os.chmod(path, 0o2750)  # noqa: S103
    second = mount_factory(api_node, mount.volume, create=False)
    st = os.stat(second.path / "prog")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 3000, 0o2750)


def test_entries_get_the_creating_process_ids(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    os.chmod(mount.path, 0o1777)  # noqa: S103

    def create(here: Path) -> None:
        (here / "mine").write_text("x")
        (here / "dir").mkdir(0o700)

    assert as_user(NOBODY, NOBODY, mount.path, create) == 0
    # The volume's root has no numeric group: it is the volume's (the mount's gid), which new entries inherit.
    for name, mode in (("mine", 0o644), ("dir", 0o700)):
        st = os.stat(mount.path / name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, os.getgid(), mode), name
    grouped = mount.path / "grouped"
    grouped.mkdir(0o777)
    os.chown(grouped, -1, 50)
    os.chmod(grouped, 0o777)  # noqa: S103
    assert as_user(NOBODY, NOBODY, grouped, lambda here: (here / "theirs").write_text("t")) == 0
    theirs = os.stat(grouped / "theirs")
    assert (theirs.st_uid, theirs.st_gid) == (NOBODY, NOBODY)  # a directory with its own group: the caller's
    os.chmod(mount.path / "mine", 0o600)
    assert as_user(NOBODY, NOBODY, mount.path, lambda here: (here / "mine").read_text()) == 0
    assert as_user(1, 1, mount.path, lambda here: (here / "mine").read_text()) == errno.EACCES  # the kernel's check
    assert as_user(1, 1, mount.path, lambda here: os.chmod(here / "mine", 0o640)) == errno.EPERM
    assert as_user(NOBODY, NOBODY, mount.path, lambda here: os.chown(here / "mine", 1, -1)) == errno.EPERM


def test_setgid_directory_passes_its_group_on(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    shared = mount.path / "shared"
    shared.mkdir()
    os.chown(shared, -1, 50)
    os.chmod(shared, 0o2777)  # noqa: S103
    def create(here: Path) -> None:
        (here / "sub").mkdir(0o755)
        (here / "f").write_text("f")
        os.close(os.open(here / "empty", os.O_CREAT | os.O_WRONLY, 0o600))  # no write: attributes of the create

    assert as_user(NOBODY, NOBODY, shared, create) == 0
    sub, made, empty = os.stat(shared / "sub"), os.stat(shared / "f"), os.stat(shared / "empty")
    assert (sub.st_uid, sub.st_gid, stat.S_IMODE(sub.st_mode)) == (NOBODY, 50, 0o2755)  # POSIX mkdir(2)
    assert (made.st_uid, made.st_gid, stat.S_IMODE(made.st_mode)) == (NOBODY, 50, 0o644)
    assert (empty.st_uid, empty.st_gid, stat.S_IMODE(empty.st_mode)) == (NOBODY, 50, 0o600)


def _utimensat(path: Path, atime: tuple[int, int], mtime: tuple[int, int]) -> None:
    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    libc = ctypes.CDLL(None, use_errno=True)
    times = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    if libc.utimensat(-100, str(path).encode(), times, 0) != 0:  # AT_FDCWD
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def test_times_follow_utimensat_and_ctime_follows_changes(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    path = mount.path / "t"
    path.write_text("t")
    os.utime(path, ns=(1_900_000_000_250_000_000, 1_950_000_000_000_001_000))
    st = os.stat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_900_000_000_250_000_000, 1_950_000_000_000_001_000)
    _utimensat(path, (0, UTIME_OMIT), (1_800_000_000, 0))  # UTIME_OMIT: atime stays
    st = os.stat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_900_000_000_250_000_000, 1_800_000_000 * 10**9)
    assert on_server(api_node, f"{mount.volume}/t").atime == datetime(2030, 3, 17, 17, 46, 40, 250_000, tzinfo=UTC)
    changed = st.st_ctime_ns
    for change in (lambda: os.chmod(path, 0o646),  # noqa: S103 lambda: os.chown(path, 7, 7),
                   lambda: path.write_text("again")):
        change()
        after = os.stat(path).st_ctime_ns
        assert after > changed
        changed = after
    # Times given as values: the owner only; "now": write permission is enough (POSIX utimensat).
    assert as_user(NOBODY, NOBODY, mount.path, lambda here: os.utime(here / "t", ns=(0, 0))) == errno.EPERM
    assert as_user(NOBODY, NOBODY, mount.path, lambda here: os.utime(here / "t")) == 0
    assert os.stat(path).st_ctime_ns > changed
    assert abs(os.stat(path).st_mtime_ns - datetime.now(UTC).timestamp() * 10**9) < 60 * 10**9


def test_chown_the_server_refuses_is_eperm_or_quiet(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    server_call(api_node, "root", lambda c: c.chmod(mount.volume, 0o777))
    server_call(api_node, "root", lambda c: c.put_file(f"{mount.volume}/roots", b"r"))
    as_alice = mount_factory(api_node, mount.volume, create=False, user="alice")
    quiet = mount_factory(api_node, mount.volume, create=False, user="alice", options=["quiet"])
    (as_alice.path / "alices").write_text("a")
    os.chown(as_alice.path / "alices", 1, 1)  # alice's key owns it on the server
    assert (os.stat(as_alice.path / "alices").st_uid, on_server(api_node, f"{mount.volume}/alices").uid) == (1, 1)
    with pytest.raises(PermissionError) as refused:
        os.chown(as_alice.path / "roots", 1, 1)  # the key may not change root's file
    assert refused.value.errno == errno.EPERM
    os.chown(quiet.path / "roots", 1, 1)
    assert on_server(api_node, f"{mount.volume}/roots").uid is None


def test_names_longer_than_name_max_are_enametoolong(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    (mount.path / ("x" * 255)).write_text("ok")  # NAME_MAX bytes: fine
    for call in (lambda p: p.write_text("x"), lambda p: p.mkdir(), os.stat, os.unlink):
        with pytest.raises(OSError) as caught:
            call(mount.path / ("é" * 128))  # 256 bytes in UTF-8
        assert caught.value.errno == errno.ENAMETOOLONG


def test_symlinks_are_created_read_and_resolved_by_the_kernel(api_node: AppNode,
                                                              mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    (mount.path / "d").mkdir()
    (mount.path / "d" / "f").write_text("hello")
    os.symlink("d/f", mount.path / "l")
    os.symlink("nowhere", mount.path / "dangling")
    link = os.lstat(mount.path / "l")
    assert (stat.S_ISLNK(link.st_mode), link.st_size, stat.S_IMODE(link.st_mode)) == (True, 3, 0o777)
    assert os.readlink(mount.path / "l") == "d/f"
    assert (mount.path / "l").read_text() == "hello"  # followed by the kernel
    assert sorted(os.listdir(mount.path)) == ["d", "dangling", "l"]
    assert not (mount.path / "dangling").exists() and (mount.path / "dangling").is_symlink()
    with pytest.raises(OSError) as nofollow:
        os.open(mount.path / "l", os.O_RDONLY | os.O_NOFOLLOW)
    assert nofollow.value.errno == errno.ELOOP
    os.chown(mount.path / "l", 7, 8, follow_symlinks=False)  # lchown: the link, not its target
    assert (os.lstat(mount.path / "l").st_uid, os.stat(mount.path / "l").st_uid) == (7, 0)
    info = on_server(api_node, f"{mount.volume}/l")
    assert (info.type, info.target, info.uid) == ("symlink", "d/f", 7)
    other = mount_factory(api_node, mount.volume, create=False)
    assert os.readlink(other.path / "l") == "d/f"
    os.rename(mount.path / "l", mount.path / "d" / "back")
    assert (mount.path / "d" / "back").is_symlink()  # relative target kept as given: now dangling
    os.unlink(mount.path / "d" / "back")
    assert (mount.path / "d" / "f").read_text() == "hello"
    with pytest.raises(OSError) as exists:
        os.symlink("x", mount.path / "d" / "f")
    assert exists.value.errno == errno.EEXIST
    with pytest.raises(OSError) as too_long:
        os.symlink("a" * 4096, mount.path / "big")
    assert too_long.value.errno == errno.ENAMETOOLONG


def test_hard_links_show_one_inode_through_every_name_at_once(api_node: AppNode,
                                                              mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    names = [mount.path / name for name in ("a", "b", "c")]
    names[0].write_text("shared")
    assert os.stat(names[0]).st_nlink == 1  # now in the kernel's attribute cache for attr_timeout
    os.link(names[0], names[1])
    os.link(names[1], names[2])
    seen = [os.lstat(name) for name in names]
    assert {s.st_ino for s in seen} == {on_server(api_node, f"{mount.volume}/a").ino}
    assert [s.st_nlink for s in seen] == [3, 3, 3]
    os.chmod(names[1], 0o600)
    assert [stat.S_IMODE(os.stat(name).st_mode) for name in names] == [0o600] * 3
    os.unlink(names[0])
    assert [os.stat(name).st_nlink for name in names[1:]] == [2, 2]
    with open(names[1], "a") as appended:
        appended.write("!")
    assert (os.stat(names[2]).st_size, names[2].read_text()) == (7, "shared!")
    assert os.stat(names[2]).st_ctime_ns == os.stat(names[1]).st_ctime_ns
    (mount.path / "d").mkdir()
    assert os.stat(mount.path).st_nlink == 3  # its name, its ".", and the ".." of d
    os.rename(mount.path / "d", mount.path / "e")
    (mount.path / "e" / "sub").mkdir()
    assert (os.stat(mount.path).st_nlink, os.stat(mount.path / "e").st_nlink) == (3, 3)


def test_a_file_created_here_keeps_its_inode_number_while_open(api_node: AppNode,
                                                                mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    path = mount.path / "new.db"
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(descriptor, b"page")
        os.fsync(descriptor)  # uploaded: the server has its own number for it now
        assert os.fstat(descriptor).st_ino == os.stat(path).st_ino  # what SQLite checks before each write
        reopened = os.open(path, os.O_RDONLY)
        assert os.fstat(reopened).st_ino == os.fstat(descriptor).st_ino
        os.close(reopened)
    finally:
        os.close(descriptor)
    server = on_server(api_node, f"{mount.volume}/new.db").ino
    wait_for(lambda: os.stat(path).st_ino == server, 10, "the server's inode number after the last close")


def test_fifos_sockets_and_device_nodes_are_entries(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    os.mkfifo(mount.path / "pipe", 0o600)
    os.mknod(mount.path / "null", 0o640 | stat.S_IFCHR, os.makedev(1, 3))
    kinds = {name: stat.S_IFMT(os.lstat(mount.path / name).st_mode) for name in os.listdir(mount.path)}
    assert kinds == {"pipe": stat.S_IFIFO, "null": stat.S_IFCHR}
    device = os.stat(mount.path / "null")
    assert (os.major(device.st_rdev), os.minor(device.st_rdev), stat.S_IMODE(device.st_mode)) == (1, 3, 0o640)
    with pytest.raises(PermissionError):
        open(mount.path / "null", "rb")  # noqa: SIM115 - the mount is nodev
    info = on_server(api_node, f"{mount.volume}/pipe")
    assert (info.type, info.special, info.mode) == ("special", "fifo", 0o600)
    other = mount_factory(api_node, mount.volume, create=False)
    reader = os.open(other.path / "pipe", os.O_RDONLY | os.O_NONBLOCK)  # a pipe of this machine's kernel
    writer = os.open(other.path / "pipe", os.O_WRONLY)
    os.write(writer, b"through the pipe")
    assert os.read(reader, 100) == b"through the pipe"
    os.close(writer)
    os.close(reader)
    os.unlink(mount.path / "pipe")
    assert os.listdir(other.path) == ["null"]


def _renameat2(old: Path, new: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(-100, str(old).encode(), -100, str(new).encode(), flags) != 0:  # AT_FDCWD
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def test_rename_exchange_swaps_entries(api_node: AppNode, mount_factory: MountFactory) -> None:
    rename_exchange, rename_noreplace = 2, 1
    mount = mount_factory(api_node)
    (mount.path / "a").write_text("a")
    (mount.path / "d").mkdir()
    (mount.path / "d" / "inner").write_text("i")
    _renameat2(mount.path / "a", mount.path / "d", rename_exchange)
    assert (mount.path / "d").read_text() == "a" and (mount.path / "a" / "inner").read_text() == "i"
    with open(mount.path / "new", "w") as unsent:  # created here, not on the server yet: uploaded first
        unsent.write("n")
        unsent.flush()
        _renameat2(mount.path / "new", mount.path / "d", rename_exchange)
    assert (mount.path / "d").read_text() == "n" and (mount.path / "new").read_text() == "a"
    for flags, code in ((rename_exchange, errno.ENOENT), (rename_noreplace, errno.EEXIST)):
        with pytest.raises(OSError) as caught:
            _renameat2(mount.path / "new", mount.path / ("missing" if flags == rename_exchange else "d"), flags)
        assert caught.value.errno == code


def test_unsent_writes_show_the_time_of_the_last_write(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    with open(mount.path / "w", "wb") as out:
        out.write(b"one")
        out.flush()
        first = os.fstat(out.fileno())
        time.sleep(0.05)
        again = os.fstat(out.fileno())
        assert again.st_mtime_ns == first.st_mtime_ns == first.st_ctime_ns  # not the time of the stat
        out.write(b"two")
        out.flush()
        assert os.fstat(out.fileno()).st_mtime_ns > first.st_mtime_ns


FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x08, 0x10


def fallocate(fd: int, mode: int, offset: int, length: int) -> int:
    """``fallocate(2)`` through libc; 0, or the errno it failed with."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return 0 if libc.fallocate(fd, mode, offset, length) == 0 else ctypes.get_errno()


def test_fallocate_grows_files_keeps_sizes_and_zeroes_ranges(api_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(api_node)
    path = mount.path / "f.bin"
    path.write_bytes(b"x" * 10_000)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 20_000)
        assert os.fstat(fd).st_size == 20_000
        assert fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 50_000) == 0
        assert os.fstat(fd).st_size == 20_000
        assert fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 200) == 0
        assert fallocate(fd, FALLOC_FL_ZERO_RANGE, 19_990, 20) == 0
        assert os.fstat(fd).st_size == 20_010
        assert fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096) == errno.EOPNOTSUPP
        assert fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10) == errno.EOPNOTSUPP  # a hole needs KEEP_SIZE
        assert fallocate(fd, 0, 0, 0) == errno.EINVAL
    finally:
        os.close(fd)
    expected = b"x" * 100 + bytes(200) + b"x" * 9_700 + bytes(10_010)
    assert path.read_bytes() == expected
    assert on_server(api_node, mount.volume + "/f.bin").size == 20_010
    read_only = os.open(path, os.O_RDONLY)
    try:
        assert fallocate(read_only, 0, 0, 30_000) == errno.EBADF
    finally:
        os.close(read_only)


def test_an_unlinked_file_stays_usable_through_its_open_descriptor(
    api_node: AppNode, mount_factory: MountFactory
) -> None:
    """POSIX unlink(2): the name goes at once, the file lives on until its last descriptor closes (the mount
    renames it aside on the server meanwhile, as NFS clients do, and removes it at the last close)."""
    mount = mount_factory(api_node)
    path = mount.path / "open.bin"
    path.write_bytes(b"kept while open " * 1000)
    fd = os.open(path, os.O_RDWR)
    try:
        os.unlink(path)
        assert not path.exists() and "open.bin" not in os.listdir(mount.path)
        assert os.pread(fd, 16, 16) == b"kept while open "
        os.pwrite(fd, b"CHANGED", 0)
        os.fsync(fd)
        assert os.pread(fd, 7, 0) == b"CHANGED" and os.fstat(fd).st_size == 16_000
        path.write_bytes(b"a new file under the old name")  # the name is free for another file meanwhile
    finally:
        os.close(fd)

    def aside_removed() -> bool:
        return sorted(os.listdir(mount.path)) == ["open.bin"]

    wait_for(aside_removed, 10, "the renamed-aside file to be removed after the last close")
    assert path.read_bytes() == b"a new file under the old name"
