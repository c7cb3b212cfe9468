"""CallFSClient against a real storage node (``support.app_node``), plus fault injection for retries."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from callfs import errors
from callfs.client import CallFSClient, CallFSUnavailable, FileInfo
from support.app_node import AppNode
from support.ports import free_port

MiB = 1024 * 1024


@pytest.fixture
async def fs(app_node: AppNode) -> AsyncIterator[CallFSClient]:
    async with CallFSClient(app_node.url, app_node.api_key) as client:
        yield client


def _random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; returns their sha256 hex digest."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, MiB))
            out.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- transfers ------------------------------------------------------------------------------------------


async def test_20_mib_upload_and_download_keep_the_sha256(fs: CallFSClient, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    expected = _random_file(source, 20 * MiB)
    progress: list[int] = []

    assert await fs.upload("/data/big.bin", source, progress=progress.append) is True
    assert sum(progress) == 20 * MiB
    info = await fs.stat("/data/big.bin")
    assert (info.type, info.size, info.name) == ("file", 20 * MiB, "big.bin")

    dest = tmp_path / "back.bin"
    assert await fs.download("/data/big.bin", dest) == 20 * MiB
    assert _sha256_of(dest) == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


async def test_overwrite_with_put_replaces_the_content(fs: CallFSClient) -> None:
    assert await fs.upload("/f.txt", b"first version") is True
    assert await fs.upload("/f.txt", b"second") is False
    assert await fs.read("/f.txt") == b"second"


async def test_ranged_read_returns_the_requested_slice(fs: CallFSClient) -> None:
    data = os.urandom(3 * MiB + 17)
    await fs.upload("/r.bin", data)

    assert await fs.read("/r.bin", offset=1000, length=5000) == data[1000:6000]
    assert await fs.read("/r.bin", offset=len(data) - 10) == data[-10:]
    assert await fs.read("/r.bin", offset=len(data) - 10, length=100) == data[-10:]
    assert await fs.read("/r.bin", offset=len(data)) == b""
    assert await fs.read("/r.bin", offset=len(data) + 5, length=3) == b""


async def test_iter_read_streams_in_bounded_chunks(fs: CallFSClient) -> None:
    data = os.urandom(2 * MiB + 3)
    await fs.upload("/s.bin", data)
    chunks = [c async for c in fs.iter_read("/s.bin", offset=7, chunk_size=64 * 1024)]
    assert max(len(c) for c in chunks) <= 64 * 1024
    assert b"".join(chunks) == data[7:]


async def test_streaming_upload_from_an_async_generator(fs: CallFSClient) -> None:
    digest = hashlib.sha256()

    async def produce() -> AsyncIterator[bytes]:
        for i in range(9):
            chunk = bytes([i]) * (MiB // 2 + i)
            digest.update(chunk)
            yield chunk
            await asyncio.sleep(0)

    assert await fs.upload("/gen/stream.bin", produce()) is True
    back = hashlib.sha256()
    async for chunk in fs.iter_read("/gen/stream.bin"):
        back.update(chunk)
    assert back.hexdigest() == digest.hexdigest()
    assert (await fs.stat("/gen/stream.bin")).size == sum(MiB // 2 + i for i in range(9))


async def test_upload_from_a_file_object_starts_at_its_position(fs: CallFSClient, tmp_path: Path) -> None:
    local = tmp_path / "obj.bin"
    local.write_bytes(b"HEADER" + b"payload" * 1000)
    with local.open("rb") as f:
        f.seek(6)
        await fs.upload("/obj.bin", f)
    assert await fs.read("/obj.bin") == b"payload" * 1000


async def test_upload_without_overwrite_of_an_existing_file_raises_already_exists(fs: CallFSClient) -> None:
    await fs.upload("/once.txt", b"a", overwrite=False)
    with pytest.raises(errors.AlreadyExists):
        await fs.upload("/once.txt", b"b", overwrite=False)
    assert await fs.read("/once.txt") == b"a"


async def test_names_needing_percent_encoding_round_trip(fs: CallFSClient) -> None:
    name = "sp ace #1 ?q=50% ü+日本.txt"
    await fs.upload(f"/odd dir/{name}", b"odd")
    assert await fs.read(f"/odd dir/{name}") == b"odd"
    [item] = await fs.list_dir("/odd dir")
    assert (item.name, item.path) == (name, f"/odd dir/{name}")


async def test_read_of_a_directory_raises_is_a_directory(fs: CallFSClient) -> None:
    await fs.mkdir("/adir")
    with pytest.raises(errors.IsADirectory):
        await fs.read("/adir")


# ---- metadata -------------------------------------------------------------------------------------------


async def test_listing_orders_directories_and_files_by_name(fs: CallFSClient) -> None:
    await fs.mkdir("/l/zdir")
    await fs.mkdir("/l/adir/deeper")
    await fs.upload("/l/b.txt", b"bb")
    await fs.upload("/l/adir/deeper/c.txt", b"c")

    items = await fs.list_dir("/l")
    assert [(i.name, i.type) for i in items] == [("adir", "directory"), ("zdir", "directory"), ("b.txt", "file")]
    b = items[2]
    assert (b.path, b.size, b.mode, b.etag) == ("/l/b.txt", 2, 0o644, None)
    assert items[0].mode == 0o755

    everything = await fs.list_dir("/l", recursive=True)
    assert {i.path for i in everything} == {"/l/adir", "/l/adir/deeper", "/l/adir/deeper/c.txt", "/l/zdir", "/l/b.txt"}
    shallow = await fs.list_dir("/l", recursive=True, max_depth=0)
    assert {i.path for i in shallow} == {"/l/adir", "/l/zdir", "/l/b.txt"}


async def test_listing_in_pages_yields_every_entry_once(fs: CallFSClient, app_node: AppNode) -> None:
    for i in range(7):
        await fs.upload(f"/paged/f{i}.txt", b"x")
    await fs.mkdir("/paged/sub/deeper")
    whole = [i.path for i in await fs.list_dir("/paged", recursive=True)]
    assert len(whole) == 9
    assert [i.path async for i in fs.iter_dir("/paged", recursive=True, page_size=2)] == whole
    assert [i.path for i in await fs.list_dir("/paged", page_size=3)] == [i.path for i in await fs.list_dir("/paged")]
    def listings() -> float:
        assert app_node.node is not None
        metric = app_node.node.metrics.file_operations
        return sum(s.value for m in metric.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels["operation"] == "list")

    before = listings()
    assert [i.path async for i in fs.iter_dir("/paged", recursive=True, page_size=4)] == whole
    assert listings() - before == 3  # 4 + 4 + 1 entries


async def test_root_listing_and_stat(fs: CallFSClient) -> None:
    await fs.upload("/top.txt", b"t")
    assert "top.txt" in [i.name for i in await fs.list_dir("/")]
    root = await fs.stat("/")
    assert (root.path, root.type, root.mode) == ("/", "directory", 0o1777)


async def test_stat_reports_the_headers_of_a_file(fs: CallFSClient, app_node: AppNode) -> None:
    await fs.upload("/st.txt", b"12345")
    info = await fs.stat("/st.txt")
    assert isinstance(info, FileInfo)
    assert (info.size, info.mode, info.owner) == (5, 0o644, "api-user-0")
    assert info.etag and info.mtime.tzinfo is not None


async def test_stat_of_a_missing_path_raises_not_found(fs: CallFSClient) -> None:
    with pytest.raises(errors.NotFound, match="/missing"):
        await fs.stat("/missing")
    assert await fs.exists("/missing") is False


async def test_listing_a_file_raises_not_a_directory(fs: CallFSClient) -> None:
    await fs.upload("/plain.txt", b"x")
    with pytest.raises(errors.NotADirectory):
        await fs.list_dir("/plain.txt")


async def test_mkdir_is_idempotent_unless_asked_otherwise(fs: CallFSClient) -> None:
    assert await fs.mkdir("/m/a/b") is True
    assert await fs.mkdir("/m/a/b") is False
    with pytest.raises(errors.AlreadyExists):
        await fs.mkdir("/m/a/b", exist_ok=False)
    with pytest.raises(errors.NotFound):
        await fs.mkdir("/m/nope/c", parents=False)
    await fs.upload("/m/file", b"")
    with pytest.raises(errors.AlreadyExists):
        await fs.mkdir("/m/file")


async def test_move_to_a_new_directory_and_rename_in_place(fs: CallFSClient) -> None:
    await fs.upload("/mv/a.txt", b"A")
    assert await fs.move("/mv/a.txt", "/mv/sub/a.txt", create_parents=True) == "/mv/sub/a.txt"
    assert not await fs.exists("/mv/a.txt")
    assert await fs.rename("/mv/sub/a.txt", "renamed.txt") == "/mv/sub/renamed.txt"
    assert await fs.read("/mv/sub/renamed.txt") == b"A"


async def test_move_onto_an_existing_file_needs_overwrite(fs: CallFSClient) -> None:
    await fs.upload("/o/src", b"new")
    await fs.upload("/o/dst", b"old")
    with pytest.raises(errors.AlreadyExists):
        await fs.move("/o/src", "/o/dst")
    await fs.move("/o/src", "/o/dst", overwrite=True)
    assert await fs.read("/o/dst") == b"new"


async def test_moving_a_directory_moves_its_subtree(fs: CallFSClient) -> None:
    await fs.upload("/tree/x/y/z.txt", b"z")
    await fs.move("/tree/x", "/moved")
    assert await fs.read("/moved/y/z.txt") == b"z"
    with pytest.raises(errors.NotFound):
        await fs.stat("/tree/x/y/z.txt")


async def test_move_of_a_missing_source_raises_not_found(fs: CallFSClient) -> None:
    with pytest.raises(errors.NotFound):
        await fs.move("/ghost", "/elsewhere")


async def test_chmod_and_chown_show_in_stat(fs: CallFSClient, app_node: AppNode) -> None:
    await fs.upload("/perm.txt", b"p")
    await fs.chmod("/perm.txt", 0o600)
    assert (await fs.stat("/perm.txt")).mode == 0o600
    with pytest.raises(errors.PermissionDenied):
        await fs.chown("/perm.txt", "alice")  # only root gives a file away
    async with CallFSClient(app_node.url, app_node.key_for("root")) as root:
        await root.chown("/perm.txt", "alice")
    assert (await fs.stat("/perm.txt")).owner == "alice"
    with pytest.raises(errors.PermissionDenied):
        await fs.chmod("/perm.txt", 0o644)  # no longer the owner
    async with CallFSClient(app_node.url, app_node.key_for("alice")) as alice:
        await alice.chmod("/perm.txt", 0o640)
    assert (await fs.stat("/perm.txt")).mode == 0o640


async def test_delete_of_a_non_empty_directory_needs_recursive(fs: CallFSClient) -> None:
    await fs.upload("/del/a/b/c.txt", b"c")
    await fs.upload("/del/d.txt", b"d")
    with pytest.raises(errors.DirectoryNotEmpty):
        await fs.delete("/del")
    await fs.delete("/del", recursive=True)
    assert not await fs.exists("/del")
    assert not await fs.exists("/del/a/b/c.txt")


async def test_delete_of_a_missing_path_raises_not_found(fs: CallFSClient) -> None:
    with pytest.raises(errors.NotFound):
        await fs.delete("/never")


# ---- links, system, auth --------------------------------------------------------------------------------


async def test_link_downloads_once_with_a_plain_get(fs: CallFSClient) -> None:
    data = os.urandom(300_000)
    await fs.upload("/share/report.pdf", data)
    link = await fs.create_link("/share/report.pdf", 600)
    assert set(link) >= {"url", "token", "expires"}
    async with aiohttp.ClientSession() as plain:
        async with plain.get(link["url"]) as resp:
            assert resp.status == 200
            assert "report.pdf" in resp.headers["Content-Disposition"]
            assert await resp.read() == data
        async with plain.get(link["url"]) as again:
            assert again.status == 410


async def test_link_for_a_directory_or_bad_expiry_is_a_bad_request(fs: CallFSClient) -> None:
    await fs.mkdir("/ldir")
    with pytest.raises(errors.BadRequest):
        await fs.create_link("/ldir", 60)
    await fs.upload("/lfile", b"x")
    with pytest.raises(errors.BadRequest):
        await fs.create_link("/lfile", 0)
    with pytest.raises(errors.NotFound):
        await fs.create_link("/lmissing", 60)


async def test_health_ready_and_metrics(fs: CallFSClient) -> None:
    assert (await fs.health())["status"] == "ok"
    assert await fs.ready() is True
    await fs.upload("/metrics-probe", b"m")
    assert "# TYPE" in await fs.metrics()


async def test_wrong_key_raises_authentication_failed(app_node: AppNode) -> None:
    async with CallFSClient(app_node.url, "wrong-key-wrong-key-wrong") as bad:
        with pytest.raises(errors.AuthenticationFailed):
            await bad.stat("/")
        with pytest.raises(errors.AuthenticationFailed, match="API key"):
            await bad.list_dir("/")
        with pytest.raises(errors.AuthenticationFailed):
            await bad.upload("/x", b"x", overwrite=False)


async def test_unreachable_server_raises_callfs_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with CallFSClient(url, "k" * 20, retries=1, timeout=2) as fs:
        with pytest.raises(CallFSUnavailable) as caught:
            await fs.stat("/")
        assert isinstance(caught.value, ConnectionError)
        assert await fs.ready() is False


# ---- fault injection: retries and resumption -------------------------------------------------------------


async def _serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> tuple[web.AppRunner, str]:
    app = web.Application(client_max_size=64 * MiB)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_get_is_retried_after_503_and_post_is_not() -> None:
    seen: list[str] = []

    async def flaky(request: web.Request) -> web.StreamResponse:
        seen.append(request.method)
        if len(seen) <= 2:
            return web.json_response({"code": "SERVICE_UNAVAILABLE", "message": "busy"}, status=503)
        return web.json_response({"status": "ok"})

    runner, url = await _serve(flaky)
    try:
        async with CallFSClient(url, "k" * 20, retries=3) as fs:
            assert await fs.health() == {"status": "ok"}
            assert seen == ["GET", "GET", "GET"]
            seen.clear()
            with pytest.raises(errors.ServiceUnavailable, match="busy"):
                await fs.mkdir("/x")
            assert seen == ["POST"]
    finally:
        await runner.cleanup()


async def test_a_broken_download_stream_resumes_at_the_same_version() -> None:
    data = os.urandom(600_000)
    requests: list[tuple[str | None, str | None]] = []

    async def breaks_once(request: web.Request) -> web.StreamResponse:
        requests.append((request.headers.get("Range"), request.headers.get("If-Match")))
        headers = {"X-CallFS-Type": "file", "ETag": '"v1"'}
        if len(requests) == 1:
            response = web.StreamResponse(status=200, headers=headers)
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data[:250_000])
            assert request.transport is not None
            request.transport.close()  # the connection breaks mid-body
            return response
        start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
        return web.Response(
            status=206,
            body=data[start:],
            headers={**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
        )

    runner, url = await _serve(breaks_once)
    try:
        async with CallFSClient(url, "k" * 20, retries=2) as fs:
            assert await fs.read("/f") == data
    finally:
        await runner.cleanup()
    assert requests[0] == (None, None)
    assert requests[1][1] == '"v1"'
    resumed_at = int(requests[1][0].removeprefix("bytes=").rstrip("-"))  # type: ignore[union-attr]
    assert 0 < resumed_at <= 250_000


async def test_put_of_a_replayable_source_is_retried_and_a_stream_is_not(tmp_path: Path) -> None:
    bodies: list[bytes] = []

    async def busy_once(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.read())
        if len(bodies) == 1:
            return web.json_response({"code": "LOCK_TIMEOUT", "message": "lock busy"}, status=503)
        return web.json_response({"path": "/p"}, status=201)

    local = tmp_path / "up.bin"
    local.write_bytes(os.urandom(3 * MiB))
    runner, url = await _serve(busy_once)
    try:
        async with CallFSClient(url, "k" * 20, retries=2) as fs:
            progress: list[int] = []
            assert await fs.upload("/p", local, progress=progress.append) is True
            assert bodies == [local.read_bytes(), local.read_bytes()]
            assert sum(progress) == 3 * MiB  # the replay is not counted twice

            bodies.clear()

            async def stream() -> AsyncIterator[bytes]:
                yield b"once"

            with pytest.raises(errors.LockTimeout):
                await fs.upload("/p", stream())
            assert bodies == [b"once"]
    finally:
        await runner.cleanup()


# ---- quotas ---------------------------------------------------------------------------------------------


async def test_quota_methods_set_read_and_remove_limits(app_node: AppNode) -> None:
    async with CallFSClient(app_node.url, app_node.key_for("root")) as root, \
            CallFSClient(app_node.url, app_node.api_key) as user:
        await root.mkdir("/volumes/pv-1")
        quota = await root.set_quota("/volumes/pv-1", bytes_limit=1000)
        assert (quota.bytes_limit, quota.inodes_limit, quota.bytes_used) == (1000, None, 0)
        await root.upload("/volumes/pv-1/f", b"x" * 600)
        assert (await user.get_quota("/volumes/pv-1")).bytes_used == 600
        with pytest.raises(errors.QuotaExceeded):
            await root.upload("/volumes/pv-1/g", b"y" * 500)
        with pytest.raises(errors.PermissionDenied):
            await user.set_quota("/volumes/pv-1", bytes_limit=5000)
        with pytest.raises(errors.BadRequest):
            await root.set_quota("/volumes/pv-1")
        assert (await root.set_quota("/volumes/pv-1", bytes_limit=5000)).bytes_used == 600
        await root.delete_quota("/volumes/pv-1")
        with pytest.raises(errors.NotFound):
            await root.get_quota("/volumes/pv-1")
        with pytest.raises(errors.NotFound):
            await root.delete_quota("/volumes/pv-1")
