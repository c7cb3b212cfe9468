"""Reading requests: API paths, query flags, JSON bodies and streamed upload bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from callfs.api.conditional import Conditions
from callfs.api.keys import NODE
from callfs.errors import BadRequest, PayloadTooLarge, RequestTimeout
from callfs.paths import RequestPath, canonicalize

UPLOAD_CHUNK_BYTES = 1 << 20


def request_path(request: web.Request, prefix: str) -> RequestPath:
    """The canonical path after ``prefix`` in the raw (still percent-encoded) request path.

    Decoding happens here, once, so ``%2F`` is a separator and ``%00``/invalid UTF-8 are rejected.
    Raises ``BadRequest``.
    """
    raw = request.rel_url.raw_path
    tail = raw[len(prefix) :] if raw.startswith(prefix) else ""
    try:
        decoded = unquote(tail, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadRequest("path is not valid UTF-8") from exc
    return canonicalize(decoded)


def flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter (``true/false/1/0/yes/no``; absent = false). Raises ``BadRequest``."""
    value = request.query.get(name)
    if value is None or value == "":
        return False
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"query parameter {name} must be true or false, not {value!r}")


def conditions(request: web.Request) -> Conditions:
    """The conditional headers of ``request``."""
    h = request.headers
    return Conditions(
        if_match=h.get("If-Match"),
        if_none_match=h.get("If-None-Match"),
        if_modified_since=h.get("If-Modified-Since"),
        if_unmodified_since=h.get("If-Unmodified-Since"),
    )


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (at most ``server.max_json_bytes``).

    Any content type is accepted (``curl -d`` sends form encoding). Raises ``PayloadTooLarge``, ``BadRequest``,
    or ``RequestTimeout`` when the whole body takes longer than ``server.read_timeout`` seconds to arrive.
    """
    limit = request.app[NODE].config.server.max_json_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"JSON body larger than {limit} bytes")
    timeout = request.app[NODE].config.server.read_timeout
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError as exc:
        raise _stalled(timeout) from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("JSON body nested too deeply") from exc
    except ValueError as exc:  # an integer past Python's 4,300-digit conversion limit
        raise BadRequest(f"unreadable JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object")
    return data


def check_body_size(request: web.Request) -> None:
    """Refuse an upload whose declared ``Content-Length`` exceeds ``server.max_body_bytes`` (413)."""
    limit = request.app[NODE].config.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes exceeds the limit of {limit}")


async def body_chunks(request: web.Request, size: int = UPLOAD_CHUNK_BYTES) -> AsyncIterator[bytes]:
    """The request body as a stream of chunks of at most ``size`` bytes (1 MiB), counted in the received-bytes
    metric.

    Raises:
        RequestTimeout: no byte arrived for ``server.read_timeout`` seconds (the client stalled mid-body).
    """
    node = request.app[NODE]
    counter, timeout = node.metrics.bytes_received, node.config.server.read_timeout
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await request.content.read(size)
        except TimeoutError as exc:
            raise _stalled(timeout) from exc
        if not chunk:
            return
        counter.inc(len(chunk))
        yield chunk


def _stalled(timeout: float) -> RequestTimeout:
    return RequestTimeout(f"no request body bytes received for {timeout:g} seconds (server.read_timeout)")


def bool_field(body: dict[str, Any], key: str) -> bool:
    """The boolean ``key`` of a JSON request body (absent: ``False``); raises ``BadRequest`` for another type."""
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false")
    return value


def str_field(body: dict[str, Any], key: str) -> str | None:
    """The string ``key`` of a JSON request body (absent: ``None``); raises ``BadRequest`` for another type."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value
