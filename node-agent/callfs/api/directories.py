"""``/v1/directories/{path}``: directory listings, optionally recursive, whole or a page at a time."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from callfs import paths
from callfs.api import render
from callfs.api.files import directory_quota_headers
from callfs.api.keys import NODE, caller
from callfs.api.requests import flag, request_path
from callfs.errors import BadRequest
from callfs.models import InodeType, ListingPage

PREFIX = "/v1/directories/"
DEFAULT_MAX_DEPTH = 100
MAX_MAX_DEPTH = 1000
MAX_LIMIT = 10_000
"""Most entries one page of a listing may ask for (``?limit=``)."""
_CURSOR_TYPES = {"d": InodeType.DIRECTORY, "f": InodeType.FILE, "l": InodeType.SYMLINK, "s": InodeType.SPECIAL}


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", PREFIX + r"{tail:[\s\S]*}", list_directory)


def _max_depth(request: web.Request) -> int:
    raw = request.query.get("max_depth")
    if raw is None or raw == "":
        return DEFAULT_MAX_DEPTH
    # ASCII digits only (str.isdigit also takes other scripts' digits), and short enough to convert.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 4 or int(raw) > MAX_MAX_DEPTH:
        raise BadRequest(f"max_depth must be an integer from 0 to {MAX_MAX_DEPTH}")
    return int(raw)


def _limit(request: web.Request) -> int | None:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 5 or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def encode_cursor(page: ListingPage) -> str:
    """The ``next`` cursor of a listing page: the type and path of the last entry it held, base64url without
    padding (opaque to clients: they pass it back as ``?after=``)."""
    assert page.after is not None
    tag = next(tag for tag, kind in _CURSOR_TYPES.items() if kind is page.after_type)
    return base64.urlsafe_b64encode((tag + page.after).encode()).decode().rstrip("=")


def decode_cursor(raw: str, limit: int, directory: str, *, recursive: bool) -> ListingPage:
    """The page of a listing of ``directory`` that a ``next`` cursor starts. Raises ``BadRequest`` for anything
    :func:`encode_cursor` did not produce for an entry of that listing."""
    invalid = BadRequest("after must be the next cursor of an earlier page of this listing")
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        after = paths.canonicalize(text[1:]).path
    except (binascii.Error, ValueError, BadRequest) as exc:
        raise invalid from exc
    kind = _CURSOR_TYPES.get(text[:1])
    inside = paths.is_within(after, directory) if recursive else paths.parent_of(after) == directory
    if kind is None or after != text[1:] or after == directory or not inside:
        raise invalid
    return ListingPage(limit, after, kind)


async def list_directory(request: web.Request) -> web.StreamResponse:
    """``{"path","type":"directory","recursive","max_depth"?,"count","items","next"?}`` plus count headers.

    ``?limit=N`` (1 to :data:`MAX_LIMIT`) returns at most N entries and, when more follow, ``next``: the cursor to
    pass as ``?after=`` for the following page (also in the ``X-CallFS-Next`` header). Without ``limit`` the
    whole listing comes in one response; ``after`` without ``limit`` returns pages of :data:`MAX_LIMIT`.
    """
    recursive = flag(request, "recursive")
    max_depth = _max_depth(request)
    path = request_path(request, PREFIX).path
    limit = _limit(request)
    after = request.query.get("after")
    page = None
    if after:
        page = decode_cursor(after, limit or MAX_LIMIT, path, recursive=recursive)
    elif limit is not None:
        page = ListingPage(limit)
    directory, entries, following = await request.app[NODE].engine.list_page(
        caller(request), path, recursive=recursive, max_depth=max_depth, page=page
    )
    body: dict[str, object] = {"path": directory.path, "type": "directory", "recursive": recursive}
    if recursive:
        body["max_depth"] = max_depth
    body["count"] = len(entries)
    body["items"] = [render.item(e) for e in entries]
    cursor = encode_cursor(following) if following is not None else None
    if cursor is not None:
        body["next"] = cursor
    response = render.json_response(body)
    response.headers["X-CallFS-Count"] = str(len(entries))
    response.headers["X-CallFS-Recursive"] = "true" if recursive else "false"
    if cursor is not None:
        response.headers["X-CallFS-Next"] = cursor
    response.headers.update(await directory_quota_headers(request, directory.path))
    return response
