"""``/v1/copies``: server-side copies of a file or subtree that share the source's bytes (copy-on-write)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from callfs import paths
from callfs.api import render
from callfs.api.keys import NODE, caller
from callfs.api.requests import bool_field, json_object, str_field
from callfs.errors import BadRequest

ROUTE = "/v1/copies"
_KEYS = {"source", "destination", "recursive", "into", "owner"}


def add_routes(app: web.Application) -> None:
    app.router.add_route("POST", ROUTE, create_copy)


def _absolute(body: dict[str, Any], key: str) -> str:
    value = str_field(body, key)
    if value is None:
        raise BadRequest(f"{key} is required")
    if not value.startswith("/"):
        raise BadRequest(f"{key} must be an absolute path")
    return paths.canonicalize(value).path


async def create_copy(request: web.Request) -> web.StreamResponse:
    """Copy ``source`` to ``destination`` (201): ``{"path", "files", "directories", "bytes"}`` of what was
    created, ``Location`` of the copy."""
    body = await json_object(request)
    unknown = set(body) - _KEYS
    if unknown:
        raise BadRequest(f"unknown fields {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    source, destination = _absolute(body, "source"), _absolute(body, "destination")
    result = await request.app[NODE].engine.copy(
        caller(request), source, destination, recursive=bool_field(body, "recursive"), into=bool_field(body, "into"),
        owner=str_field(body, "owner"),
    )
    response = render.json_response(
        {"path": result.inode.path, "files": result.files, "directories": result.directories,
         "bytes": result.bytes},
        status=201,
    )
    response.headers["Location"] = "/v1/files/" + quote(result.inode.path.lstrip("/")) + (
        "/" if result.inode.is_dir else "")
    return response
