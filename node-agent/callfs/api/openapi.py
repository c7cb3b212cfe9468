"""The OpenAPI 3.1 description of the node's REST API, served at ``GET /openapi.json`` (no API key needed).

The document is built here, in Python, next to the handlers it describes; the error codes come straight from
:mod:`callfs.errors`. ``docs/openapi.json`` is a copy, regenerated with::

    python -m callfs.api.openapi > docs/openapi.json

Tests keep it true: every route the application registers is documented (and nothing else), the error-code
enum equals the codes of :mod:`callfs.errors`, the document validates as OpenAPI 3.1, and ``docs/openapi.json``
equals what the node serves.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from callfs import __version__, links
from callfs.api import directories
from callfs.errors import CallFSError
from callfs.peers import FORWARDED_HEADER, USER_HEADER

PATH = "/openapi.json"
OPENAPI_VERSION = "3.1.0"
INTERNAL_TAG = "internal"

Json = dict[str, Any]


def error_classes() -> list[type[CallFSError]]:
    """Every :class:`CallFSError` class, the base first, then its subclasses depth-first in definition order."""
    out: list[type[CallFSError]] = []

    def visit(cls: type[CallFSError]) -> None:
        out.append(cls)
        for sub in cls.__subclasses__():
            visit(sub)

    visit(CallFSError)
    return out


def error_codes() -> dict[str, int]:
    """Every JSON error code the node can emit, mapped to its HTTP status: ``{"BAD_REQUEST": 400, ...}``."""
    return {cls.code: cls.status for cls in error_classes()}


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Json:
    return _ref("schemas", name)


def _json(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def _octets() -> Json:
    return {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _headers(*names: str) -> Json:
    return {name: _ref("headers", name) for name in ("X-Request-ID", *names)}


def _response(description: str, content: Json | None = None, *headers: str) -> Json:
    out: Json = {"description": description, "headers": _headers(*headers)}
    if content is not None:
        out["content"] = content
    return out


def _errors(statuses: Iterable[int]) -> Json:
    return {str(status): _ref("responses", f"Error{status}") for status in statuses}


def _operation(
    operation_id: str, summary: str, tags: list[str], responses: Json, errors: Iterable[int], *,
    description: str | None = None, parameters: Iterable[str] = (), request_body: Json | None = None,
    public: bool = False, internal: bool = False,
) -> Json:
    """One operation; ``errors`` are HTTP statuses answered with the JSON error body (401 added unless public)."""
    statuses = set(errors) if public else {401, *errors}
    op: Json = {"operationId": operation_id, "summary": summary, "tags": [*tags, INTERNAL_TAG] if internal else tags}
    if description:
        op["description"] = description
    params = [_ref("parameters", name) for name in parameters]
    if params:
        op["parameters"] = params
    if request_body is not None:
        op["requestBody"] = request_body
    op["responses"] = {**responses, **_errors(sorted(statuses))}
    if public:
        op["security"] = []
    elif internal:
        op["security"] = [{"internalSecret": []}]
    if internal:
        op["x-internal"] = True
    return op


def _head_of(get: Json, operation_id: str) -> Json:
    """The automatic ``HEAD`` twin of a ``GET``: the same headers and statuses, never a body."""
    head: Json = {k: v for k, v in get.items() if k not in ("operationId", "summary", "description", "responses")}
    head["operationId"] = operation_id
    head["summary"] = f"Headers of {get['operationId']} without the body"
    head["responses"] = {
        status: {k: v for k, v in response.items() if k != "content"} if "content" in response else response
        for status, response in get["responses"].items()
    }
    return head


_FILE_HEADERS = (
    "X-CallFS-Type", "X-CallFS-Size", "X-CallFS-Mode", "X-CallFS-Owner", "X-CallFS-Group", "X-CallFS-MTime",
    "X-CallFS-ATime", "X-CallFS-CTime", "X-CallFS-UID", "X-CallFS-GID", "X-CallFS-Target", "X-CallFS-Special",
    "X-CallFS-Rdev", "X-CallFS-Nlink", "X-CallFS-Ino", "X-CallFS-Instance-ID",
    "Last-Modified",
    "ETag", "Accept-Ranges",
)
_QUOTA_HEADERS = (
    "X-CallFS-Quota-Bytes-Used", "X-CallFS-Quota-Inodes-Used", "X-CallFS-Quota-Bytes-Limit",
    "X-CallFS-Quota-Inodes-Limit",
)
_CONDITIONAL = ("IfMatch", "IfNoneMatch", "IfModifiedSince", "IfUnmodifiedSince")
_WRITE_CONDITIONAL = ("IfMatch", "IfNoneMatch", "IfUnmodifiedSince")


def _file_paths() -> Json:
    tags = ["files"]
    get = _operation(
        "getFile", "Read a file, or list a directory", tags,
        {
            "200": _response(
                "The file's bytes, or (for a directory) its entries as a JSON array",
                {**_octets(), **_json({"type": "array", "items": _schema("Item")})},
                *_FILE_HEADERS, "Content-Length", *_QUOTA_HEADERS,
            ),
            "206": _response("One byte range of the file", _octets(), *_FILE_HEADERS, "Content-Range",
                             "Content-Length"),
            "304": _response("Not modified (If-None-Match / If-Modified-Since)", None, "ETag", "Last-Modified"),
        },
        [400, 403, 404, 412, 416, 500, 502, 503, 508],
        description=(
            "A file is streamed with `ETag`, `Last-Modified` and `Accept-Ranges: bytes`; one `Range` is honoured "
            "(several ranges get the whole file). A directory answers a JSON array of its entries, with the "
            "`X-CallFS-Quota-*` headers when it is a quota root. When another node holds the file's bytes, the "
            "request is forwarded there and the answer streamed back (502 when that node does not answer, 508 "
            "when a forwarded request would be forwarded again)."
        ),
        parameters=["Path", *_CONDITIONAL, "Range", "IfRange"],
    )
    head = _operation(
        "headFile", "Stat a file or directory", tags,
        {
            "200": _response("The headers a GET would send, without the body", None, *_FILE_HEADERS,
                             "Content-Length", *_QUOTA_HEADERS),
            "304": _response("Not modified (If-None-Match / If-Modified-Since)", None, "ETag", "Last-Modified"),
        },
        [400, 403, 404, 412, 500, 503],
        description="Error statuses carry no body, as for every HEAD.",
        parameters=["Path", *_CONDITIONAL],
    )
    post = _operation(
        "createFile", "Create a file, a directory (trailing slash), a symbolic link, a hard link or a special file",
        tags,
        {
            "201": _response("Created", _json(_schema("Item")), "Location", "ETag", "Last-Modified"),
            "200": _response("The directory already existed (directories only)", _json(_schema("Item"))),
        },
        [400, 403, 404, 408, 409, 412, 413, 500, 503, 507],
        description=(
            "A path ending in `/` creates a directory and takes no body. `X-CallFS-Target` without a body "
            "creates a symbolic link to that target (stored as given, never followed; the parent must exist); "
            "`X-CallFS-Link-To` a hard link: a second name of that existing entry (not a directory: 400 "
            "`IS_A_DIRECTORY`), one inode whichever name a change goes through (409 `CROSSES_QUOTA_ROOT` when "
            "the names would lie under different quota roots); "
            "`X-CallFS-Special` (with `X-CallFS-Rdev` for a device node) a special file: an entry only. "
            "Otherwise the body becomes a new file: "
            "409 `FILE_ALREADY_EXISTS` when the path exists (with `instance_id` and `update_url` in the error "
            "body when another node holds the existing file's bytes)."
        ),
        parameters=["Path", "Backend", "BackendHeader", "TargetHeader", "LinkToHeader", "SpecialHeader",
                    "RdevHeader", "MTimeHeader", *_WRITE_CONDITIONAL],
        request_body={"required": False, "content": _octets()},
    )
    put = _operation(
        "putFile", "Create or overwrite a file, or write a byte range of it", tags,
        {
            "201": _response("Created", _json(_schema("Item")), "Location", "ETag", "Last-Modified"),
            "200": _response("Overwritten, or the range written", _json(_schema("Item")), "ETag", "Last-Modified"),
        },
        [400, 403, 404, 408, 409, 412, 413, 500, 502, 503, 507, 508],
        description=(
            "The body is streamed to the file's backend and replaces the file atomically. A path ending in `/` "
            "is refused with 400 `IS_A_DIRECTORY`. Overwriting a file whose bytes another node holds is "
            "forwarded to that node. With `Content-Range: bytes FIRST-LAST/*` the body (exactly "
            "`LAST - FIRST + 1` bytes) is written at that range of the existing file (404 when it does not "
            "exist): at the current size it appends, past it the gap reads as zeros; only the blocks the range "
            "touches are written. Same permission, lock, conditional, size and quota rules as an overwrite."
        ),
        parameters=["Path", "Backend", "BackendHeader", "ContentRange", "MTimeHeader", *_WRITE_CONDITIONAL],
        request_body={"required": True, "content": _octets()},
    )
    patch = _operation(
        "patchFile", "Rename, move, exchange, relocate, chmod, chown, set times, truncate or extend", tags,
        {"200": _response("Done", _json({"oneOf": [_schema("Moved"), _schema("Item")]}), "ETag")},
        [400, 403, 404, 409, 412, 413, 500, 502, 503, 507, 508],
        description=(
            "Exactly one of `name` (rename in place) or `destination` (absolute path) moves the entry and "
            "answers `{\"path\"}`; `backend`/`instance` also move a file's bytes; `exchange` swaps the two "
            "existing entries atomically instead. `mode`/`owner`/`group`/`uid`/"
            "`gid`/`atime`/`mtime` change attributes in one change (never together with a move; `ctime` set to "
            "now) and answer the entry as an `Item`. 403 "
            "`QUOTA_ROOT_PROTECTED` when a non-root caller moves or replaces a quota root. `size` alone "
            "truncates or extends a file (zeros past the old end) and answers the entry as an `Item` with its "
            "`ETag`; it follows the rules of a partial write (conditional headers included)."
        ),
        parameters=["Path", *_WRITE_CONDITIONAL],
        request_body={"required": True, "content": _json(_schema("PatchRequest"))},
    )
    delete = _operation(
        "deleteFile", "Delete a file or a directory", tags,
        {"204": _response("Deleted")},
        [400, 403, 404, 409, 500, 502, 503, 508],
        description="A directory must be empty (409 `DIRECTORY_NOT_EMPTY`) unless `recursive=true`.",
        parameters=["Path", "Recursive"],
    )
    websocket = _operation(
        "websocketTransfer", "Download or upload a file over a WebSocket", tags,
        {
            "101": _response("Switching to the WebSocket protocol (a download's answer carries the file's headers)",
                             None, *_FILE_HEADERS),
            "200": _response("Not a WebSocket handshake: the plain GET of the file at `/ws/{path}`", _octets()),
        },
        [400, 403, 404, 409, 412, 413, 500, 502, 503, 507, 508],
        description=(
            "A WebSocket handshake (`Upgrade: websocket`) authenticated with `Authorization: Bearer <key>`. "
            "`mode=download` (the default): the node sends the file as binary frames of at most 1 MiB, then "
            "closes with 1000. `mode=upload`: the client sends the bytes as binary frames (at most 4 MiB each), "
            "then the text message `end`; the node writes them like PUT (create or overwrite; "
            "`overwrite=false` creates only) and answers the text message "
            "`{\"ok\": true, \"status\": 201|200, \"created\", ...Item}`, then closes with 1000. A close "
            "before `end` abandons the upload: nothing is written. Refusals known before the upgrade are plain "
            "JSON errors; after it, a text message `{\"ok\": false, \"status\", \"code\", \"message\"}` "
            "then a close frame 1008 (the caller's fault, quotas included), 1009 (too big) or 1011 (the "
            "node's fault). A request that is not a WebSocket handshake is a plain GET of the file at "
            "`/ws/{path}`."
        ),
        parameters=["Path", "Mode", "Overwrite", "Size", "Backend", "BackendHeader", *_WRITE_CONDITIONAL],
    )
    return {"/v1/files/{path}": {"get": get, "head": head, "post": post, "put": put, "patch": patch,
                                 "delete": delete},
            "/v1/files/ws/{path}": {"get": websocket}}


_RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
_RATE_LIMITED_PREFIXES = ("/v1/", "/download/")


def _rate_limited(paths: Json) -> Json:
    """``paths`` with the rate limits' answers added to every operation under ``/v1/`` and ``/download/``:
    the ``RateLimit-*`` headers on each of its own responses and a 429 error (in status order)."""
    for path, item in paths.items():
        if not path.startswith(_RATE_LIMITED_PREFIXES):
            continue
        for operation in item.values():
            responses = operation["responses"]
            for response in responses.values():
                if "headers" in response:
                    response["headers"].update(_headers(*_RATE_LIMIT_HEADERS))
            entries = list(responses.items())
            at = next((i for i, (status, _) in enumerate(entries) if status.isdigit() and int(status) > 429),
                      len(entries))
            entries.insert(at, ("429", _ref("responses", "Error429")))
            operation["responses"] = dict(entries)
    return paths


def _other_public_paths() -> Json:
    listing = _operation(
        "listDirectory", "List a directory, optionally recursively", ["directories"],
        {"200": _response("The listing", _json(_schema("DirectoryListing")), "X-CallFS-Count",
                          "X-CallFS-Recursive", "X-CallFS-Next", *_QUOTA_HEADERS)},
        [400, 403, 404, 500, 503],
        parameters=["Path", "Recursive", "MaxDepth", "Limit", "After"],
    )
    generate = _operation(
        "generateLink", "Mint a single-use download link for a file", ["links"],
        {"201": _response("The link", _json(_schema("Link")))},
        [400, 403, 404, 413, 500, 503],
        request_body={"required": True, "content": _json(_schema("LinkRequest"))},
    )
    download = _operation(
        "download", "Download the file of a single-use link (no API key; burns the link)", ["links"],
        {
            "200": _response("The file, as an attachment", _octets(), "Content-Disposition", "Cache-Control",
                             *_FILE_HEADERS, "Content-Length"),
            "206": _response("One byte range of the file, as an attachment", _octets(), "Content-Disposition",
                             "Cache-Control", *_FILE_HEADERS, "Content-Range", "Content-Length"),
            "304": _response("Not modified", None, "ETag", "Last-Modified"),
        },
        [403, 404, 410, 412, 416, 500, 502, 503, 508],
        description=(
            "No HEAD: a HEAD must not burn the token. 410 `LINK_EXPIRED` once used, expired or forged; 410 "
            "`LINK_CONTENT_CHANGED` when the file at the path is no longer the content the link was minted for."
        ),
        parameters=["Token", *_CONDITIONAL, "Range", "IfRange"],
        public=True,
    )
    copy = _operation(
        "createCopy", "Copy a file or subtree on the server, sharing its bytes (copy-on-write)", ["files"],
        {"201": _response("The copy", _json(_schema("Copy")), "Location")},
        [400, 403, 404, 409, 413, 500, 503, 507],
        description=(
            "No byte is copied: the copy shares the source's blocks and blobs, and a later write to either changes "
            "only that one. A directory needs `recursive: true`; `into: true` copies its entries into the existing, "
            "empty directory `destination`. Needs `r` on every file and `r`/`x` on every directory copied and the "
            "right to create entries at the destination, whose quotas are charged for every entry and byte "
            "(507 `QUOTA_EXCEEDED` and nothing copied when they do not fit). 409 `FILE_ALREADY_EXISTS` when "
            "`destination` exists, `DIRECTORY_NOT_EMPTY` when copying into a non-empty directory."
        ),
        request_body={"required": True, "content": _json(_schema("CopyRequest"))},
    )
    quota_tags = ["quotas"]
    get_quota = _operation(
        "getQuota", "A directory's quota: limits and usage", quota_tags,
        {"200": _response("The quota", _json(_schema("Quota")))},
        [400, 403, 404, 500, 503],
        description="404 when the directory has no quota.",
        parameters=["Path"],
    )
    put_quota = _operation(
        "putQuota", "Set a directory's quota", quota_tags,
        {"201": _response("Created", _json(_schema("Quota"))), "200": _response("Changed", _json(_schema("Quota")))},
        [400, 403, 404, 413, 500, 503],
        parameters=["Path"],
        request_body={"required": True, "content": _json(_schema("QuotaLimits"))},
    )
    delete_quota = _operation(
        "deleteQuota", "Remove a directory's quota", quota_tags,
        {"204": _response("Removed")},
        [400, 403, 404, 500, 503],
        parameters=["Path"],
    )
    xattr_tags = ["xattrs"]
    get_xattrs = _operation(
        "getXattrs", "An entry's extended attributes: one value, or the list of names", xattr_tags,
        {"200": _response("With `name`: the raw value (`application/octet-stream`); without: the names in name "
                          "order, their value sizes, and with `values=true` the values in base64",
                          {**_octets(), **_json(_schema("Xattrs"))})},
        [400, 403, 404, 500, 503],
        description=(
            "Names are `user.*`, `trusted.*` (superusers only) or `security.*`; another namespace is 400 "
            "`XATTR_NOT_SUPPORTED`. Reading a value needs `r` on the entry; listing names needs no permission on "
            "it (as `listxattr(2)`), and lists `trusted.*` names to superusers only. 404 `XATTR_NOT_FOUND` when "
            "the entry has no attribute `name` (or one the caller may not see), `FILE_NOT_FOUND` when there is "
            "no entry."
        ),
        parameters=["Path", "XattrName", "XattrValues"],
    )
    put_xattr = _operation(
        "putXattr", "Set an extended attribute (the body is its raw value)", xattr_tags,
        {"201": _response("Created", _json(_schema("XattrSet"))),
         "200": _response("Replaced", _json(_schema("XattrSet")))},
        [400, 403, 404, 409, 413, 500, 503],
        description=(
            "At most 64 KiB of value and 255 bytes of name (400 `BAD_XATTR_NAME`), and per inode 64 KiB of "
            "names and 256 KiB of names and values (413 `XATTR_TOO_LARGE`, `XATTRS_FULL`). Needs `w` on the "
            "entry for `user.*` (regular files and directories only; a sticky directory's own attributes: its "
            "owner), a superuser for `trusted.*` and `security.*`. `mode=create` answers 409 `XATTR_EXISTS` when "
            "the attribute exists, `mode=replace` 404 `XATTR_NOT_FOUND` when it does not. Sets the entry's "
            "`ctime`; every name of a hard-linked file shares its attributes."
        ),
        parameters=["Path", "XattrNameRequired", "XattrMode"],
        request_body={"required": True, "content": _octets()},
    )
    delete_xattr = _operation(
        "deleteXattr", "Remove an extended attribute", xattr_tags,
        {"204": _response("Removed")},
        [400, 403, 404, 500, 503],
        description="The same rights as setting it. 404 `XATTR_NOT_FOUND` when there is none. Sets the entry's "
                    "`ctime`.",
        parameters=["Path", "XattrNameRequired"],
    )
    register_key = _operation(
        "registerKey", "Register an API key confined to a path (root only)", ["keys"],
        {"201": _response("Registered", _json(_schema("AccessKey"))),
         "200": _response("Already registered for this user and scope", _json(_schema("AccessKey")))},
        [400, 403, 409, 413, 500, 503],
        description=(
            "Requests with `key` act as `user` (never a superuser) and reach only `scope` and what lies below it: "
            "any other path answers 403, and so does every route that is not about paths (`/v1/keys`, "
            "`/v1/cluster/*`, `/metrics`). The node keeps the key's SHA-256, never the key, and never echoes it. "
            "409 `CONFLICT` when the key is one of the config file, the internal secret, or registered for another "
            "user or scope. The CSI driver registers one per volume."
        ),
        request_body={"required": True, "content": _json(_schema("KeyRegistration"))},
    )
    revoke_keys = _operation(
        "revokeKeys", "Revoke every run-time key of a user (root only)", ["keys"],
        {"200": _response("Revoked (at once, on every node)", _json(_schema("RevokedKeys")))},
        [400, 403, 500, 503],
        parameters=["KeyUser"],
    )
    nodes = _operation(
        "listNodes", "The cluster's nodes as this node sees them", ["cluster"],
        {"200": _response("The membership view", _json(_schema("ClusterNodes")))},
        [500, 503],
    )
    drain_tags = ["cluster"]
    start_drain = _operation(
        "startDrain", "Drain a node before removing it (root only)", drain_tags,
        {"202": _response("The node is leaving; its progress", _json(_schema("DrainProgress")))},
        [403, 404, 500, 503],
        description=(
            "Marks the node *leaving*: it takes no new block copies, every block with a copy there is copied "
            "until `backend.replicas` copies exist on live nodes that stay, and the node moves each file whose "
            "bytes are a blob on its disk to a node that stays. Again on a leaving node: the same answer. 404 for "
            "a node not registered in the metadata store."
        ),
        parameters=["InstanceId"],
    )
    drain_progress = _operation(
        "getDrain", "Progress of a node's drain (root only)", drain_tags,
        {"200": _response("What the drain has left", _json(_schema("DrainProgress")))},
        [403, 404, 500, 503],
        description="404 for a node not registered, or not being drained.",
        parameters=["InstanceId"],
    )
    cancel_drain = _operation(
        "cancelDrain", "Stop draining a node (root only)", drain_tags,
        {"204": _response("The node is no longer leaving (or was not); what was copied stays")},
        [403, 404, 500, 503],
        parameters=["InstanceId"],
    )
    forget_node = _operation(
        "forgetNode", "Declare a node lost for good (root only)", drain_tags,
        {"200": _response("The node is lost; what it leaves behind", _json(_schema("LostNode")))},
        [403, 404, 409, 500, 503],
        description=(
            "For a node that went down for good without a drain (its disk lost with it). The node is recorded "
            "*lost*: it is leaving for ever, takes no copy, its copies count as gone at once (repair copies each "
            "of its blocks without waiting for `backend.replica_repair_grace`), the first live node that stays "
            "collects its location, and each of its `block_replicas` rows is dropped once the block has "
            "`backend.replicas` live copies again. Files whose bytes were one blob on its disk are lost and "
            "listed (their metadata stays). The node may never register again under its instance id. Again on "
            "a lost node: the same answer. 409 `NODE_LIVE` while the node's heartbeat is within "
            "`instance_discovery.node_timeout` (or it is the node answering); 404 for a node not registered."
        ),
        parameters=["InstanceId"],
    )
    lost_node = _operation(
        "getLostNode", "What a lost node leaves behind (root only)", drain_tags,
        {"200": _response("The lost node's report", _json(_schema("LostNode")))},
        [403, 404, 500, 503],
        description="404 for a node not registered, or not declared lost.",
        parameters=["InstanceId"],
    )
    conversion_text = (
        "Files stored as one blob (by an older version, or written whole by a node alone) are converted to "
        "blocks in place: content, size, times, version and ETag stay. Each node converts the blobs on its own "
        "disk, the live node with the smallest instance id those on a shared backend (S3)."
    )
    start_conversion = _operation(
        "startConversion", "Convert the blob files of every node to blocks (root only)", ["cluster"],
        {"202": _response("A pass was started on every node that answered; the report",
                          _json(_schema("ConversionReport")))},
        [403, 500, 503],
        description=conversion_text + " A node already running a pass carries on with it.",
    )
    conversion_progress = _operation(
        "getConversion", "Progress of the conversion of blob files to blocks (root only)", ["cluster"],
        {"200": _response("Per node: what is left, converted, failed", _json(_schema("ConversionReport")))},
        [403, 500, 503],
        description=conversion_text,
    )
    return {
        "/v1/cluster/convert": {"post": start_conversion, "get": conversion_progress},
        "/v1/directories/{path}": {"get": listing},
        "/v1/copies": {"post": copy},
        "/v1/links/generate": {"post": generate},
        "/download/{token}": {"get": download},
        "/v1/quotas/{path}": {"get": get_quota, "put": put_quota, "delete": delete_quota},
        "/v1/xattrs/{path}": {"get": get_xattrs, "put": put_xattr, "delete": delete_xattr},
        "/v1/keys": {"post": register_key},
        "/v1/keys/{user}": {"delete": revoke_keys},
        "/v1/cluster/nodes": {"get": nodes, "head": _head_of(nodes, "headNodes")},
        "/v1/cluster/nodes/{instance_id}/drain": {"post": start_drain, "get": drain_progress, "delete": cancel_drain},
        "/v1/cluster/nodes/{instance_id}/forget": {"post": forget_node, "get": lost_node},
    }


def _lock_paths() -> Json:
    tags = ["locks"]
    open_session = _operation(
        "openLockSession", "Open a lock session (a mount's identity for its file locks)", tags,
        {"201": _response("The session", _json(_schema("LockSession")))},
        [400, 403, 413, 500, 503],
        description=(
            "Every file lock is held under a session. The session lives `ttl` seconds (default "
            "`dlm.lock_session_ttl`) unless renewed with `PUT`; when it ends or expires, all its locks are "
            "released. It belongs to the caller's user: any other user naming it gets 404."
        ),
        request_body={"required": False, "content": _json(_schema("LockSessionRequest"))},
    )
    renew_session = _operation(
        "renewLockSession", "Renew a lock session (heartbeat)", tags,
        {"200": _response("Renewed for another `ttl` seconds", _json(_schema("LockSession")))},
        [403, 404, 500, 503],
        description="404 `LOCK_SESSION_NOT_FOUND` when it ended or expired: its locks are gone.",
        parameters=["LockSessionId"],
    )
    close_session = _operation(
        "closeLockSession", "End a lock session, releasing all its locks", tags,
        {"204": _response("Ended")},
        [403, 404, 500, 503],
        parameters=["LockSessionId"],
    )
    set_lock = _operation(
        "setFileLock", "Take, convert or release a flock or fcntl lock (never waits)", tags,
        {"200": _response("Done", _json(_schema("FileLockGranted")))},
        [400, 403, 404, 409, 413, 500, 503],
        description=(
            "Locks belong to the inode (all hard-link names share them) and are the cluster's: every node answers "
            "with the same table. `kind` `posix` locks are byte ranges with POSIX record-lock rules (an owner's "
            "own locks are replaced, split and merged, never in conflict); `flock` locks cover the whole file and "
            "are independent of `posix` ones. 409 `LOCK_CONFLICT` with the lock in the way as `conflict` (nothing "
            "changed); the server never waits: a blocking lock is the client retrying. 404 "
            "`LOCK_SESSION_NOT_FOUND` for a session that ended or expired, `FILE_NOT_FOUND` for the path. Needs "
            "`r` or `w` on the file."
        ),
        parameters=["Path"],
        request_body={"required": True, "content": _json(_schema("FileLockRequest"))},
    )
    get_locks = _operation(
        "getFileLocks", "The locks of a file, or whether a lock could be taken (F_GETLK)", tags,
        {"200": _response("Without `type`: every lock; with `type`: `conflict` null (it could be taken now)",
                          _json(_schema("FileLocks")))},
        [400, 403, 404, 409, 500, 503],
        description=(
            "With `type` (`read`/`write`) and optionally `kind`, `start`, `length`, `session`, `owner`: 409 "
            "`LOCK_CONFLICT` naming the first lock of another owner that would keep it from being granted."
        ),
        parameters=["Path", "LockType", "LockKind", "LockStart", "LockLength", "LockSession", "LockOwner"],
    )
    return {
        "/v1/lock-sessions": {"post": open_session},
        "/v1/lock-sessions/{session}": {"put": renew_session, "delete": close_session},
        "/v1/file-locks/{path}": {"post": set_lock, "get": get_locks},
    }


def _system_paths() -> Json:
    health = _operation(
        "health", "Liveness", ["system"],
        {"200": _response("The process serves requests", _json(_schema("Health")))}, [500], public=True,
    )
    ready = _operation(
        "ready", "Readiness: metadata store, lock service and backends", ["system"],
        {
            "200": _response("Every dependency answers", _json(_schema("Ready"))),
            "503": _response("Some dependency does not answer (this body, not the error body)",
                             _json(_schema("Ready"))),
        },
        [500], public=True,
    )
    metrics = _operation(
        "metrics", "Prometheus metrics", ["system"],
        {"200": _response("Text exposition format 0.0.4",
                          {"text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}}})},
        [500],
        description="Served only when `metrics.enabled` is true (the default); otherwise 404.",
    )
    openapi = _operation(
        "openapi", "This document", ["system"],
        {"200": _response("The OpenAPI 3.1 document of the node's REST API",
                          _json({"type": "object", "description": "An OpenAPI 3.1 document"}))},
        [500], public=True,
    )
    return {
        "/health": {"get": health, "head": _head_of(health, "headHealth")},
        "/ready": {"get": ready, "head": _head_of(ready, "headReady")},
        "/metrics": {"get": metrics, "head": _head_of(metrics, "headMetrics")},
        PATH: {"get": openapi, "head": _head_of(openapi, "headOpenapi")},
    }


def _internal_paths() -> Json:
    tags = ["cluster"]
    read_blob = _operation(
        "readBlob", "Stream one of this node's blobs to a peer", tags,
        {"200": _response("The blob's bytes", _octets(), "Content-Length")},
        [403, 404, 500, 503],
        parameters=["BlobBackend", "BlobId", "User"],
        internal=True,
    )
    free_blob = _operation(
        "freeBlob", "Delete one of this node's blobs at a peer's request", tags,
        {"204": _response("Deleted")},
        [400, 403, 404, 500, 503],
        parameters=["BlobBackend", "BlobId", "User"],
        internal=True,
    )
    relocate = _operation(
        "relocate", "Take a file's bytes onto this node, on behalf of a user", tags,
        {"200": _response("The file, now held here", _json(_schema("Item")))},
        [400, 403, 404, 413, 500, 502, 503, 507],
        description=f"Only a peer holding the internal secret, naming the user in `{USER_HEADER}`.",
        parameters=["User"],
        request_body={"required": True, "content": _json(_schema("RelocateRequest"))},
        internal=True,
    )
    block_params = ["BlobBackend", "BlockLocation", "BlockHash"]
    put_block = _operation(
        "putBlock", "Keep a copy of a block for its owner (block replication)", tags,
        {"204": _response("Verified against its hash and durable on this node")},
        [400, 403, 413, 500, 503, 507],
        description="The body is the block as stored (one codec byte, then the raw or zstd payload). The node "
                    "decodes it and checks its SHA-256 before writing (temp file, fsync, rename, directory "
                    "fsync); 400 when it is not the named block.",
        parameters=block_params,
        request_body={"required": True, "content": _octets()},
        internal=True,
    )
    get_block = _operation(
        "getBlock", "Read this node's copy of a block as stored", tags,
        {"200": _response("The stored block (the reader verifies it against its hash)", _octets())},
        [400, 403, 404, 500, 503],
        parameters=block_params,
        internal=True,
    )
    delete_block = _operation(
        "deleteBlock", "Delete this node's copy of a block (the collector freeing it)", tags,
        {"204": _response("Deleted, or there was none")},
        [400, 403, 500, 503],
        parameters=block_params,
        internal=True,
    )
    start_node_conversion = _operation(
        "startNodeConversion", "Start a pass converting this node's blob files to blocks", tags,
        {"202": _response("Started (or running already); this node's report", _json(_schema("NodeConversion")))},
        [403, 500, 503],
        internal=True,
    )
    node_conversion = _operation(
        "getNodeConversion", "This node's conversion of blob files to blocks", tags,
        {"200": _response("This node's report", _json(_schema("NodeConversion")))},
        [403, 500, 503],
        internal=True,
    )
    return {
        "/internal/v1/convert": {"post": start_node_conversion, "get": node_conversion},
        "/internal/v1/blobs/{backend}/{blob_id}": {"get": read_blob, "delete": free_blob},
        "/internal/v1/blocks/{backend}/{location}/{hash}": {
            "put": put_block, "get": get_block, "delete": delete_block,
        },
        "/internal/v1/relocate": {"post": relocate},
    }


def _header(description: str, schema: Json | None = None) -> Json:
    return {"description": description, "schema": schema or {"type": "string"}}


def _headers_component() -> Json:
    integer = {"type": "integer", "minimum": 0}
    return {
        "X-Request-ID": _header("The request's ID: the client's `X-Request-ID` when it is 1-128 of "
                                "`[A-Za-z0-9._:-]`, else a new one"),
        "ETag": _header("Strong entity tag of the file's current content"),
        "Last-Modified": _header("The modification time (IMF-fixdate)"),
        "Accept-Ranges": _header("`bytes` for files", {"type": "string", "const": "bytes"}),
        "Content-Range": _header("`bytes <first>-<last>/<size>` on 206; `bytes */<size>` on 416"),
        "Content-Length": _header("Length of the body in bytes", integer),
        "Content-Disposition": _header("`attachment; filename*=UTF-8''<name>`"),
        "Cache-Control": _header("`no-store`"),
        "Location": _header("The created entry's URL path (ends in `/` for a directory)"),
        "Retry-After": _header("Seconds to wait before retrying", integer),
        "RateLimit-Limit": _header("Rate limit: the size of the bucket the request was counted against, in "
                                   "requests (only when a rate limit applies to the route)", integer),
        "RateLimit-Remaining": _header("Rate limit: requests that could follow at once", integer),
        "RateLimit-Reset": _header("Rate limit: seconds until the bucket is full again", integer),
        "WWW-Authenticate": _header('`Bearer realm="callfs"`'),
        "X-CallFS-Type": _header("`file`, `directory`, `symlink` or `special`",
                                 {"type": "string", "enum": ["file", "directory", "symlink", "special"]}),
        "X-CallFS-Special": _header("A special file's kind (special files only)",
                                    {"type": "string", "enum": ["fifo", "socket", "char", "block"]}),
        "X-CallFS-Rdev": _header("A special file's device number (special files only)", integer),
        "X-CallFS-Target": _header("A symbolic link's target, percent-encoded UTF-8 (links only)"),
        "X-CallFS-Nlink": _header("The link count: a file's number of names (hard links), a directory's 2 plus "
                                  "its number of subdirectories",
                                  integer),
        "X-CallFS-Ino": _header("The inode number: the same for every name of one inode, kept across renames",
                                integer),
        "X-CallFS-Size": _header("Size in bytes (0 for directories)", integer),
        "X-CallFS-Mode": _header("Permission bits in octal, e.g. `0644`"),
        "X-CallFS-Owner": _header("Owning user"),
        "X-CallFS-Group": _header("Owning group"),
        "X-CallFS-MTime": _header("Modification time, RFC 3339 UTC (microseconds when not whole seconds)",
                                  {"type": "string", "format": "date-time"}),
        "X-CallFS-ATime": _header("Access time, RFC 3339 UTC (set by PATCH `atime`; else the modification time)",
                                  {"type": "string", "format": "date-time"}),
        "X-CallFS-CTime": _header("Change time: content or attributes, RFC 3339 UTC",
                                  {"type": "string", "format": "date-time"}),
        "X-CallFS-UID": _header("Numeric owner (absent until set)", integer),
        "X-CallFS-GID": _header("Numeric group (absent until set)", integer),
        "X-CallFS-Instance-ID": _header("The node holding the file's bytes (node-local backends only)"),
        "X-CallFS-Count": _header("Number of items in the listing", integer),
        "X-CallFS-Next": _header("The cursor of the next page of a paged listing (absent on the last page)"),
        "X-CallFS-Recursive": _header("Whether the listing is recursive", {"type": "string",
                                                                              "enum": ["true", "false"]}),
        "X-CallFS-Quota-Bytes-Used": _header("Bytes used under a quota root", integer),
        "X-CallFS-Quota-Inodes-Used": _header("Entries under a quota root", integer),
        "X-CallFS-Quota-Bytes-Limit": _header("Byte limit of a quota root (absent when unlimited)", integer),
        "X-CallFS-Quota-Inodes-Limit": _header("Entry limit of a quota root (absent when unlimited)", integer),
    }


def _parameters_component() -> Json:
    def header(name: str, description: str) -> Json:
        return {"name": name, "in": "header", "required": False, "description": description,
                "schema": {"type": "string"}}

    def flag(name: str, description: str) -> Json:
        return {"name": name, "in": "query", "required": False, "description": description,
                "schema": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"], "default": "false"}}

    return {
        "Path": {
            "name": "path", "in": "path", "required": True,
            "description": (
                "The filesystem path, percent-encoded, relative to `/`: it may contain `/` and may be empty (the "
                "root). A trailing `/` names a directory. NUL, invalid UTF-8, `.` and `..` segments are refused."
            ),
            "schema": {"type": "string"},
        },
        "Token": {"name": "token", "in": "path", "required": True, "description": "The link's token",
                  "schema": {"type": "string"}},
        "BlobBackend": {"name": "backend", "in": "path", "required": True, "description": "Backend name",
                        "schema": {"type": "string"}},
        "BlobId": {"name": "blob_id", "in": "path", "required": True, "description": "Blob ID in that backend",
                   "schema": {"type": "string"}},
        "LockSessionId": {"name": "session", "in": "path", "required": True, "description": "A lock session's id",
                          "schema": {"type": "string"}},
        "LockType": {"name": "type", "in": "query", "required": False,
                     "description": "The lock to test for (absent: list every lock)",
                     "schema": {"type": "string", "enum": ["read", "write"]}},
        "LockKind": {"name": "kind", "in": "query", "required": False, "description": "`posix` (fcntl) or `flock`",
                     "schema": {"type": "string", "enum": ["posix", "flock"], "default": "posix"}},
        "LockStart": {"name": "start", "in": "query", "required": False, "description": "First byte",
                      "schema": {"type": "integer", "minimum": 0, "default": 0}},
        "LockLength": {"name": "length", "in": "query", "required": False,
                       "description": "Bytes (0: to the end of the file)",
                       "schema": {"type": "integer", "minimum": 0, "default": 0}},
        "LockSession": {"name": "session", "in": "query", "required": False,
                        "description": "The asking owner's session (its own locks never conflict)",
                        "schema": {"type": "string"}},
        "LockOwner": {"name": "owner", "in": "query", "required": False, "description": "The asking owner",
                      "schema": {"type": "string"}},
        "InstanceId": {"name": "instance_id", "in": "path", "required": True,
                       "description": "A node's instance ID (a pod name under the operator)",
                       "schema": {"type": "string"}},
        "BlockLocation": {"name": "location", "in": "path", "required": True,
                          "description": "Instance ID of the node owning the block's file",
                          "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}},
        "BlockHash": {"name": "hash", "in": "path", "required": True,
                      "description": "The block's name: SHA-256 of its plaintext, 64 lowercase hex digits",
                      "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        "Recursive": flag("recursive", "Include the whole subtree (DELETE: delete it)"),
        "Mode": {"name": "mode", "in": "query", "required": False, "description": "The transfer's direction",
                 "schema": {"type": "string", "enum": ["download", "upload"], "default": "download"}},
        "Overwrite": {**flag("overwrite", "Uploads: replace an existing file (`false`: 409 when it exists)"),
                      "schema": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"],
                                 "default": "true"}},
        "Size": {"name": "size", "in": "query", "required": False,
                 "description": "Uploads: the size in bytes, when known (a size over a quota or "
                                "`server.max_body_bytes` is refused before the upgrade)",
                 "schema": {"type": "integer", "minimum": 0}},
        "MaxDepth": {"name": "max_depth", "in": "query", "required": False,
                     "description": "How many levels a recursive listing descends",
                     "schema": {"type": "integer", "minimum": 0, "maximum": directories.MAX_MAX_DEPTH,
                                "default": directories.DEFAULT_MAX_DEPTH}},
        "Limit": {"name": "limit", "in": "query", "required": False,
                  "description": "Listings: at most this many entries; `next` then names the following page",
                  "schema": {"type": "integer", "minimum": 1, "maximum": directories.MAX_LIMIT}},
        "After": {"name": "after", "in": "query", "required": False,
                  "description": "Listings: the `next` cursor of the previous page (opaque)",
                  "schema": {"type": "string"}},
        "Backend": {"name": "backend", "in": "query", "required": False,
                    "description": "Backend for a new file's bytes (`localfs` or `s3`); default from the config",
                    "schema": {"type": "string"}},
        "BackendHeader": header("X-CallFS-Backend", "Same as the `backend` query parameter (takes precedence)"),
        "TargetHeader": header("X-CallFS-Target", "Create a symbolic link to this target (percent-encoded UTF-8, "
                                                  "1-4095 bytes); no body"),
        "LinkToHeader": header("X-CallFS-Link-To", "Create a hard link: a second name of the entry at this absolute "
                                                   "path (percent-encoded UTF-8; not a directory); no body"),
        "MTimeHeader": header("X-CallFS-MTime", "A whole write that creates the file: its times (RFC 3339 with a "
                                                "time zone; never later than now); an overwrite ignores it"),
        "SpecialHeader": header("X-CallFS-Special", "Create a special file: `fifo`, `socket`, `char` or `block`; "
                                                    "no body"),
        "RdevHeader": header("X-CallFS-Rdev", "A device node's device number, decimal (0-4294967295)"),
        "IfMatch": header("If-Match", "Entity tags (or `*`) the current version must match (RFC 9110 §13.1.1)"),
        "IfNoneMatch": header("If-None-Match", "Entity tags (or `*`) the current version must not match"),
        "IfModifiedSince": header("If-Modified-Since", "HTTP date; 304 when not modified since"),
        "IfUnmodifiedSince": header("If-Unmodified-Since", "HTTP date; 412 when modified since"),
        "Range": header("Range", "One range `bytes=<first>-[<last>]` or `bytes=-<suffix>`"),
        "IfRange": header("If-Range", "Entity tag or HTTP date: honour `Range` only while it matches"),
        "ContentRange": header(
            "Content-Range",
            "`bytes <first>-<last>/*` (inclusive): write the body at that range of the existing file",
        ),
        "XattrName": {"name": "name", "in": "query", "required": False,
                      "description": "An extended attribute's name (`user.…`, `trusted.…`, `security.…`): answer "
                                     "its raw value instead of the list of names",
                      "schema": {"type": "string", "minLength": 1}},
        "XattrNameRequired": {"name": "name", "in": "query", "required": True,
                              "description": "The extended attribute's name (`user.…`, `trusted.…`, `security.…`; "
                                             "1-255 bytes of UTF-8)",
                              "schema": {"type": "string", "minLength": 1}},
        "XattrValues": flag("values", "Lists: include each value, base64-encoded (needs `r` on the entry)"),
        "XattrMode": {"name": "mode", "in": "query", "required": False,
                      "description": "`create`: only when the attribute does not exist (409 otherwise); "
                                     "`replace`: only when it does (404 otherwise)",
                      "schema": {"type": "string", "enum": ["any", "create", "replace"], "default": "any"}},
        "KeyUser": {"name": "user", "in": "path", "required": True, "description": "A user name",
                    "schema": {"type": "string"}},
        "User": {"name": USER_HEADER, "in": "header", "required": True,
                 "description": "The user the peer acts for", "schema": {"type": "string"}},
    }


def _schemas_component() -> Json:
    codes = error_codes()
    nullable_int = {"type": ["integer", "null"], "minimum": 0}
    limit = {"type": ["integer", "null"], "minimum": 1, "description": "Positive integer, or null for unlimited"}
    date_time = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC, seconds precision"}
    return {
        "ErrorCode": {
            "type": "string",
            "enum": list(codes),
            "description": "Machine-readable error code, with its HTTP status: "
                           + ", ".join(f"`{code}` {status}" for code, status in codes.items()) + ".",
        },
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": _schema("ErrorCode"),
                "message": {"type": "string", "description": "Human-readable explanation"},
                "instance_id": {"type": "string", "description": "409 on POST: the node holding the existing file"},
                "update_url": {"type": "string", "format": "uri",
                               "description": "409 on POST: where to PUT to overwrite the existing file"},
                "size": {"type": "integer", "minimum": 0, "description": "416: the file's size in bytes"},
            },
            "additionalProperties": True,
        },
        "Item": {
            "type": "object",
            "required": ["name", "path", "type", "size", "mode", "owner", "group", "mtime"],
            "properties": {
                "name": {"type": "string", "description": "Last path segment (empty for the root)"},
                "path": {"type": "string", "description": "Canonical absolute path"},
                "type": {"type": "string", "enum": ["file", "directory", "symlink", "special"]},
                "ino": {"type": "integer", "minimum": 1,
                        "description": "The inode number: the same for every name of one inode, kept across "
                                       "renames"},
                "size": {"type": "integer", "minimum": 0},
                "target": {"type": "string", "description": "A symbolic link's target (links only)"},
                "special": {"type": "string", "enum": ["fifo", "socket", "char", "block"],
                            "description": "A special file's kind (special files only)"},
                "rdev": {"type": "integer", "minimum": 0, "description": "A special file's device number"},
                "nlink": {"type": "integer", "minimum": 1,
                          "description": "The link count: a file's number of names (hard links), a directory's "
                                         "2 plus its number of subdirectories"},
                "mode": {"type": "string", "pattern": "^[0-7]{4}$", "examples": ["0644", "2775"]},
                "owner": {"type": "string"},
                "group": {"type": "string"},
                "uid": {"type": ["integer", "null"], "minimum": 0, "maximum": 4294967294,
                        "description": "Numeric owner a FUSE mount shows (null until set)"},
                "gid": {"type": ["integer", "null"], "minimum": 0, "maximum": 4294967294,
                        "description": "Numeric group a FUSE mount shows (null until set)"},
                "mtime": date_time,
                "atime": date_time,
                "ctime": date_time,
            },
        },
        "DirectoryListing": {
            "type": "object",
            "required": ["path", "type", "recursive", "count", "items"],
            "properties": {
                "path": {"type": "string"},
                "type": {"type": "string", "const": "directory"},
                "recursive": {"type": "boolean"},
                "max_depth": {"type": "integer", "minimum": 0, "description": "Present when recursive"},
                "count": {"type": "integer", "minimum": 0},
                "items": {"type": "array", "items": _schema("Item")},
                "next": {"type": "string",
                         "description": "With `limit`: the `after` cursor of the next page; absent on the last"},
            },
        },
        "PatchRequest": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "description": "New name in the same directory"},
                "destination": {"type": "string", "description": "New absolute path"},
                "overwrite": {"type": "boolean", "default": False},
                "exchange": {"type": "boolean", "default": False,
                             "description": "With `name`/`destination`: swap the two existing entries atomically"},
                "create_parents": {"type": "boolean", "default": False},
                "backend": {"type": "string", "description": "Move the file's bytes to this backend"},
                "instance": {"type": "string", "description": "Move the file's bytes to this node"},
                "mode": {"type": "string", "pattern": "^[0-7]{3,4}$",
                         "description": "Octal mode, e.g. `0640`, `2775`: setuid, setgid and sticky included (the "
                                        "setgid bit is cleared for a caller outside the entry's group)"},
                "owner": {"type": "string", "description": "New owning user (root only)"},
                "group": {"type": "string", "description": "New group (root, or the owner for one of its groups)"},
                "uid": {"type": "integer", "minimum": 0, "maximum": 4294967294,
                        "description": "New numeric owner (the owner or root)"},
                "gid": {"type": "integer", "minimum": 0, "maximum": 4294967294,
                        "description": "New numeric group (the owner or root)"},
                "atime": {"type": "string", "examples": ["now", "2026-11-22T04:16:00.25Z"],
                          "description": "`now` or an RFC 3339 date-time with a time zone: the owner or root; "
                                         "`now` also a caller with write permission (POSIX utimensat)"},
                "mtime": {"type": "string", "examples": ["now", "2026-11-22T04:16:00.25Z"],
                          "description": "As `atime`, for the modification time"},
                "size": {"type": "integer", "minimum": 0,
                         "description": "Truncate or extend the file to this many bytes (alone in the body)"},
            },
        },
        # Closed, so that an Item (which has a path too) is not also a Moved: the PATCH answer is oneOf both.
        "Moved": {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}},
                  "additionalProperties": False},
        "CopyRequest": {
            "type": "object",
            "required": ["source", "destination"],
            "additionalProperties": False,
            "properties": {
                "source": {"type": "string", "description": "Absolute path of the file or directory to copy"},
                "destination": {"type": "string", "description": "Absolute path of the copy"},
                "recursive": {"type": "boolean", "default": False, "description": "Copy a directory and its tree"},
                "owner": {"type": "string", "description": "Give every copy to this user, owner and group (root "
                                                          "only; otherwise copies are the caller's)"},
                "into": {"type": "boolean", "default": False,
                         "description": "Copy the entries of the directory `source` into the existing, empty "
                                        "directory `destination`"},
            },
        },
        "Copy": {
            "type": "object",
            "required": ["path", "files", "directories", "bytes"],
            "properties": {
                "path": {"type": "string", "description": "The copy (the destination directory with `into`)"},
                "files": {"type": "integer", "description": "Files created"},
                "directories": {"type": "integer", "description": "Directories created"},
                "bytes": {"type": "integer", "description": "Bytes the created files hold (shared, not copied)"},
            },
        },
        "LinkRequest": {
            "type": "object",
            "required": ["path", "expiry_seconds"],
            "properties": {
                "path": {"type": "string", "minLength": 1},
                "expiry_seconds": {"type": "integer", "minimum": links.MIN_EXPIRY_SECONDS,
                                   "maximum": links.MAX_EXPIRY_SECONDS},
            },
        },
        "Link": {
            "type": "object",
            "required": ["url", "token", "expires"],
            "properties": {"url": {"type": "string", "format": "uri"}, "token": {"type": "string"},
                           "expires": date_time},
        },
        "KeyRegistration": {
            "type": "object",
            "required": ["user", "key", "scope"],
            "properties": {
                "user": {"type": "string", "description": "Who requests with the key act as (not `root`)"},
                "key": {"type": "string", "minLength": 16, "maxLength": 512, "pattern": "^[!-~]+$",
                        "description": "The key itself: printable ASCII without spaces"},
                "scope": {"type": "string", "description": "The path the key is confined to"},
            },
        },
        "AccessKey": {
            "type": "object",
            "required": ["user", "scope", "created"],
            "properties": {"user": {"type": "string"}, "scope": {"type": "string"},
                           "created": {"type": "string", "format": "date-time"}},
        },
        "DrainProgress": {
            "type": "object",
            "required": ["instance_id", "state", "blocks_left", "files_left"],
            "properties": {
                "instance_id": {"type": "string"},
                "state": {"type": "string", "enum": ["draining", "drained"],
                          "description": "`drained` once `blocks_left` and `files_left` are both 0"},
                "blocks_left": {"type": "integer", "minimum": 0,
                                "description": "Referenced blocks with a copy on the node and fewer than "
                                               "`backend.replicas` copies on live nodes that stay"},
                "files_left": {"type": "integer", "minimum": 0,
                               "description": "Files whose bytes are one blob on the node's local disk"},
            },
        },
        "LostNode": {
            "type": "object",
            "required": ["instance_id", "state", "since", "block_copies", "blocks_left", "files_lost",
                         "lost_files"],
            "properties": {
                "instance_id": {"type": "string"},
                "state": {"type": "string", "enum": ["lost"]},
                "since": {"type": "string", "format": "date-time", "description": "When it was declared lost"},
                "block_copies": {"type": "integer", "minimum": 0,
                                 "description": "`block_replicas` rows still naming the node (0 once every block "
                                                "it held has its copies elsewhere or was collected)"},
                "blocks_left": {"type": "integer", "minimum": 0,
                                "description": "Referenced blocks that had a copy there with fewer than "
                                               "`backend.replicas` copies on live nodes that stay"},
                "files_lost": {"type": "integer", "minimum": 0,
                               "description": "Files whose bytes were one blob on the node's disk: lost"},
                "lost_files": {"type": "array", "items": {"type": "string"},
                               "description": "Paths of the first 1000 of them, sorted"},
            },
        },
        "NodeConversion": {
            "type": "object",
            "required": ["instance_id", "running", "remaining_files", "remaining_bytes"],
            "properties": {
                "instance_id": {"type": "string"},
                "reachable": {"type": "boolean", "description": "The node answered (in a cluster report)"},
                "error": {"type": "string", "description": "Why the node did not answer (unreachable only)"},
                "running": {"type": ["boolean", "null"],
                            "description": "A pass runs in the process that answered (null: unreachable)"},
                "remaining_files": {"type": "integer", "minimum": 0,
                                    "description": "Files still stored as one blob that this node converts "
                                                   "(each inode once)"},
                "remaining_bytes": {"type": "integer", "minimum": 0, "description": "Their bytes"},
                "converted_files": {"type": "integer", "minimum": 0,
                                    "description": "Files converted by the answering process since it started"},
                "converted_bytes": {"type": "integer", "minimum": 0},
                "failures": {"type": "integer", "minimum": 0,
                             "description": "Conversions that failed (tried again by the next pass)"},
                "skipped": {"type": "integer", "minimum": 0,
                            "description": "Files changed while being converted (tried again by the next pass)"},
                "passes": {"type": "integer", "minimum": 0, "description": "Passes finished"},
                "last_error": {"type": ["string", "null"]},
            },
        },
        "ConversionReport": {
            "type": "object",
            "required": ["nodes", "remaining_files", "remaining_bytes", "converted_files", "converted_bytes",
                         "failures"],
            "properties": {
                "nodes": {"type": "array", "items": _schema("NodeConversion")},
                "remaining_files": {"type": "integer", "minimum": 0, "description": "Sum over the nodes"},
                "remaining_bytes": {"type": "integer", "minimum": 0},
                "converted_files": {"type": "integer", "minimum": 0},
                "converted_bytes": {"type": "integer", "minimum": 0},
                "failures": {"type": "integer", "minimum": 0},
            },
        },
        "RevokedKeys": {
            "type": "object",
            "required": ["user", "revoked"],
            "properties": {"user": {"type": "string"},
                           "revoked": {"type": "integer", "minimum": 0, "description": "Keys revoked"}},
        },
        "LockSessionRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"ttl": {"type": "number", "minimum": 1, "maximum": 3600,
                                   "description": "Seconds without a renewal before the session expires"}},
        },
        "LockSession": {
            "type": "object",
            "required": ["id", "ttl"],
            "properties": {"id": {"type": "string"}, "ttl": {"type": "number", "description": "Seconds"}},
        },
        "FileLockRequest": {
            "type": "object",
            "required": ["session", "owner", "type"],
            "properties": {
                "session": {"type": "string", "description": "The lock session it is held under"},
                "owner": {"type": "string", "maxLength": 256,
                          "description": "The owner within the session (a mount: the kernel's lock owner)"},
                "kind": {"type": "string", "enum": ["posix", "flock"], "default": "posix"},
                "type": {"type": "string", "enum": ["read", "write", "unlock"]},
                "start": {"type": "integer", "minimum": 0, "default": 0, "description": "First byte (posix)"},
                "length": {"type": "integer", "minimum": 0, "default": 0,
                           "description": "Bytes, 0: to the end of the file (posix)"},
                "pid": {"type": "integer", "default": 0, "description": "The holder's process id, informational"},
            },
        },
        "FileLock": {
            "type": "object",
            "required": ["session", "owner", "kind", "type", "start", "length", "pid"],
            "properties": {
                "session": {"type": "string"}, "owner": {"type": "string"},
                "kind": {"type": "string", "enum": ["posix", "flock"]},
                "type": {"type": "string", "enum": ["read", "write"]},
                "start": {"type": "integer", "minimum": 0},
                "length": {"type": "integer", "minimum": 0, "description": "0: to the end of the file"},
                "pid": {"type": "integer"},
            },
        },
        "FileLockGranted": {
            "type": "object",
            "required": ["ino", "granted"],
            "properties": {"ino": {"type": "integer"}, "granted": {"type": "boolean", "const": True}},
        },
        "FileLocks": {
            "type": "object",
            "required": ["ino"],
            "properties": {
                "ino": {"type": "integer", "description": "The inode the locks belong to"},
                "locks": {"type": "array", "items": _schema("FileLock")},
                "conflict": {"type": "null"},
            },
        },
        "QuotaLimits": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {"bytes_limit": limit, "inodes_limit": limit},
        },
        "Quota": {
            "type": "object",
            "required": ["path", "bytes_limit", "inodes_limit", "bytes_used", "inodes_used"],
            "properties": {
                "path": {"type": "string"},
                "bytes_limit": limit,
                "inodes_limit": limit,
                "bytes_used": {"type": "integer", "minimum": 0},
                "inodes_used": {"type": "integer", "minimum": 0},
            },
        },
        "ClusterNode": {
            "type": "object",
            "required": ["instance_id", "url", "state", "source", "capacity_bytes", "free_bytes", "version",
                         "last_heartbeat", "self"],
            "properties": {
                "instance_id": {"type": ["string", "null"]},
                "url": {"type": "string"},
                "state": {"type": "string", "enum": ["up", "down", "unknown"]},
                "source": {"type": "string", "enum": ["metadata", "static", "dns"]},
                "capacity_bytes": nullable_int,
                "free_bytes": nullable_int,
                "version": {"type": ["string", "null"]},
                "last_heartbeat": {**date_time, "type": ["string", "null"]},
                "self": {"type": "boolean"},
                "leaving": {"type": "boolean", "description": "Being drained before removal"},
            },
        },
        "ClusterNodes": {
            "type": "object",
            "required": ["instance_id", "count", "nodes"],
            "properties": {
                "instance_id": {"type": "string", "description": "This node"},
                "count": {"type": "integer", "minimum": 0},
                "nodes": {"type": "array", "items": _schema("ClusterNode")},
                "replication": {
                    "type": ["object", "null"],
                    "description": "Redundancy of the blocks of the node-local backend, over the whole cluster "
                                   "(`null`: that backend is unavailable on this node)",
                    "required": ["backend", "replicas", "under_replicated_blocks"],
                    "properties": {
                        "backend": {"type": "string"},
                        "replicas": {"type": "integer", "minimum": 1,
                                     "description": "Copies each block is written to (`backend.replicas`)"},
                        "under_replicated_blocks": {
                            "type": "integer", "minimum": 0,
                            "description": "Referenced blocks with fewer copies on live nodes",
                        },
                    },
                },
            },
        },
        "Xattrs": {
            "type": "object",
            "required": ["path", "xattrs"],
            "properties": {
                "path": {"type": "string"},
                "xattrs": {
                    "type": "array",
                    "description": "In name order (bytewise)",
                    "items": {
                        "type": "object",
                        "required": ["name", "size"],
                        "properties": {
                            "name": {"type": "string"},
                            "size": {"type": "integer", "minimum": 0, "description": "Bytes of the value"},
                            "value": {"type": "string", "contentEncoding": "base64",
                                      "description": "The value (with `values=true` only)"},
                        },
                    },
                },
            },
        },
        "XattrSet": {
            "type": "object",
            "required": ["path", "name", "size"],
            "properties": {"path": {"type": "string"}, "name": {"type": "string"},
                           "size": {"type": "integer", "minimum": 0}},
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Ready": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not ready"]},
                "checks": {"type": "object", "additionalProperties": {"type": "boolean"},
                           "description": "`metadata`, `locks` and `backend:<name>`"},
                "errors": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "Why each unavailable backend is down"},
            },
        },
        "RelocateRequest": {
            "type": "object",
            "required": ["path", "backend"],
            "properties": {"path": {"type": "string"}, "backend": {"type": "string"}},
        },
    }


def _responses_component() -> Json:
    """One error response per HTTP status that some error code carries, listing those codes."""
    by_status: dict[int, list[str]] = {}
    for code, status in error_codes().items():
        by_status.setdefault(status, []).append(code)
    out: Json = {}
    for status in sorted(by_status):
        headers = ["Cache-Control"]
        if status == 401:
            headers.append("WWW-Authenticate")
        if status == 416:
            headers.append("Content-Range")
        if status == 503:
            headers.append("Retry-After")
        if status == 429:
            headers.extend(("Retry-After", *_RATE_LIMIT_HEADERS))
        codes = ", ".join(f"`{code}`" for code in by_status[status])
        out[f"Error{status}"] = _response(f"Error: {codes}", _json(_schema("Error")), *headers)
    return out


_DESCRIPTION = f"""The REST API of a CallFS storage node.

