"""Errors of the CSI driver and their gRPC status codes, translated at the edge in one place.

Every deliberate failure raises a :class:`CSIError` subclass that carries the status code the CSI specification
prescribes for that situation (spec, "Error Scheme" and each RPC's error table). Errors of the CallFS REST client
(:mod:`callfs.errors`, :class:`callfs.client.CallFSUnavailable`) are mapped by :func:`status_of`, and the
:func:`rpc` decorator turns whatever an RPC raises into ``context.abort(code, message)`` — so no RPC ever ends in
``UNKNOWN`` (an unexpected bug becomes ``INTERNAL`` with its message logged).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import grpc

from callfs import errors as fs_errors
from callfs.client import CallFSUnavailable

__all__ = [
    "Aborted",
    "AlreadyExists",
    "CSIError",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "ResourceExhausted",
    "Unavailable",
    "rpc",
    "status_of",
]

log = logging.getLogger(__name__)


class CSIError(Exception):
    """Base of the driver's deliberate errors; ``code`` is the gRPC status sent to the CO."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(CSIError):
    """A required field is missing or a value is malformed or unsupported (spec: ``INVALID_ARGUMENT``)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CSIError):
    """The volume (or node, or path) does not exist (spec: ``NOT_FOUND``)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CSIError):
    """A volume of that name exists with incompatible properties (spec: ``ALREADY_EXISTS``)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class OutOfRange(CSIError):
    """The capacity range cannot be satisfied (spec: ``OUT_OF_RANGE``)."""

    code = grpc.StatusCode.OUT_OF_RANGE


class FailedPrecondition(CSIError):
    """The volume is in a state that forbids the call, e.g. published elsewhere (spec: ``FAILED_PRECONDITION``)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(CSIError):
    """An operation on the same volume is in progress, or a pagination token is invalid (spec: ``ABORTED``)."""

    code = grpc.StatusCode.ABORTED


class ResourceExhausted(CSIError):
    """The cluster has no room for the request (spec: ``RESOURCE_EXHAUSTED``)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(CSIError):
    """The CallFS cluster cannot be reached; the CO retries (``UNAVAILABLE``)."""

    code = grpc.StatusCode.UNAVAILABLE


class Internal(CSIError):
    """A failure of the node itself (a mount command failed, the state file cannot be written)."""

    code = grpc.StatusCode.INTERNAL


_FS_CODES: Final[dict[type[fs_errors.CallFSError], grpc.StatusCode]] = {
    fs_errors.NotFound: grpc.StatusCode.NOT_FOUND,
    fs_errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    fs_errors.BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    fs_errors.AuthenticationFailed: grpc.StatusCode.UNAUTHENTICATED,
    fs_errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    fs_errors.QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    fs_errors.RateLimitExceeded: grpc.StatusCode.UNAVAILABLE,
    fs_errors.ServiceUnavailable: grpc.StatusCode.UNAVAILABLE,
    fs_errors.BadGateway: grpc.StatusCode.UNAVAILABLE,
    fs_errors.DirectoryNotEmpty: grpc.StatusCode.FAILED_PRECONDITION,
    fs_errors.Conflict: grpc.StatusCode.ABORTED,
    fs_errors.PreconditionFailed: grpc.StatusCode.ABORTED,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC ``(code, message)`` for an exception raised while serving an RPC.

    :class:`CSIError` → its own code; a CallFS server error → the code of its class (most specific match along
    the MRO, e.g. ``NotFound`` → ``NOT_FOUND``, ``AuthenticationFailed`` → ``UNAUTHENTICATED``, 5xx/unreachable
    → ``UNAVAILABLE``); anything else → ``INTERNAL``. The message names the CallFS error code when there is one.
    """
    if isinstance(exc, CSIError):
        return exc.code, str(exc) or type(exc).__name__
    if isinstance(exc, CallFSUnavailable):
        return grpc.StatusCode.UNAVAILABLE, f"CallFS cluster unreachable: {exc}"
    if isinstance(exc, fs_errors.CallFSError):
        for cls in type(exc).__mro__:
            if cls in _FS_CODES:
                return _FS_CODES[cls], f"CallFS {exc.code}: {exc}"
        if exc.status >= 500:
            return grpc.StatusCode.UNAVAILABLE, f"CallFS {exc.code}: {exc}"
        return grpc.StatusCode.INTERNAL, f"CallFS {exc.code}: {exc}"
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, f"timed out: {exc}"
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def rpc(
    method: Callable[[S, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[S, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    """Wrap an async servicer method so that every exception ends the call with the right status code.

    ``context.abort`` raises to end the call; that exception (and cancellation) pass through untouched.
    """

    @functools.wraps(method)
    async def handler(self: S, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the one edge where every error becomes a status
            code, message = status_of(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method.__name__)
            else:
                log.info("%s: %s %s", method.__name__, code.name, message)
            await context.abort(code, message)
            raise AssertionError("context.abort returned") from exc  # abort always raises

    return handler

