"""Concurrent requests on one path or one subtree: competing moves, writes racing a rename of their directory,
writers of one path on different cluster nodes, and single-use links whose bytes sit on a node that is down.

Each race runs many requests at once, for a few rounds, and checks the outcome every client could expect from
some serial order: one winner and clean refusals, never a 500, never an entry left without its directory.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp

from support.app_node import AppNode
from support.http import session
from support.node import NodeProcess
from support.waiting import wait_for_async

ROUNDS = 3


async def _status(response: aiohttp.ClientResponse) -> tuple[int, str | None]:
    """``(status, code)``: the error code of a JSON error body, ``None`` for a success."""
    if response.status < 300:
        await response.read()
        return response.status, None
    body = await response.json(content_type=None)
    return response.status, body.get("code") if isinstance(body, dict) else None


async def _tree(http: aiohttp.ClientSession, top: str) -> list[dict[str, Any]]:
    async with http.get(f"/v1/directories{top}", params={"recursive": "true"}) as response:
        assert response.status == 200, await response.text()
        items: list[dict[str, Any]] = (await response.json())["items"]
    return items


def _orphans(top: str, items: list[dict[str, Any]]) -> list[str]:
    """The entries below ``top`` whose parent directory is not in the listing: entries without a parent."""
    directories = {top} | {item["path"] for item in items if item["type"] == "directory"}
    return [item["path"] for item in items if item["path"].rsplit("/", 1)[0] not in directories]


async def _move_all_to_one_destination(sessions: list[aiohttp.ClientSession], top: str, count: int) -> None:
    """``count`` different files moved at once to one destination: one 200, the rest 409, nothing lost."""
    first = sessions[0]
    for i in range(count):
        async with first.put(f"/v1/files{top}/src{i}", data=f"source {i}".encode()) as response:
            assert response.status == 201

    async def move(i: int) -> tuple[int, str | None]:
        http = sessions[i % len(sessions)]
        async with http.patch(f"/v1/files{top}/src{i}", json={"destination": f"{top}/dst"}) as response:
            return await _status(response)

    results = await asyncio.gather(*(move(i) for i in range(count)))
    assert [status for status, _ in results].count(200) == 1, results
    assert sorted(results).count((409, "FILE_ALREADY_EXISTS")) == count - 1, results
    names = sorted(item["name"] for item in await _tree(first, top))
    assert len(names) == count and "dst" in names, names
    winner = next(i for i, (status, _) in enumerate(results) if status == 200)
    async with first.get(f"/v1/files{top}/dst") as response:
        assert await response.read() == f"source {winner}".encode()


async def test_concurrent_moves_to_one_destination_have_one_winner(api_node: AppNode) -> None:
    async with session(api_node) as http:
        for round_ in range(ROUNDS):
            await _move_all_to_one_destination([http], f"/moves{round_}", 10)


async def test_concurrent_moves_to_one_destination_across_a_cluster(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    nodes: list[NodeProcess] = cluster_factory(3)
    sessions = [aiohttp.ClientSession(n.url, headers={"Authorization": f"Bearer {n.api_key}"}) for n in nodes]
    try:
        for round_ in range(ROUNDS):
            await _move_all_to_one_destination(sessions, f"/moves{round_}", 30)
    finally:
        for http in sessions:
            await http.close()


async def test_writes_racing_a_rename_of_their_directory_leave_no_orphan(api_node: AppNode) -> None:
    writers = 30
    async with session(api_node) as http:
        for round_ in range(ROUNDS):
            top = f"/race{round_}"
            async with http.post(f"/v1/files{top}/a/deep/") as response:
                assert response.status == 201

            async def write(i: int, top: str = top) -> tuple[int, str | None]:
                path = f"{top}/a/file{i}" if i % 2 else f"{top}/a/deep/file{i}"
                async with http.put(f"/v1/files{path}", data=b"x" * i) as response:
                    return await _status(response)

            async def rename(top: str = top) -> list[tuple[int, str | None]]:
                outcomes = []
                for hop in range(6):
                    src, dst = (f"{top}/a", f"{top}/b") if hop % 2 == 0 else (f"{top}/b", f"{top}/a")
                    async with http.patch(f"/v1/files{src}", json={"destination": dst}) as response:
                        outcomes.append(await _status(response))
                return outcomes

            written, renamed = await asyncio.gather(
                asyncio.gather(*(write(i) for i in range(writers))), rename()
            )
            assert all(status in (200, 201) for status, _ in written), written
            assert all(status in (200, 404, 409) for status, _ in renamed), renamed
            items = await _tree(http, top)
            assert _orphans(top, items) == [], items
            # every file written is listed (under one name of its directory or the other)
            files = [item["name"] for item in items if item["type"] == "file"]
            assert sorted(files) == sorted(f"file{i}" for i in range(writers)), items
            # the names the directory had are usable again as move targets
            taken = {item["path"] for item in items}
            for name in ("a", "b"):
                if f"{top}/{name}" in taken:
                    continue
                async with http.post(f"/v1/files{top}/fresh/") as response:
                    assert response.status == 201
                async with http.patch(f"/v1/files{top}/fresh", json={"destination": f"{top}/{name}"}) as response:
                    assert response.status == 200, await response.text()


async def test_concurrent_writers_of_one_path_on_different_nodes_never_loop(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    """Writers that found no file write where they are, one after the other; each moves the bytes to its node.
    Writers arriving meanwhile are forwarded to the owner they saw, which may no longer hold the bytes. Whole
    writes are kept as one blob on their node here (the layout whose bytes only their node serves)."""
    nodes: list[NodeProcess] = cluster_factory(3, backend={"whole_files_in_blocks": False})
    sessions = [aiohttp.ClientSession(n.url, headers={"Authorization": f"Bearer {n.api_key}"}) for n in nodes]
    count = 30
    payloads = {bytes([i]) * 200_000 for i in range(2 * count)}
    try:
        for round_ in range(ROUNDS):
            path = f"/v1/files/hot{round_}.bin"

            async def put(i: int, path: str = path) -> tuple[int, str | None]:
                async with sessions[i % 3].put(path, data=bytes([i]) * 200_000) as response:
                    return await _status(response)

            async def get(i: int, path: str = path) -> tuple[int, str | None]:
                async with sessions[i % 3].get(path) as response:
                    if response.status == 200:
                        assert await response.read() in payloads
                        return 200, None
                    return await _status(response)

            async def exists(path: str = path) -> bool:
                async with sessions[0].head(path) as response:
                    return response.status == 200

            first = asyncio.gather(*(put(i) for i in range(count)))
            await wait_for_async(exists, 10, f"{path} to be created", 0.01)
            later = asyncio.gather(*(put(i) for i in range(count, 2 * count)), *(get(i) for i in range(count)))
            written, (*rewritten_and_read,) = await asyncio.gather(first, later)
            rewritten, read = rewritten_and_read[:count], rewritten_and_read[count:]
            statuses = [status for status, _ in [*written, *rewritten]]
            assert statuses.count(201) == 1 and statuses.count(200) == 2 * count - 1, Counter([*written, *rewritten])
            assert all(status == 200 for status, _ in read), Counter(read)
            contents = set()
            for http in sessions:
                async with http.get(path) as response:
                    assert response.status == 200
                    contents.add(await response.read())
            assert len(contents) == 1 and contents <= payloads
    finally:
        for http in sessions:
            await http.close()


async def test_a_link_to_bytes_on_a_node_that_is_down_is_not_used_up(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, b, c = cluster_factory(3, backend={"whole_files_in_blocks": False})  # one blob, on node-0 alone
    async with session(a) as http, http.put("/v1/files/kept.txt", data=b"kept bytes") as response:
        assert response.status == 201
    async with session(b) as http, http.post("/v1/links/generate", json={"path": "/kept.txt",
                                                                         "expiry_seconds": 600}) as response:
        token = (await response.json())["token"]
    a.kill()
    async with aiohttp.ClientSession(c.url) as anonymous:
        for _ in range(2):
            async with anonymous.get(f"/download/{token}") as response:
                assert response.status in (502, 503), await response.text()
    a.start()

    async def a_is_up() -> bool:
        async with session(c) as http, http.get("/v1/cluster/nodes") as response:
            states = {n["instance_id"]: n["state"] for n in (await response.json())["nodes"]}
        return states.get("node-0") == "up"

    await wait_for_async(a_is_up, 10, "node-0 seen up again by the third node", 0.1)
    async with aiohttp.ClientSession(c.url) as anonymous:
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 200
            assert await response.read() == b"kept bytes"
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 410
            assert (await response.json())["code"] == "LINK_EXPIRED"


async def test_concurrent_downloads_of_a_link_on_another_node_stream_once(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_factory(2)
    async with session(a) as http, http.put("/v1/files/once.bin", data=b"o" * 100_000) as response:
        assert response.status == 201
    for _ in range(ROUNDS):
        async with session(b) as http, http.post("/v1/links/generate", json={"path": "/once.bin",
                                                                             "expiry_seconds": 600}) as response:
            token = (await response.json())["token"]
        async with aiohttp.ClientSession(b.url) as anonymous:

            async def download(anonymous: aiohttp.ClientSession = anonymous, token: str = token) -> int:
                async with anonymous.get(f"/download/{token}") as response:
                    if response.status == 200:
                        assert await response.read() == b"o" * 100_000
                    return response.status

            statuses = await asyncio.gather(*(download() for _ in range(10)))
        assert sorted(statuses) == [200] + [410] * 9, statuses
