"""``callfs-mount`` against a real node through real FUSE: POSIX workloads, quotas, two mounts, crashes.

Every test mounts with the daemonised CLI (as the CSI node plugin does) and unmounts in teardown
(``support.mount``). The node is served in-process (``support.app_node``); an outage is the node stopping (its
listener and connections closed) and starting again on the same port.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from callfs.client import CallFSClient
from support.app_node import AppNode
from support.machine import require_fuse
from support.mount import MOUNT_COMMAND, MountedVolume, is_mounted, unmount, wait_for_exit
from support.waiting import wait_for

MountFactory = Callable[..., MountedVolume]



@pytest.fixture(autouse=True)
def _fuse() -> None:
    """Every test here mounts: skip without FUSE on a developer's machine, fail in CI."""
    require_fuse()


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a shell command inside the mount; the result (exit code, stdout, stderr) is the caller's."""
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=240)


def ok(command: str, cwd: Path) -> str:
    result = sh(command, cwd)
    assert result.returncode == 0, f"{command!r} failed: {result.stderr}"
    return result.stdout


def server(node: AppNode, operation: Callable[[CallFSClient], object]) -> object:
    async def run() -> object:
        async with CallFSClient(node.url, node.key_for("root")) as client:
            return await operation(client)  # type: ignore[misc]

    return asyncio.run(run())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---- mounting -----------------------------------------------------------------------------------------


def test_mount_shows_in_mountinfo_as_fuse_callfs(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node, "/volumes/pvc-info")
    line = next(line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if line.split()[4] == str(mount.path))
    fstype, source = line.split(" - ", 1)[1].split()[:2]
    assert (fstype, source) == ("fuse.callfs", "callfs:/volumes/pvc-info")


