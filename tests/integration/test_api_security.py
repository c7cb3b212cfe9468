"""Authentication, request IDs, security headers, bad input, body limits, health and metrics."""

from __future__ import annotations

import asyncio
import string
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callfs.engine import SYSTEM_DIRECTORIES
from support.app_node import AppNode
from support.http import session


async def test_missing_wrong_and_bare_keys(app_node: AppNode) -> None:
    async with aiohttp.ClientSession(app_node.url) as http:
        async with http.get("/v1/directories/") as response:
            assert response.status == 401
            assert (await response.json())["code"] == "AUTHENTICATION_FAILED"
        async with http.get("/v1/directories/", headers={"Authorization": "Bearer " + "x" * 32}) as response:
            assert response.status == 401
        async with http.get("/v1/directories/", headers={"Authorization": app_node.api_key}) as response:
            assert response.status == 200
        async with http.get("/metrics") as response:
            assert response.status == 401
        async with http.get("/health") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}
        async with http.get("/ready") as response:
            assert response.status == 200
            assert (await response.json())["checks"]["metadata"] is True


async def test_every_response_has_request_id_and_security_headers(app_node: AppNode) -> None:
    async with session(app_node) as http:
        for method, path in (("GET", "/health"), ("GET", "/v1/files/missing"), ("DELETE", "/nope")):
            async with http.request(method, path) as response:
                assert len(response.headers["X-Request-ID"]) >= 16
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
                assert "default-src 'none'" in response.headers["Content-Security-Policy"]
                assert response.headers["Referrer-Policy"] == "no-referrer"
                for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
                    assert f"{feature}=()" in response.headers["Permissions-Policy"]
                assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
                assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
                assert "Strict-Transport-Security" not in response.headers  # plain HTTP
        async with http.get("/health", headers={"X-Request-ID": "trace-123"}) as response:
            assert response.headers["X-Request-ID"] == "trace-123"
        async with http.get("/health", headers={"X-Request-ID": "bad id\twith spaces"}) as response:
            assert response.headers["X-Request-ID"] != "bad id\twith spaces"


@pytest.mark.parametrize(
    "raw",
    [
        "../../etc/passwd", "a/../../b", "%2e%2e/%2e%2e/etc", "back%5Cslash", "nul%00byte", "ctl%01char",
        "bidi%E2%80%AEtxt.exe", "iso%2Dinvalid%FF", "newline%0Aname",
    ],
)
async def test_bad_paths_are_400_and_nothing_is_written(app_node: AppNode, raw: str) -> None:
    async with aiohttp.ClientSession(app_node.url, headers={"Authorization": f"Bearer {app_node.api_key}"}) as http:
        url = f"{app_node.url}/v1/files/{raw}"
        async with http.put(aiohttp.client.URL(url, encoded=True), data=b"payload") as response:
            assert response.status == 400, (raw, await response.text())
            assert (await response.json())["code"] == "BAD_REQUEST"
        async with http.get("/v1/directories/?recursive=true") as response:
            assert [i["path"] for i in (await response.json())["items"] if i["path"] not in SYSTEM_DIRECTORIES] == []


async def test_wrong_method_is_405_json(app_node: AppNode) -> None:
    async with session(app_node) as http:
        async with http.put("/health") as response:
            assert response.status == 405
            assert (await response.json())["code"] == "METHOD_NOT_ALLOWED"
        async with http.get("/v1/links/generate") as response:
            assert response.status == 405


async def test_oversized_bodies_are_413_and_nothing_is_written(app_node_factory) -> None:  # type: ignore[no-untyped-def]
    node = app_node_factory(server={"max_body_bytes": 1000, "max_json_bytes": 200})
    async with session(node) as http:
        async with http.put("/v1/files/big", data=b"x" * 1001) as response:
            assert response.status == 413
            assert (await response.json())["code"] == "PAYLOAD_TOO_LARGE"

        async def undeclared():  # chunked: no Content-Length to refuse up front
            for _ in range(5):
                yield b"y" * 400

        async with http.put("/v1/files/big2", data=undeclared()) as response:
            assert response.status == 413
        async with http.put("/v1/files/ok", data=b"x" * 1000) as response:
            assert response.status == 201
        async with http.patch("/v1/files/ok", json={"name": "n" * 300}) as response:
            assert response.status == 413
        async with http.get("/v1/directories/") as response:
            items = (await response.json())["items"]
            assert [i["name"] for i in items if i["path"] not in SYSTEM_DIRECTORIES] == ["ok"]
    leftovers = list((node.data_dir / "blobs" / "tmp").iterdir())
    assert leftovers == []


