"""Partial writes in a cluster of two nodes sharing PostgreSQL and Redis: a range write or a resize sent to a
node that does not hold the file's bytes is forwarded to the one that does, and every node reads the result."""

from __future__ import annotations

from support.http import session


async def test_range_writes_and_resizes_are_forwarded_to_the_owner(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_factory(2)
    async with session(a) as on_a, session(b) as on_b:
        async with on_a.put("/v1/files/common/log.txt", data=b"line 1\n") as response:
            assert response.status == 201
        headers = {"Content-Range": "bytes 7-13/*"}
        async with on_b.put("/v1/files/common/log.txt", data=b"line 2\n", headers=headers) as response:
            assert response.status == 200, await response.text()
            etag = response.headers["ETag"]
        async with on_b.patch("/v1/files/common/log.txt", json={"size": 16}, headers={"If-Match": etag}) as response:
            assert response.status == 200, await response.text()
        for http in (on_a, on_b):
            async with http.get("/v1/files/common/log.txt") as response:
                assert await response.read() == b"line 1\nline 2\n\0\0"
            async with http.head("/v1/files/common/log.txt") as response:
                assert response.headers["X-CallFS-Instance-ID"] == "node-0"
        stale = {"Content-Range": "bytes 0-0/*", "If-Match": etag}
        async with on_b.put("/v1/files/common/log.txt", data=b"X", headers=stale) as response:
            assert response.status == 412
