"""The HTTP/3 listener (``server.http3_listen_addr``): a real HTTP/3 client (aioquic) on loopback against an
in-process node serving TLS, relayed into the same application as TCP."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent

from callfs.config import ConfigError, load_config
from support.app_node import AppNode
from support.node import make_certificate
from support.ports import free_port


class H3Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def json(self) -> object:
        return json.loads(self.body)


class H3Client(QuicConnectionProtocol):
    """A minimal HTTP/3 client, as aioquic's examples/http3_client.py."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.h3 = H3Connection(self._quic)
        self.responses: dict[int, H3Response] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            self.h3_event(h3_event)

    def h3_event(self, event: H3Event) -> None:
        if isinstance(event, (HeadersReceived, DataReceived)):
            response = self.responses.get(event.stream_id)
            if response is None:
                return
            if isinstance(event, HeadersReceived):
                for name, value in event.headers:
                    if name == b":status":
                        response.status = int(value)
                    else:
                        response.headers[name.decode()] = value.decode()
            else:
                response.body += event.data
            if event.stream_ended and not response.done.done():
                response.done.set_result(None)

    async def request(self, method: str, authority: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes | None = None, chunk: int = 256 * 1024) -> H3Response:
        stream_id = self._quic.get_next_available_stream_id()
        response = self.responses[stream_id] = H3Response()
        head = [(b":method", method.encode()), (b":scheme", b"https"), (b":authority", authority.encode()),
                (b":path", path.encode())]
        head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if body is not None:
            head.append((b"content-length", str(len(body)).encode()))
        self.h3.send_headers(stream_id, head, end_stream=body is None)
        self.transmit()
        if body is not None:
            view = memoryview(body)
            for start in range(0, len(body), chunk):
                piece = bytes(view[start:start + chunk])
                self.h3.send_data(stream_id, piece, end_stream=start + chunk >= len(body))
                self.transmit()
                await asyncio.sleep(0)
            if not body:
                self.h3.send_data(stream_id, b"", end_stream=True)
                self.transmit()
        await asyncio.wait_for(response.done, 60)
        return response


@pytest.fixture
def h3_node(tmp_path: Path, app_node_factory: Callable[..., AppNode]) -> tuple[AppNode, int]:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    node = app_node_factory(server={"cert_file": str(cert), "key_file": str(key),
                                    "http3_listen_addr": f"127.0.0.1:{port}"})
    return node, port


def _client_config() -> QuicConfiguration:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    configuration.verify_mode = ssl.CERT_NONE
    return configuration


async def test_http3_serves_the_api(h3_node: tuple[AppNode, int]) -> None:
    node, port = h3_node
    authority = f"127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {node.api_key}"}
    data = os.urandom(5 * 1024 * 1024 + 123)
    async with connect("127.0.0.1", port, configuration=_client_config(), create_protocol=H3Client) as client:
        assert isinstance(client, H3Client)
        health = await client.request("GET", authority, "/health")
        assert health.status == 200, health.body
        assert "alt-svc" not in health.headers

        refused = await client.request("GET", authority, "/v1/files/nothing")
        assert refused.status == 401
        assert refused.json()["code"] == "AUTHENTICATION_FAILED"  # type: ignore[index]

        put = await client.request("PUT", authority, "/v1/files/big.bin", auth, body=data)
        assert put.status in (200, 201), put.body

        got = await client.request("GET", authority, "/v1/files/big.bin", auth)
        assert got.status == 200
        assert bytes(got.body) == data

        missing = await client.request("GET", authority, "/v1/files/missing.bin", auth)
        assert missing.status == 404
        assert missing.headers["content-type"].startswith("application/json")
        assert missing.json()["code"] == "FILE_NOT_FOUND"  # type: ignore[index]

        # Concurrent streams on one connection.
        many = await asyncio.gather(*(client.request("GET", authority, "/health") for _ in range(8)))
        assert all(r.status == 200 for r in many)


async def test_tcp_responses_advertise_http3(h3_node: tuple[AppNode, int]) -> None:
    node, port = h3_node
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession() as session, session.get(f"{node.url}/health", ssl=context) as response:
        assert response.status == 200
        assert response.headers["Alt-Svc"].startswith(f'h3=":{port}"')


async def test_client_header_is_not_trusted_over_tcp(h3_node: tuple[AppNode, int]) -> None:
    node, _ = h3_node
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession() as session, session.get(
        f"{node.url}/health", ssl=context, headers={"X-CallFS-HTTP3-Client": "10.9.9.9:1"}
    ) as response:
        assert response.status == 200
        assert "Alt-Svc" in response.headers  # served as a TCP request, not as a relayed one


def test_http3_without_tls_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http3_listen_addr needs TLS"):
        load_config(None, {"CALLFS_SERVER__HTTP3_LISTEN_ADDR": "127.0.0.1:8443",
                           "CALLFS_DATA_DIR": str(tmp_path)})