def test_missing_volume_path_fails_with_one_line(app_node: AppNode, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(app_node.key_for("root"))
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = subprocess.run([*MOUNT_COMMAND, app_node.url, "/volumes/nope", str(mountpoint), "--key-file", str(key)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "callfs-mount: volume path /volumes/nope does not exist on the server"]
    assert not is_mounted(mountpoint)


def test_bad_key_fails_with_one_line(app_node: AppNode, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("not-a-valid-key-0123456789")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = subprocess.run([*MOUNT_COMMAND, app_node.url, "/", str(mountpoint), "--key-file", str(key)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "rejected the API key" in result.stderr
    assert not is_mounted(mountpoint)


def test_busy_mountpoint_fails(app_node: AppNode, mount_factory: MountFactory, tmp_path: Path) -> None:
    mount = mount_factory(app_node)
    key = tmp_path / "key"
    key.write_text(app_node.key_for("root"))
    result = subprocess.run([*MOUNT_COMMAND, app_node.url, mount.volume, str(mount.path), "--key-file", str(key)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "busy" in result.stderr


def test_unmount_ends_the_daemon(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    pid = mount.pid()
    subprocess.run(["fusermount3", "-u", str(mount.path)], check=True, timeout=30)
    wait_for_exit(pid)
    assert not is_mounted(mount.path)


# ---- POSIX workloads ----------------------------------------------------------------------------------


def test_large_file_copies_byte_exact_both_ways(app_node: AppNode, mount_factory: MountFactory,
                                               tmp_path: Path) -> None:
    mount = mount_factory(app_node)
    source = tmp_path / "big.bin"
    ok(f"dd if=/dev/urandom of={source} bs=1M count=64 status=none", tmp_path)
    ok(f"cp {source} big.bin", mount.path)
    back = tmp_path / "back.bin"
    ok(f"dd if=big.bin of={back} bs=1M status=none", mount.path)
    assert sha256_of(back) == sha256_of(source)
    assert ok("sha256sum big.bin", mount.path).split()[0] == sha256_of(source)
    info = server(app_node, lambda c: c.stat(f"{mount.volume}/big.bin"))
    assert info.size == 64 * 1024 * 1024  # type: ignore[attr-defined]


def test_partial_overwrite_and_append_keep_the_rest(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    (mount.path / "f").write_bytes(b"0123456789")
    ok("printf AB | dd of=f bs=1 seek=3 conv=notrunc status=none && printf xyz >> f", mount.path)
    assert (mount.path / "f").read_bytes() == b"012AB56789xyz"
    assert server(app_node, lambda c: c.read(f"{mount.volume}/f")) == b"012AB56789xyz"


def test_truncate_shrinks_and_extends(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    (mount.path / "t").write_bytes(b"abcdefgh")
    os.truncate(mount.path / "t", 3)
    assert (mount.path / "t").read_bytes() == b"abc"
    os.truncate(mount.path / "t", 5)
    assert server(app_node, lambda c: c.read(f"{mount.volume}/t")) == b"abc\0\0"


def test_many_small_files(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    ok("mkdir small && for i in $(seq 1 300); do echo \"file $i\" > small/f$i; done", mount.path)
    names = sorted(os.listdir(mount.path / "small"))
    assert names == sorted(f"f{i}" for i in range(1, 301))
    assert (mount.path / "small" / "f257").read_text() == "file 257\n"
    listed = server(app_node, lambda c: c.list_dir(f"{mount.volume}/small"))
    assert len(listed) == 300  # type: ignore[arg-type]


def test_mv_and_rm_r(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    ok("mkdir -p a/b/c && echo one > a/b/c/x && echo two > a/y", mount.path)
    ok("mv a z && mv z/y z/b/y2", mount.path)
    assert (mount.path / "z" / "b" / "c" / "x").read_text() == "one\n"
    assert (mount.path / "z" / "b" / "y2").read_text() == "two\n"
    assert not (mount.path / "a").exists()
    ok("echo new > z/b/c/target && mv z/b/y2 z/b/c/target", mount.path)  # rename replaces the target
    assert (mount.path / "z" / "b" / "c" / "target").read_text() == "two\n"
    ok("rm -r z", mount.path)
    assert os.listdir(mount.path) == []
    assert server(app_node, lambda c: c.list_dir(mount.volume)) == []


def test_rmdir_of_non_empty_directory_is_enotempty(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    (mount.path / "d").mkdir()
    (mount.path / "d" / "f").write_text("x")
    with pytest.raises(OSError) as caught:
        os.rmdir(mount.path / "d")
    assert caught.value.errno == errno.ENOTEMPTY


def test_chmod_shows_and_entries_without_ids_show_the_mount_uid(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node, options=())
    (mount.path / "f").write_text("x")
    os.chmod(mount.path / "f", 0o600)
    st = os.stat(mount.path / "f")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, os.getuid(), os.getgid())
    info = server(app_node, lambda c: c.stat(f"{mount.volume}/f"))
    assert (info.mode, info.uid, info.gid) == (0o600, None, None)  # type: ignore[attr-defined]


def test_git_init_add_commit(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    git = "git -c user.email=t@example.com -c user.name=t"
    ok(f"git init -q repo && cd repo && for i in 1 2 3; do echo $i > f$i; done && git add . && "
       f"{git} commit -qm first && echo more >> f1 && mkdir sub && echo s > sub/s && git add -A && "
       f"{git} commit -qm second", mount.path)
    repo = mount.path / "repo"
    assert ok("git log --format=%s", repo).split() == ["second", "first"]
    assert ok("git status --porcelain", repo) == ""
    assert ok("git fsck --strict 2>&1; echo rc=$?", repo).strip().endswith("rc=0")


# ---- two mounts of one volume -------------------------------------------------------------------------


def test_two_mounts_see_each_others_writes(app_node: AppNode, mount_factory: MountFactory) -> None:
    first = mount_factory(app_node)
    second = mount_factory(app_node, first.volume, create=False)
    (first.path / "from-first").write_text("hello")
    wait_for(lambda: (second.path / "from-first").exists(), 10, "the first mount's file on the second", 0.05)
    assert (second.path / "from-first").read_text() == "hello"
    (second.path / "from-first").write_text("changed by the second")
    wait_for(lambda: (first.path / "from-first").read_text() == "changed by the second", 10,
             "the second mount's change on the first", 0.05)
    (second.path / "from-first").unlink()
    wait_for(lambda: not (first.path / "from-first").exists(), 10, "the second mount's delete on the first", 0.05)


def test_own_changes_are_seen_at_once_despite_kernel_caches(app_node: AppNode,
                                                            mount_factory: MountFactory) -> None:
    """Attributes and pages the kernel caches (``attr_timeout``, ``keep_cache``) never hide this mount's own
    writes: a rewrite through the mount shows its new size and bytes immediately."""
    mount = mount_factory(app_node, options=["attr_timeout=30"])
    target = mount.path / "f"
    target.write_bytes(b"first version")
    assert target.read_bytes() == b"first version"
    assert target.stat().st_size == 13
    target.write_bytes(b"second, longer version")
    assert target.stat().st_size == 22
    assert target.read_bytes() == b"second, longer version"
    with target.open("r+b") as out:
        out.seek(0)
        out.write(b"SECOND")
    assert target.read_bytes() == b"SECOND, longer version"
    os.truncate(target, 6)
    assert (target.stat().st_size, target.read_bytes()) == (6, b"SECOND")


def test_another_clients_change_shows_at_the_next_open_and_within_the_attribute_timeout(
        app_node: AppNode, mount_factory: MountFactory) -> None:
    """Close-to-open: a same-size change made elsewhere is read by the next open (the open's HEAD sees a new
    ETag, so the kernel drops its cached pages); a size change shows once ``attr_timeout`` has passed."""
    mount = mount_factory(app_node, options=["attr_timeout=2"])
    target = mount.path / "f"
    target.write_bytes(b"aaaaaaaa")
    assert target.read_bytes() == b"aaaaaaaa"  # now in the kernel's page cache
    server(app_node, lambda c: c.upload(f"{mount.volume}/f", b"bbbbbbbb"))
    assert target.read_bytes() == b"bbbbbbbb"  # the next open, no waiting
    assert target.read_bytes() == b"bbbbbbbb"
    server(app_node, lambda c: c.upload(f"{mount.volume}/f", b"a longer text from elsewhere"))
    started = time.monotonic()
    wait_for(lambda: target.read_bytes() == b"a longer text from elsewhere", 10, "the new size and bytes", 0.05)
    assert time.monotonic() - started < 2 + 1.5


# ---- quotas -------------------------------------------------------------------------------------------


def test_df_shows_the_quota(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    server(app_node, lambda c: c.set_quota(mount.volume, bytes_limit=64 * 1024 * 1024, inodes_limit=5000))
    size, inodes = ok(f"df -B1 --output=size {mount.path} | tail -1; df --output=itotal {mount.path} | tail -1",
                      mount.path).split()
    assert (int(size), int(inodes)) == (64 * 1024 * 1024, 5000)


def test_writing_past_the_quota_is_enospc(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    server(app_node, lambda c: c.set_quota(mount.volume, bytes_limit=8 * 1024 * 1024))
    result = sh("dd if=/dev/zero of=fill bs=1M count=16", mount.path)
    assert result.returncode != 0
    assert "No space left on device" in result.stderr
    usage = server(app_node, lambda c: c.get_quota(mount.volume))
    assert usage.bytes_used <= 8 * 1024 * 1024  # type: ignore[attr-defined]


def test_upload_refused_by_the_server_quota_fails_the_close(app_node: AppNode,
                                                            mount_factory: MountFactory) -> None:
    """The mount's early check uses a cached usage figure; the server's 507 on upload is the last word."""
    mount = mount_factory(app_node, options=["attr_timeout=30"])
    server(app_node, lambda c: c.set_quota(mount.volume, bytes_limit=4 * 1024 * 1024))
    os.statvfs(mount.path)  # cache the usage while the volume is empty
    server(app_node, lambda c: c.upload(f"{mount.volume}/other", b"o" * (3 * 1024 * 1024)))  # not seen by the mount
    fd = os.open(mount.path / "late", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"l" * (2 * 1024 * 1024))
    finally:
        with pytest.raises(OSError) as caught:
            os.close(fd)
    assert caught.value.errno == errno.ENOSPC


# ---- resilience ---------------------------------------------------------------------------------------


def test_killed_daemon_leaves_a_stale_mount_that_unmount_cleans(app_node: AppNode,
                                                               mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    os.kill(mount.pid(), signal.SIGKILL)
    wait_for_exit(mount.pid())
    with pytest.raises(OSError) as caught:
        os.stat(mount.path)
    assert caught.value.errno == errno.ENOTCONN
    assert is_mounted(mount.path)
    subprocess.run(["fusermount3", "-u", str(mount.path)], check=True, timeout=30)
    assert not is_mounted(mount.path)
    assert os.path.isdir(mount.path)


def test_mount_survives_the_process_that_started_it(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node, via_starter=True)
    assert mount.starter is not None
    (mount.path / "before").write_text("x")
    os.killpg(mount.starter.pid, signal.SIGKILL)
    mount.starter.wait()
    (mount.path / "after").write_text("still serving")
    assert (mount.path / "after").read_text() == "still serving"
    assert sorted(os.listdir(mount.path)) == ["after", "before"]


def test_brief_server_outage_is_retried(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node, options=["request_deadline=30"])
    (mount.path / "f").write_text("survives")
    app_node.stop()
    outcome: dict[str, object] = {}

    def read_during_outage() -> None:
        try:
            outcome["data"] = (mount.path / "f").read_text()
        except OSError as exc:
            outcome["error"] = exc

    reader = threading.Thread(target=read_during_outage)
    reader.start()
    time.sleep(1.5)  # the outage: the read must wait it out, not fail
    app_node.start()
    reader.join(timeout=60)
    assert outcome == {"data": "survives"}


def test_long_outage_fails_with_eio_not_a_hang(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node, options=["request_deadline=2"])
    (mount.path / "f").write_text("x")
    app_node.stop()
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", f"open({str(mount.path / 'f')!r}).read()"],
                            capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "Input/output error" in result.stderr
    assert elapsed < 20
    app_node.start()
    unmount(mount.path)
