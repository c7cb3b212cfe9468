"""The aiohttp application of the S3 listener (``s3.listen_addr``): authentication, routing of S3 actions
by method, path and sub-resource, and the one place where errors become S3 XML error bodies."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from callfs import errors
from callfs.api.keys import NODE
from callfs.node import Node
from callfs.s3 import buckets, messages, multipart, names, objects, versions
from callfs.s3.auth import authenticate
from callfs.s3.context import Context
from callfs.s3.errors import S3Error, from_engine, not_implemented

log = logging.getLogger("callfs.s3")

Action = Callable[[Context], Awaitable[web.StreamResponse]]

_UNSUPPORTED_BUCKET = ("acl", "policy", "cors", "lifecycle", "tagging", "website", "logging", "notification",
                       "replication", "encryption", "object-lock", "ownershipControls", "publicAccessBlock",
                       "requestPayment", "accelerate", "analytics", "metrics", "inventory",
                       "intelligent-tiering")
_UNSUPPORTED_OBJECT = ("acl", "tagging", "retention", "legal-hold", "torrent", "restore", "select", "attributes")


def _unsupported(query: web.Request, names_: tuple[str, ...]) -> str | None:
    return next((n for n in names_ if n in query.query), None)


def route(request: web.Request, bucket: str, key: str) -> Action:
    """The action for a request (Amazon S3 API Reference: each action's method, path and query).
    Raises :class:`S3Error` ``NotImplemented`` (501) for a sub-resource this server does not serve and
    ``MethodNotAllowed`` (405) for a method no action has."""
    method, query = request.method, request.query
    if not bucket:
        if method == "GET":
            return buckets.list_buckets
        raise S3Error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")
    if not key:
        if method == "GET" and "versioning" in query:
            return versions.get_versioning
        if method == "PUT" and "versioning" in query:
            return versions.put_versioning
        if method == "GET" and "versions" in query:
            return versions.list_object_versions
        unsupported = _unsupported(request, _UNSUPPORTED_BUCKET)
        if unsupported:
            raise not_implemented(f"The bucket sub-resource {unsupported!r}")
        if method == "GET":
            if "location" in query:
                return buckets.get_location
            if "uploads" in query:
                return multipart.list_uploads
            if query.get("list-type") == "2":
                return lambda ctx: buckets.list_objects(ctx, v2=True)
            return lambda ctx: buckets.list_objects(ctx, v2=False)
        if method == "PUT":
            return buckets.create_bucket
        if method == "DELETE":
            return buckets.delete_bucket
        if method == "HEAD":
            return buckets.head_bucket
        if method == "POST" and "delete" in query:
            return objects.delete_objects
        raise S3Error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")
    unsupported = _unsupported(request, _UNSUPPORTED_OBJECT)
    if unsupported:
        raise not_implemented(f"The object sub-resource {unsupported!r}")
    if method == "PUT":
        if "uploadId" in query or "partNumber" in query:
            if "uploadId" not in query or "partNumber" not in query:
                raise S3Error("InvalidRequest", 400, "UploadPart needs both uploadId and partNumber")
            return multipart.upload_part
        if "x-amz-copy-source" in request.headers:
            return objects.copy_object
        return objects.put_object
    if method in ("GET", "HEAD"):
        if "uploadId" in query and method == "GET":
            return multipart.list_parts
        if method == "HEAD":
            return lambda ctx: objects.get_object(ctx, head=True)
        return objects.get_object
    if method == "DELETE":
        return multipart.abort_upload if "uploadId" in query else objects.delete_object
    if method == "POST":
        if "uploads" in query:
            return multipart.create_upload
        if "uploadId" in query:
            return multipart.complete_upload
    raise S3Error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")


def split_path(path: str) -> tuple[str, str]:
    """``(bucket, key)`` of a path-style request path (``/bucket/key``); empty strings when absent."""
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


def error_response(exc: S3Error, request_id: str, *, head: bool) -> web.Response:
    """The XML error answer (no body for HEAD, as S3 answers)."""
    body = b"" if head else messages.error(exc.code, exc.message, exc.resource, request_id)
    response = web.Response(status=exc.status, body=body, content_type="application/xml", headers=exc.headers)
    if exc.status == 503:
        response.headers["Retry-After"] = "1"
    return response


async def handle(request: web.Request) -> web.StreamResponse:
    """Serve one S3 request: authenticate, route, run; every failure becomes an S3 XML error."""
    node = request.app[NODE]
    request_id = uuid.uuid4().hex.upper()[:16]
    start = time.perf_counter()
    bucket, key = split_path(request.path)
    status = 500
    node.metrics.in_flight.inc()
    try:
        try:
            authenticated = authenticate(request, node)
            if bucket:
                names.check_bucket(bucket)
            action = route(request, bucket, key)
            ctx = Context(request, node, authenticated.caller, authenticated.verified, bucket, key, request_id)
            response = await action(ctx)
        except S3Error as exc:
            response = error_response(exc, request_id, head=request.method == "HEAD")
        except errors.CallFSError as exc:
            if exc.status >= 500 and not isinstance(exc, errors.QuotaExceeded):
                log.warning("%s: %s", exc.code, exc.message)
            response = error_response(from_engine(exc, bucket=bucket, key=key), request_id,
                                      head=request.method == "HEAD")
        except FileNotFoundError:
            response = error_response(S3Error("ServiceUnavailable", 503, "the object changed while it was read; "
                                              "retry"), request_id, head=request.method == "HEAD")
        except (asyncio.CancelledError, ConnectionResetError):
            status = 499
            raise
        except Exception:
            log.exception("unhandled error serving S3 request %s", request_id)
            response = error_response(S3Error("InternalError", 500, "We encountered an internal error. Please try "
                                              "again."), request_id, head=request.method == "HEAD")
        if not response.prepared:
            response.headers["x-amz-request-id"] = request_id
        status = response.status
        return response
    finally:
        node.metrics.in_flight.dec()
        elapsed = time.perf_counter() - start
        node.metrics.requests.labels(method=request.method, path="s3", status_code=str(status)).inc()
        node.metrics.request_seconds.labels(method=request.method, path="s3").observe(elapsed)
        log.info("S3 %s %s %s %.1fms", request.method, request.path, status, elapsed * 1000)


def build_s3_app(node: Node) -> web.Application:
    """The S3 application of a started :class:`Node` (every path, every method: routing is by action)."""
    app = web.Application(client_max_size=node.config.server.max_json_bytes,
                          handler_args={"keepalive_timeout": node.config.server.read_timeout})
    app[NODE] = node
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)
    return app
