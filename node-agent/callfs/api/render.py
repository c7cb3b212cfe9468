"""Inodes rendered as CallFS v1 response headers and JSON items, and the one JSON encoding of every response
body (compact, as CallFS v1 writes it: ``{"status":"ok"}``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from callfs.api.conditional import etag, http_date, rfc3339_fine
from callfs.models import Inode, InodeType
from callfs.permissions import format_mode


def dumps(value: Any) -> str:
    """``value`` as compact JSON text: no whitespace between tokens (``{"status":"ok"}``), non-ASCII escaped.
    Raises ``TypeError`` for a value JSON cannot hold."""
    return json.dumps(value, separators=(",", ":"))


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A ``application/json; charset=utf-8`` response whose body is ``dumps(body)``."""
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


def link_count(inode: Inode) -> int:
    """The link count shown for ``inode``: a file's number of names (hard links); a directory's 2 plus its
    subdirectories as the engine counted them (``Engine.stat`` and listings), at least 2 (an answer that did not
    count them: a new directory has none)."""
    return max(2, inode.nlink) if inode.is_dir else inode.nlink


def item(inode: Inode) -> dict[str, Any]:
    """A listing item: ``{name, path, type, ino, size, mode, owner, group, uid, gid, mtime, atime, ctime}``, plus
    ``nlink`` (:func:`link_count`), ``target`` for a symlink, ``special``
    and ``rdev`` for a special file. ``mode`` like ``"0644"``;
    ``uid``/``gid`` numbers or ``null`` (not set); times RFC 3339 UTC with microseconds when not whole seconds
    (:func:`~callfs.api.conditional.rfc3339_fine`)."""
    out = {
        "name": inode.name,
        "path": inode.path,
        "type": inode.type.value,
        "ino": inode.ino,
        "size": inode.size,
        "mode": format_mode(inode.mode),
        "owner": inode.owner,
        "group": inode.group,
        "uid": inode.uid,
        "gid": inode.gid,
        "mtime": rfc3339_fine(inode.mtime),
        "atime": rfc3339_fine(inode.accessed),
        "ctime": rfc3339_fine(inode.ctime),
    }
    out["nlink"] = link_count(inode)
    if inode.target is not None:
        out["target"] = inode.target
    if inode.special is not None:
        out["special"] = inode.special.value
        out["rdev"] = inode.rdev or 0
    return out


def headers(inode: Inode) -> dict[str, str]:
    """The ``X-CallFS-*`` headers of GET/HEAD and ``Last-Modified``, plus ``ETag``/``Accept-Ranges`` for files.

    ``X-CallFS-Ino`` (the inode number); ``X-CallFS-Nlink`` (:func:`link_count`);
    ``X-CallFS-UID``/``X-CallFS-GID`` only when set; ``X-CallFS-Target`` (percent-encoded UTF-8) for a symlink;
    ``X-CallFS-Special`` and ``X-CallFS-Rdev`` for a special file.
    """
    out = {
        "X-CallFS-Type": inode.type.value,
        "X-CallFS-Ino": str(inode.ino),
        "X-CallFS-Size": str(inode.size),
        "X-CallFS-Mode": format_mode(inode.mode),
        "X-CallFS-Owner": inode.owner,
        "X-CallFS-Group": inode.group,
        "X-CallFS-MTime": rfc3339_fine(inode.mtime),
        "X-CallFS-ATime": rfc3339_fine(inode.accessed),
        "X-CallFS-CTime": rfc3339_fine(inode.ctime),
        "Last-Modified": http_date(inode.mtime),
    }
    out["X-CallFS-Nlink"] = str(link_count(inode))
    if inode.uid is not None:
        out["X-CallFS-UID"] = str(inode.uid)
    if inode.gid is not None:
        out["X-CallFS-GID"] = str(inode.gid)
    if inode.target is not None:
        out["X-CallFS-Target"] = quote(inode.target, safe="/")
    if inode.special is not None:
        out["X-CallFS-Special"] = inode.special.value
        out["X-CallFS-Rdev"] = str(inode.rdev or 0)
    if inode.type is InodeType.FILE:
        out["ETag"] = etag(inode)
        out["Accept-Ranges"] = "bytes"
        if inode.instance_id is not None:
            out["X-CallFS-Instance-ID"] = inode.instance_id
    return out
