"""Inodes rendered as CallFS v1 response headers and JSON items, and the one JSON encoding of every response
body (compact, as CallFS v1 writes it: ``{"status":"ok"}``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from callfs.api.conditional import etag, http_date, rfc3339
from callfs.models import Inode
from callfs.permissions import format_mode


def dumps(value: Any) -> str:
    """``value`` as compact JSON text: no whitespace between tokens (``{"status":"ok"}``), non-ASCII escaped.
    Raises ``TypeError`` for a value JSON cannot hold."""
    return json.dumps(value, separators=(",", ":"))


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A ``application/json; charset=utf-8`` response whose body is ``dumps(body)``."""
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


def item(inode: Inode) -> dict[str, Any]:
    """A listing item: ``{name, path, type, size, mode, owner, group, mtime}`` (mode like ``"0644"``)."""
    return {
        "name": inode.name,
        "path": inode.path,
        "type": inode.type.value,
        "size": inode.size,
        "mode": format_mode(inode.mode),
        "owner": inode.owner,
        "group": inode.group,
        "mtime": rfc3339(inode.mtime),
    }


def headers(inode: Inode) -> dict[str, str]:
    """The ``X-CallFS-*`` headers of GET/HEAD, plus ``ETag``/``Last-Modified``/``Accept-Ranges`` for files."""
    out = {
        "X-CallFS-Type": inode.type.value,
        "X-CallFS-Size": str(inode.size),
        "X-CallFS-Mode": format_mode(inode.mode),
        "X-CallFS-Owner": inode.owner,
        "X-CallFS-Group": inode.group,
        "X-CallFS-MTime": rfc3339(inode.mtime),
        "Last-Modified": http_date(inode.mtime),
    }
    if not inode.is_dir:
        out["ETag"] = etag(inode)
        out["Accept-Ranges"] = "bytes"
        if inode.instance_id is not None:
            out["X-CallFS-Instance-ID"] = inode.instance_id
    return out
