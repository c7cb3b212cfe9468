"""Hostile input that once made a node answer 500: each must be a 4xx with a JSON code, or be ignored as HTTP says.

Dates outside what a datetime holds, numbers of thousands of digits, JSON nested tens of thousands deep, quota
limits past the stores' 64-bit counters, and digits of other scripts — on both metadata stores.
"""

from __future__ import annotations

import secrets

import aiohttp
import pytest

from support.app_node import AppNode
from support.http import session

HUGE_DIGITS = "9" * 4000
"""Near Python's 4,300-digit limit for converting text to int; two of them still fit aiohttp's 8 KiB header."""

FAR_DATES = [
    "Sun, 06 Nov 99999999999999999999 08:49:37 GMT",
    "Sat, 01 Jan 99999 00:00:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 -2359",
]


async def put(http: aiohttp.ClientSession, path: str, body: bytes = b"hello") -> None:
    async with http.put(f"/v1/files/{path}", data=body) as response:
        assert response.status in (200, 201), await response.text()


async def assert_json_4xx(response: aiohttp.ClientResponse, status: int, code: str = "BAD_REQUEST") -> None:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    assert (await response.json())["code"] == code


@pytest.mark.parametrize("date", FAR_DATES)
@pytest.mark.parametrize("header", ["If-Modified-Since", "If-Unmodified-Since", "If-Range"])
async def test_out_of_range_http_dates_are_ignored(api_node: AppNode, header: str, date: str) -> None:
    """RFC 9110 §13.1.3/§13.1.4/§13.1.5: a date that cannot be parsed is ignored, so the request is served."""
    async with session(api_node) as http:
        await put(http, "d/a.txt")
        async with http.get("/v1/files/d/a.txt", headers={header: date, "Range": "bytes=0-1"}) as response:
            assert response.status in (200, 206), await response.text()
        async with http.head("/v1/files/d/a.txt", headers={header: date}) as response:
            assert response.status == 200
        async with http.put("/v1/files/d/a.txt", data=b"new", headers={header: date}) as response:
            assert response.status == 200, await response.text()


@pytest.mark.parametrize("spec", [f"bytes={HUGE_DIGITS}-", f"bytes=0-{HUGE_DIGITS}", f"bytes=-{HUGE_DIGITS}",
                                  f"bytes={HUGE_DIGITS}-{HUGE_DIGITS}"])
async def test_range_numbers_of_thousands_of_digits(api_node: AppNode, spec: str) -> None:
    async with session(api_node) as http:
        await put(http, "r.txt")
        async with http.get("/v1/files/r.txt", headers={"Range": spec}) as response:
            if spec.startswith(f"bytes={HUGE_DIGITS}"):
                await assert_json_4xx(response, 416, "RANGE_NOT_SATISFIABLE")
                assert len(await response.read()) < 500, "the message must not echo the number"
                assert response.headers["Content-Range"] == "bytes */5"
            else:
                assert response.status == 206
                assert await response.read() == b"hello"


@pytest.mark.parametrize("value", [HUGE_DIGITS * 2, "١٢", "²", "-1", "1001", "00001001"])
async def test_bad_max_depth_is_400(api_node: AppNode, value: str) -> None:
    async with session(api_node) as http:
        await put(http, "t/x.txt")
        async with http.get("/v1/directories/t", params={"recursive": "true", "max_depth": value}) as response:
            await assert_json_4xx(response, 400)


async def test_max_depth_with_leading_zeros_is_read(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await put(http, "t/u/x.txt")
        async with http.get("/v1/directories/t", params={"recursive": "true", "max_depth": "0001"}) as response:
            assert response.status == 200
            assert (await response.json())["max_depth"] == 1


# Each below the 64 KiB JSON body limit, so that the parser, not the size check, meets it.
DEEP_ARRAY = b"[" * 30_000 + b"]" * 30_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
LONG_INTEGER = b'{"bytes_limit": ' + b"9" * 60_000 + b"}"


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT, LONG_INTEGER],
                         ids=["deep-array", "deep-object", "60000-digits"])
@pytest.mark.parametrize("target", ["patch", "link", "quota"])
async def test_pathological_json_bodies_are_400(api_node: AppNode, body: bytes, target: str) -> None:
    async with session(api_node, "root") as http:
        await put(http, "j/f.txt")
        method, url = {"patch": ("PATCH", "/v1/files/j/f.txt"), "link": ("POST", "/v1/links/generate"),
                       "quota": ("PUT", "/v1/quotas/j")}[target]
        async with http.request(method, url, data=body, headers={"Content-Type": "application/json"}) as response:
            await assert_json_4xx(response, 400)
        async with http.get("/v1/files/j/f.txt") as response:
            assert await response.read() == b"hello"


@pytest.mark.parametrize("limit", [1 << 63, (1 << 64) + 1, 10**30])
@pytest.mark.parametrize("field", ["bytes_limit", "inodes_limit"])
async def test_quota_limits_past_64_bits_are_400(api_node: AppNode, field: str, limit: int) -> None:
    async with session(api_node, "root") as http:
        await put(http, "q/f.txt")
        async with http.put("/v1/quotas/q", json={field: limit}) as response:
            await assert_json_4xx(response, 400)
        async with http.get("/v1/quotas/q") as response:
            assert response.status == 404, "a refused quota must not be stored"
        async with http.put("/v1/quotas/q", json={field: (1 << 63) - 1}) as response:
            assert response.status == 201, await response.text()
            assert (await response.json())[field] == (1 << 63) - 1


async def test_a_path_longer_than_posix_allows_is_path_too_long_and_up_to_it_works_on_every_store(
    api_node: AppNode,
) -> None:
    """Up to 4096 bytes a path works on every store (no index holds a whole path); longer, it is the client's
    mistake: 400 and nothing written, never a 500."""
    deep = "/".join(secrets.token_urlsafe(188)[:250] for _ in range(16))  # 4,015 bytes that do not compress
    async with session(api_node, "alice") as alice:
        async with alice.put(f"/v1/files/{deep}/f", data=b"x") as response:
            assert response.status == 201, await response.text()
        async with alice.get(f"/v1/files/{deep}/f") as response:
            assert await response.read() == b"x"
        async with alice.patch(f"/v1/files/{deep.split('/')[0]}", json={"destination": "/moved"}) as response:
            assert response.status == 200, await response.text()
        async with alice.get("/v1/files/moved/" + deep.split("/", 1)[1] + "/f") as response:
            assert await response.read() == b"x"
        async with alice.put("/v1/files/" + "/".join(["e" * 250] * 17), data=b"x") as response:
            await assert_json_4xx(response, 400, "PATH_TOO_LONG")