async def test_downloads_carry_the_security_headers_and_stay_downloads(app_node: AppNode) -> None:
    """A file GET and a /download/{token} answer with the bytes and the full header set; the link download is
    an attachment (a browser saves it; CSP ``sandbox`` and CORP ``same-origin`` do not stop a navigation)."""
    async with session(app_node) as http:
        async with http.put("/v1/files/report.pdf", data=b"%PDF-1.4") as response:
            assert response.status == 201
        async with http.get("/v1/files/report.pdf") as response:
            assert await response.read() == b"%PDF-1.4"
            assert "sandbox" in response.headers["Content-Security-Policy"]
            assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
        async with http.post("/v1/links/generate", json={"path": "/report.pdf", "expiry_seconds": 60}) as response:
            token = (await response.json())["token"]
    async with aiohttp.ClientSession(app_node.url) as anonymous, anonymous.get(f"/download/{token}") as response:
        assert response.status == 200
        assert await response.read() == b"%PDF-1.4"
        assert response.headers["Content-Disposition"].startswith("attachment; filename*=UTF-8''report.pdf")
        assert response.headers["Permissions-Policy"].startswith("accelerometer=()")
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"


async def test_json_bodies_are_compact(app_node: AppNode) -> None:
    async with session(app_node) as http:
        async with http.get("/health") as response:
            assert await response.text() == '{"status":"ok"}'
        async with http.get("/v1/files/missing") as response:
            text = await response.text()
            assert text.startswith('{"code":"FILE_NOT_FOUND","message":')
        async with http.put("/v1/files/c.txt", data=b"c") as response:
            assert ", " not in await response.text() and '": ' not in await response.text()


async def test_metrics_are_recorded(app_node: AppNode) -> None:
    async with session(app_node) as http:
        async with http.put("/v1/files/m.bin", data=b"m" * 5000) as response:
            assert response.status == 201
        async with http.get("/v1/files/m.bin") as response:
            await response.read()
        async with http.post("/v1/links/generate", json={"path": "/m.bin", "expiry_seconds": 60}) as response:
            token = (await response.json())["token"]
        async with http.get(f"/download/{token}") as response:
            await response.read()
        async with http.get("/metrics") as response:
            assert response.status == 200
            text = await response.text()
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['callfs_http_requests_total{method="PUT",path="/v1/files/{tail}",status_code="201"}'] == 1
    assert samples["callfs_http_received_bytes_total"] >= 5000
    assert samples["callfs_http_sent_bytes_total"] >= 10000
    assert samples['callfs_lock_wait_seconds_count{result="acquired"}'] >= 1
    assert samples["callfs_links_generated_total"] == 1
    assert samples['callfs_links_consumed_total{result="ok"}'] == 1
    assert samples['callfs_backend_operation_duration_seconds_count{backend="localfs",operation="commit"}'] >= 1
    assert samples['callfs_metadata_operation_duration_seconds_count{operation="write_file"}'] >= 1
    assert any(k.startswith("callfs_http_request_duration_seconds_bucket") for k in samples)


_path_chars = st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
    list("/.\\%\x00\x01\t\u202e\u2066") + list(string.ascii_letters)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.text(_path_chars, min_size=0, max_size=40))
def test_any_path_string_gets_a_clear_answer_never_a_500(app_node: AppNode, raw: str) -> None:
    async def probe() -> list[int]:
        statuses = []
        async with session(app_node) as http:
            url = aiohttp.client.URL(f"{app_node.url}/v1/files/{quote(raw, safe='/')}", encoded=True)
            for method in ("PUT", "GET", "DELETE"):
                async with http.request(method, url, data=b"p" if method == "PUT" else None) as response:
                    body = await response.read()
                    statuses.append(response.status)
                    if response.status >= 400:
                        assert b'"code"' in body
        return statuses

    statuses = asyncio.run(probe())
    assert all(status < 500 for status in statuses), (raw, statuses)
