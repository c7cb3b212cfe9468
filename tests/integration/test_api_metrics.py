"""Prometheus metrics: the CallFS v1 series move for every operation, and the separate metrics listener."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.app_node import AppNode
from support.http import session
from support.ports import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (n, have), value in samples.items() if n == name and wanted <= have)


async def scrape(http: aiohttp.ClientSession) -> Samples:
    async with http.get("/metrics") as response:
        assert response.status == 200
        return parse(await response.text())


async def test_every_v1_series_moves_with_its_operation(app_node: AppNode) -> None:
    async with session(app_node) as http:
        async def moved(action: Callable[[], object], *series: tuple[str, dict[str, str]]) -> None:
            before = await scrape(http)
            await action()  # type: ignore[misc]
            after = await scrape(http)
            for name, labels in series:
                assert total(after, name, **labels) > total(before, name, **labels), (name, labels)

        async def request(method: str, path: str, status: int, **kwargs: object) -> aiohttp.ClientResponse:
            async with http.request(method, path, **kwargs) as response:  # type: ignore[arg-type]
                await response.read()
                assert response.status == status, await response.text()
                return response

        http_series = ("callfs_http_requests_total", {"method": "PUT", "path": "/v1/files/{tail}",
                                                      "status_code": "201"})
        await moved(
            lambda: request("PUT", "/v1/files/m.bin", 201, data=b"m" * 5000),
            http_series,
            ("callfs_http_request_duration_seconds_count", {"method": "PUT", "path": "/v1/files/{tail}"}),
            ("callfs_file_operations_total", {"operation": "create", "backend_type": "localfs"}),
            ("callfs_backend_ops_total", {"backend_type": "localfs", "operation": "commit"}),
            ("callfs_backend_op_duration_seconds_count", {"backend_type": "localfs", "operation": "write"}),
            ("callfs_metadata_db_queries_total", {"operation": "write_file"}),
            ("callfs_metadata_db_query_duration_seconds_count", {"operation": "write_file"}),
            ("callfs_lock_operations_total", {"operation": "acquire", "status": "success"}),
            ("callfs_lock_operations_total", {"operation": "release", "status": "success"}),
            ("callfs_lock_operation_duration_seconds_count", {"operation": "acquire"}),
            ("callfs_lock_operation_duration_seconds_count", {"operation": "release"}),
            # the node's own series for the same events
            ("callfs_backend_operation_duration_seconds_count", {"backend": "localfs", "operation": "commit"}),
            ("callfs_metadata_operation_duration_seconds_count", {"operation": "write_file"}),
            ("callfs_lock_wait_seconds_count", {"result": "acquired"}),
        )
        await moved(
            lambda: request("PUT", "/v1/files/m.bin", 200, data=b"n" * 10),
            ("callfs_file_operations_total", {"operation": "update", "backend_type": "localfs"}),
        )
        await moved(
            lambda: request("GET", "/v1/files/m.bin", 200),
            ("callfs_file_operations_total", {"operation": "read", "backend_type": "localfs"}),
            ("callfs_backend_ops_total", {"backend_type": "localfs", "operation": "open"}),
            ("callfs_http_requests_total", {"method": "GET", "status_code": "200"}),
        )
        await moved(
            lambda: request("HEAD", "/v1/files/m.bin", 200),
            ("callfs_http_requests_total", {"method": "HEAD", "status_code": "200"}),
            ("callfs_metadata_db_queries_total", {"operation": "get"}),
        )
        await moved(
            lambda: request("POST", "/v1/files/dir/", 201),
            ("callfs_file_operations_total", {"operation": "create", "backend_type": "localfs"}),
            ("callfs_metadata_db_queries_total", {"operation": "mkdir"}),
        )
        await moved(
            lambda: request("GET", "/v1/directories/dir/", 200),
            ("callfs_file_operations_total", {"operation": "list", "backend_type": "localfs"}),
            ("callfs_metadata_db_query_duration_seconds_count", {"operation": "list"}),
        )
        await moved(
            lambda: request("PATCH", "/v1/files/m.bin", 200, json={"destination": "/dir/m.bin"}),
            ("callfs_file_operations_total", {"operation": "move", "backend_type": "localfs"}),
            ("callfs_metadata_db_queries_total", {"operation": "move"}),
        )

        async def generate() -> str:
            async with http.post("/v1/links/generate", json={"path": "/dir/m.bin", "expiry_seconds": 60}) as r:
                assert r.status == 201
                token: str = (await r.json())["token"]
                return token

        before = await scrape(http)
        token = await generate()
        after = await scrape(http)
        for name in ("callfs_single_use_link_generations_total", "callfs_links_generated_total"):
            assert total(after, name) == total(before, name) + 1
        await moved(
            lambda: request("GET", f"/download/{token}", 200),
            ("callfs_single_use_link_consumptions_total", {"status": "success"}),
            ("callfs_links_consumed_total", {"result": "ok"}),
        )
        await moved(
            lambda: request("GET", f"/download/{token}", 410),
            ("callfs_single_use_link_consumptions_total", {"status": "invalid"}),
            ("callfs_errors_total", {"component": "http", "error_type": "LINK_EXPIRED"}),
        )
        await moved(
            lambda: request("GET", "/download/" + "x" * 40, 404),
            ("callfs_single_use_link_consumptions_total", {"status": "not_found"}),
        )
        expiring = await generate()
        app_node.clock.advance(120)
        await moved(
            lambda: request("GET", f"/download/{expiring}", 410),
            ("callfs_single_use_link_consumptions_total", {"status": "expired"}),
        )
        await moved(
            lambda: request("DELETE", "/v1/files/dir/m.bin", 204),
            ("callfs_file_operations_total", {"operation": "delete", "backend_type": "localfs"}),
            ("callfs_backend_ops_total", {"backend_type": "localfs", "operation": "delete"}),
            ("callfs_metadata_db_queries_total", {"operation": "delete"}),
        )
        await moved(
            lambda: request("GET", "/v1/files/gone", 404),
            ("callfs_errors_total", {"component": "http", "error_type": "FILE_NOT_FOUND"}),
        )
        final = await scrape(http)
    # No lock is held once every request is answered.
    assert total(final, "callfs_active_locks") == 0
    # Each family the node declares has at least one sample (nothing declared and never recorded).
    families = {family.name for family in text_string_to_metric_families(await _text(app_node))}
    for family in (
        "callfs_http_requests", "callfs_http_request_duration_seconds", "callfs_backend_ops",
        "callfs_backend_op_duration_seconds", "callfs_metadata_db_queries", "callfs_metadata_db_query_duration_seconds",
        "callfs_single_use_link_generations", "callfs_single_use_link_consumptions", "callfs_lock_operations",
        "callfs_lock_operation_duration_seconds", "callfs_active_locks", "callfs_file_operations", "callfs_errors",
    ):
        assert family in families


async def _text(node: AppNode) -> str:
    async with session(node) as http, http.get("/metrics") as response:
        return await response.text()


@pytest.mark.parametrize("open_listener", [False, True])
async def test_metrics_listener(app_node_factory: Callable[..., AppNode], open_listener: bool) -> None:
    port = free_port()
    node = app_node_factory(metrics={"listen_addr": f"127.0.0.1:{port}", "open": open_listener})
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        async with http.get("/metrics") as response:
            if open_listener:
                assert response.status == 200
                assert "callfs_http_requests_total" in await response.text()
            else:
                assert response.status == 401
                assert (await response.json())["code"] == "AUTHENTICATION_FAILED"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        headers = {"Authorization": f"Bearer {node.api_key}"}
        async with http.get("/metrics", headers=headers) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
        async with http.get("/v1/directories/", headers=headers) as response:
            assert response.status == 404  # the listener serves metrics only
    # The API port still serves /metrics, always behind a key.
    async with aiohttp.ClientSession(node.url) as http, http.get("/metrics") as response:
        assert response.status == 401