Every request but `/health`, `/ready`, `{PATH}` and `/download/{{token}}` needs an API key:
`Authorization: Bearer <key>` (a bare key in `Authorization` is accepted too). Errors are JSON bodies
`{{"code", "message"}}` with the codes of the `ErrorCode` schema; an unknown route answers 404 `FILE_NOT_FOUND`
and a known route with another method 405 `METHOD_NOT_ALLOWED`. A HEAD answer never has a body, errors
included. JSON bodies are compact (`{{"status":"ok"}}`). Every response carries `X-Request-ID` and the security
headers `X-Content-Type-Options`, `X-Frame-Options`, `Content-Security-Policy`, `Referrer-Policy`,
`Permissions-Policy`, `Cross-Origin-Opener-Policy`, `Cross-Origin-Embedder-Policy` and
`Cross-Origin-Resource-Policy` (plus `Strict-Transport-Security` over TLS).

Operations marked `x-internal: true` (tag `internal`) are for peer nodes only: they authenticate with the
cluster's internal secret and name the acting user in `{USER_HEADER}`. Requests that a node forwards to a peer
carry `{FORWARDED_HEADER}`."""


@functools.cache
def build_document() -> Json:
    """The OpenAPI 3.1 document as a JSON-ready dict (built once; do not mutate the result)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "CallFS node REST API",
            "version": __version__,
            "summary": "Files, directories, extended attributes, single-use links, quotas and cluster membership of a "
                       "CallFS node",
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "security": [{"apiKey": []}],
        "tags": [
            {"name": "files", "description": "Read, write, move and delete files and directories"},
            {"name": "directories", "description": "Directory listings"},
            {"name": "links", "description": "Single-use download links"},
            {"name": "quotas", "description": "Directory quotas"},
            {"name": "locks", "description": "flock and fcntl file locks shared by every mount, and lock sessions"},
            {"name": "xattrs", "description": "Extended attributes of files and directories"},
            {"name": "keys", "description": "API keys registered at run time, each confined to a path"},
            {"name": "cluster", "description": "Cluster membership and peer-to-peer byte transfers"},
            {"name": "system", "description": "Liveness, readiness, metrics and this document"},
            {"name": INTERNAL_TAG, "description": "For peer nodes only (internal secret)"},
        ],
        "paths": _rate_limited({**_file_paths(), **_other_public_paths(), **_lock_paths(), **_system_paths(),
                                **_internal_paths()}),
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key from `auth` in the config"},
                "internalSecret": {"type": "http", "scheme": "bearer",
                                   "description": "The cluster's `auth.internal_proxy_secret` (peers only)"},
            },
            "schemas": _schemas_component(),
            "parameters": _parameters_component(),
            "headers": _headers_component(),
            "responses": _responses_component(),
        },
    }


@functools.cache
def render() -> bytes:
    """The document as UTF-8 JSON bytes: what ``GET /openapi.json`` serves and ``docs/openapi.json`` holds."""
    return (json.dumps(build_document(), indent=2, ensure_ascii=False) + "\n").encode()


async def openapi_json(request: web.Request) -> web.StreamResponse:
    """200 with the OpenAPI document (``application/json``)."""
    return web.Response(body=render(), content_type="application/json", charset="utf-8")


def add_routes(app: web.Application) -> None:
    """Register ``GET /openapi.json`` (and its automatic HEAD)."""
    app.router.add_get(PATH, openapi_json)


def main() -> None:
    """Write the document to stdout (``python -m callfs.api.openapi > docs/openapi.json``)."""
    sys.stdout.buffer.write(render())


if __name__ == "__main__":
    main()
