"""WebSocket transfers (``GET /v1/files/ws/{path}?mode=download|upload``) on both metadata stores: byte-exact
round trips, refusals before and after the upgrade, and uploads that end early leaving the old content."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

import aiohttp
import pytest

from callfs.client import CallFSClient
from callfs.errors import PermissionDenied, QuotaExceeded
from support.app_node import AppNode
from support.http import session

MiB = 1024 * 1024


async def _read(response_cm: Any) -> tuple[int, bytes]:
    async with response_cm as response:
        return int(response.status), await response.read()


async def _upload_frames(ws: aiohttp.ClientWebSocketResponse, data: bytes, frame: int = MiB) -> None:
    for start in range(0, len(data), frame):
        await ws.send_bytes(data[start : start + frame])


async def _result(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=30)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


async def test_raw_protocol_round_trip_is_byte_exact(api_node: AppNode) -> None:
    data = os.urandom(5 * MiB + 321)
    async with session(api_node, "alice") as http:
        async with http.ws_connect("/v1/files/ws/wsdir/big.bin?mode=upload") as ws:
            await _upload_frames(ws, data, frame=MiB // 2)
            await ws.send_str("end")
            result = await _result(ws)
            assert result["ok"] is True and result["created"] is True and result["status"] == 201
            assert result["size"] == len(data) and result["path"] == "/wsdir/big.bin"
            assert result["owner"] == "alice"
            closing = await ws.receive(timeout=30)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000
        status, body = await _read(http.get("/v1/files/wsdir/big.bin"))
        assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()

        received = bytearray()
        async with http.ws_connect("/v1/files/ws/wsdir/big.bin") as ws:  # mode defaults to download
            assert ws._response.headers["X-CallFS-Size"] == str(len(data))
            async for msg in ws:
                assert msg.type == aiohttp.WSMsgType.BINARY
                assert len(msg.data) <= MiB
                received += msg.data
            assert ws.close_code == 1000
        assert bytes(received) == data

        async with http.ws_connect("/v1/files/ws/wsdir/big.bin?mode=upload") as ws:
            await ws.send_bytes(b"short")
            await ws.send_str("end")
            result = await _result(ws)
            assert result["created"] is False and result["status"] == 200 and result["size"] == 5


async def test_client_library_round_trip(api_node: AppNode, tmp_path: Any) -> None:
    data = os.urandom(3 * MiB + 7)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    async with CallFSClient(api_node.url, api_node.key_for("alice")) as fs:
        assert await fs.upload_websocket("/lib/file.bin", source) is True
        assert await fs.upload_websocket("/lib/file.bin", source) is False
        assert await fs.download_websocket("/lib/file.bin", tmp_path / "out.bin") == len(data)
        chunks = [c async for c in fs.iter_read_websocket("/lib/file.bin")]
        assert await fs.read("/lib/file.bin") == data
    assert (tmp_path / "out.bin").read_bytes() == data
    assert b"".join(chunks) == data


async def test_quota_exceeded_mid_upload_leaves_nothing(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        assert (await _read(http.post("/v1/files/wsq/")))[0] == 201
        async with http.put("/v1/quotas/wsq", json={"bytes_limit": 2 * MiB}) as response:
            assert response.status == 201
        assert (await _read(http.put("/v1/files/wsq/keep", data=b"old")))[0] == 201
        async with http.ws_connect("/v1/files/ws/wsq/keep?mode=upload") as ws:
            with pytest.raises((ConnectionError, aiohttp.ClientError)):
                for _ in range(8):  # the node refuses after 2 MiB; later sends may fail
                    await ws.send_bytes(b"q" * MiB)
                raise ConnectionError("sent everything")
            error = await _result(ws)
            assert error == {"ok": False, "status": 507, "code": "QUOTA_EXCEEDED", "message": error["message"]}
            closing = await ws.receive(timeout=30)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008
        assert await _read(http.get("/v1/files/wsq/keep")) == (200, b"old")
        async with http.get("/v1/quotas/wsq") as response:
            assert (await response.json())["bytes_used"] == 3
    async with CallFSClient(api_node.url, api_node.key_for("root")) as fs:
        with pytest.raises(QuotaExceeded):
            await fs.upload_websocket("/wsq/other", b"z" * (3 * MiB))
        assert not await fs.exists("/wsq/other")


async def test_declared_size_over_the_quota_is_refused_before_the_upgrade(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        assert (await _read(http.post("/v1/files/wsd/")))[0] == 201
        async with http.put("/v1/quotas/wsd", json={"bytes_limit": 1000}) as response:
            assert response.status == 201
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect("/v1/files/ws/wsd/f?mode=upload&size=5000")
        assert refused.value.status == 507


async def test_permission_denied_is_403_before_the_upgrade(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "api-user-0") as other:
        assert (await _read(alice.put("/v1/files/wsp/doc", data=b"mine")))[0] == 201
        assert (await _read(alice.patch("/v1/files/wsp/doc", json={"mode": "0600"})))[0] == 200
        for mode in ("upload", "download"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await other.ws_connect(f"/v1/files/ws/wsp/doc?mode={mode}")
            assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as missing:
            await alice.ws_connect("/v1/files/ws/wsp/absent")
        assert missing.value.status == 404
        assert await _read(alice.get("/v1/files/wsp/doc")) == (200, b"mine")
    async with CallFSClient(api_node.url, api_node.key_for("api-user-0")) as fs:
        with pytest.raises(PermissionDenied):
            await fs.upload_websocket("/wsp/doc", b"theirs")


async def test_unknown_mode_is_400_and_no_key_is_401(api_node: AppNode) -> None:
    async with session(api_node, "alice") as http:
        assert (await _read(http.put("/v1/files/wsm", data=b"x")))[0] == 201
        with pytest.raises(aiohttp.WSServerHandshakeError) as bad:
            await http.ws_connect("/v1/files/ws/wsm?mode=sideways")
        assert bad.value.status == 400
    async with session(api_node, None) as anonymous:
        with pytest.raises(aiohttp.WSServerHandshakeError) as unauthenticated:
            await anonymous.ws_connect("/v1/files/ws/wsm")
        assert unauthenticated.value.status == 401
        async with anonymous.get("/v1/files/ws/wsm", headers={"Connection": "Upgrade", "Upgrade": "websocket"}) as r:
            assert r.status == 401 and (await r.json())["code"] == "AUTHENTICATION_FAILED"


async def test_a_plain_get_under_ws_reads_the_file(api_node: AppNode) -> None:
    async with session(api_node, "alice") as http:
        assert (await _read(http.put("/v1/files/ws/plain.txt", data=b"plain")))[0] == 201
        assert await _read(http.get("/v1/files/ws/plain.txt")) == (200, b"plain")


async def test_an_upload_closed_early_keeps_the_old_content(api_node: AppNode) -> None:
    async with session(api_node, "alice") as http:
        assert (await _read(http.put("/v1/files/wsi/doc", data=b"original")))[0] == 201
        async with http.ws_connect("/v1/files/ws/wsi/doc?mode=upload") as ws:
            await ws.send_bytes(b"n" * MiB)
            await ws.send_bytes(b"n" * MiB)
            await ws.close()  # before the end message
        ws2 = await http.ws_connect("/v1/files/ws/wsi/doc?mode=upload")
        await ws2.send_bytes(b"m" * MiB)
        ws2._response.connection.transport.abort()  # type: ignore[union-attr]  # the connection breaks
        await ws2.close()
        for _ in range(50):  # the node notices the closes asynchronously; the content must never change
            await asyncio.sleep(0.02)
            assert await _read(http.get("/v1/files/wsi/doc")) == (200, b"original")
        async with http.ws_connect("/v1/files/ws/wsi/doc?mode=upload") as ws:  # the path lock was released
            await ws.send_bytes(b"new")
            await ws.send_str("end")
            assert (await _result(ws))["ok"] is True
        assert await _read(http.get("/v1/files/wsi/doc")) == (200, b"new")


async def test_a_text_message_other_than_end_is_a_policy_violation(api_node: AppNode) -> None:
    async with session(api_node, "alice") as http:
        async with http.ws_connect("/v1/files/ws/wst?mode=upload") as ws:
            await ws.send_bytes(b"abc")
            await ws.send_str("done?")
            error = await _result(ws)
            assert error["ok"] is False and error["code"] == "BAD_REQUEST" and error["status"] == 400
            closing = await ws.receive(timeout=30)
            assert closing.data == 1008
        assert (await _read(http.head("/v1/files/wst")))[0] == 404
