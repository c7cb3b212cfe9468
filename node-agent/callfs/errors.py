"""The storage node's error hierarchy.

Every error the engine raises on purpose is a :class:`CallFSError` carrying its HTTP status and its
machine-readable code from the CallFS v1 error codes (docs/rest-api.md, "Errors").
The HTTP layer turns them into ``{"code", "message"}`` bodies in exactly one place.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CallFSError(Exception):
    """Base of all deliberate errors: ``status`` (HTTP) and ``code`` (JSON error code) are fixed per class.

    ``extra`` holds additional JSON fields for the error body (e.g. ``instance_id`` and ``update_url``).
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON error body: ``{"code": str, "message": str, **extra}``."""
        return {"code": self.code, "message": self.message, **self.extra}


class BadRequest(CallFSError):
    status = 400
    code = "BAD_REQUEST"


class PathTooLong(BadRequest):
    """A path longer than 4096 bytes (Linux ``PATH_MAX``), or longer than the metadata store can index (on
    PostgreSQL a B-tree entry holds at most about 2,700 bytes). A FUSE mount answers ``ENAMETOOLONG``."""

    status = 400
    code = "PATH_TOO_LONG"


class NotADirectory(BadRequest):
    status = 400
    code = "NOT_A_DIRECTORY"


class IsADirectory(BadRequest):
    status = 400
    code = "IS_A_DIRECTORY"


class AuthenticationFailed(CallFSError):
    status = 401
    code = "AUTHENTICATION_FAILED"


class PermissionDenied(CallFSError):
    status = 403
    code = "PERMISSION_DENIED"


class QuotaRootProtected(PermissionDenied):
    """A non-root caller tried to delete, move or replace a directory that is (or holds) a quota root."""

    code = "QUOTA_ROOT_PROTECTED"


class NotFound(CallFSError):
    status = 404
    code = "FILE_NOT_FOUND"


class LockSessionNotFound(NotFound):
    """The lock session named is unknown: never created, ended, expired (not renewed within its TTL, its locks
    are gone), or another user's. A mount opens a new session and takes its locks again where it can."""

    code = "LOCK_SESSION_NOT_FOUND"


class MethodNotAllowed(CallFSError):
    status = 405
    code = "METHOD_NOT_ALLOWED"


class RequestTimeout(CallFSError):
    """The client stopped sending the request body for longer than ``server.read_timeout`` seconds."""

    status = 408
    code = "REQUEST_TIMEOUT"


class AlreadyExists(CallFSError):
    status = 409
    code = "FILE_ALREADY_EXISTS"


class DirectoryNotEmpty(CallFSError):
    status = 409
    code = "DIRECTORY_NOT_EMPTY"


class Conflict(CallFSError):
    status = 409
    code = "CONFLICT"


class NodeLive(Conflict):
    """A node asked to be forgotten (declared lost for good) is live: its heartbeat is recent. A running node is
    drained, never forgotten; stop it, or wait until its heartbeat is older than the node timeout."""

    code = "NODE_LIVE"


class LockConflict(Conflict):
    """A file lock (``flock`` or ``fcntl`` record lock) is held by another owner over the range asked for: nothing
    was granted. The body carries the first conflicting lock as ``conflict`` (``kind``, ``type``, ``start``,
    ``length``, ``owner``, ``session``, ``pid``): ``F_GETLK``'s answer. A FUSE mount answers ``EAGAIN``."""

    code = "LOCK_CONFLICT"


class CrossesQuotaRoot(CallFSError):
    """A hard link, or a move of a hard-linked file, would give one inode names under different quota roots
    (a linked file is charged once, to the quotas all its names share). A FUSE mount answers ``EXDEV``, on
    which ``mv`` and ``ln`` users fall back to a copy."""

    status = 409
    code = "CROSSES_QUOTA_ROOT"


class LinkExpired(CallFSError):
    status = 410
    code = "LINK_EXPIRED"


class LinkContentChanged(LinkExpired):
    """The file at a link's path is no longer the content the link was minted for (deleted and re-created,
    overwritten or its bytes moved): the link is refused rather than serving bytes its minter never read."""

    code = "LINK_CONTENT_CHANGED"


class PreconditionFailed(CallFSError):
    status = 412
    code = "PRECONDITION_FAILED"


class PayloadTooLarge(CallFSError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(CallFSError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class RangeNotSatisfiable(CallFSError):
    status = 416
    code = "RANGE_NOT_SATISFIABLE"


class RateLimitExceeded(CallFSError):
    status = 429
    code = "RATE_LIMIT_EXCEEDED"


class QuotaExceeded(CallFSError):
    status = 507
    code = "QUOTA_EXCEEDED"


class DataCorrupted(CallFSError):
    """Stored bytes of a file are missing or fail their SHA-256 check: the read is refused rather than served
    wrong. HTTP 500."""

    status = 500
    code = "DATA_CORRUPTED"

class XattrNotFound(NotFound):
    """The entry has no extended attribute of that name (a FUSE mount answers ``ENODATA``). HTTP 404."""

    code = "XATTR_NOT_FOUND"


class XattrExists(AlreadyExists):
    """An extended attribute set with ``mode=create`` exists already (``XATTR_CREATE``: ``EEXIST``). HTTP 409."""

    code = "XATTR_EXISTS"


class BadXattrName(BadRequest):
    """An extended attribute name that is empty, longer than 255 bytes, holds a NUL or has nothing after its
    namespace prefix. HTTP 400."""

    code = "BAD_XATTR_NAME"


class XattrNotSupported(BadRequest):
    """An extended attribute namespace CallFS does not keep (anything but ``user.``, ``trusted.`` and
    ``security.``; ``system.`` holds POSIX ACLs, which CallFS does not have). A FUSE mount answers ``ENOTSUP``.
    HTTP 400."""

    code = "XATTR_NOT_SUPPORTED"


class XattrTooLarge(PayloadTooLarge):
    """An extended attribute value larger than 64 KiB (Linux ``XATTR_SIZE_MAX``; ``E2BIG``). HTTP 413."""

    code = "XATTR_TOO_LARGE"


class XattrsFull(PayloadTooLarge):
    """The extended attributes of one inode would exceed their total room (names and values; ``ENOSPC``).
    HTTP 413."""

    code = "XATTRS_FULL"


class InsufficientStorage(CallFSError):
    """The disk holding a backend's bytes is full (``ENOSPC``, ``EDQUOT``): nothing was written; retry once
    space is freed. ``/ready`` reports the backend not ready meanwhile."""

    status = 507
    code = "INSUFFICIENT_STORAGE"


class BadGateway(CallFSError):
    status = 502
    code = "BAD_GATEWAY"


class LoopDetected(CallFSError):
    """A forwarded request reached a node that would forward it again (RFC 5842 §7.2: 508)."""

    status = 508
    code = "LOOP_DETECTED"


class ServiceUnavailable(CallFSError):
    """A dependency (metadata store, lock service) is unreachable or a lock wait timed out.

    Retryable: the HTTP layer adds ``Retry-After``.
    """

    status = 503
    code = "SERVICE_UNAVAILABLE"


class LockTimeout(ServiceUnavailable):
    """A writer waited for a path lock longer than ``dlm.wait_timeout`` seconds."""

    code = "LOCK_TIMEOUT"


def _all_error_classes() -> list[type[CallFSError]]:
    """Every error class, most general first (breadth-first from :class:`CallFSError`)."""
    out: list[type[CallFSError]] = []
    queue: list[type[CallFSError]] = [CallFSError]
    while queue:
        cls = queue.pop(0)
        out.append(cls)
        queue.extend(cls.__subclasses__())
    return out


def error_class_for(code: str, status: int) -> type[CallFSError]:
    """The error class for a JSON error ``code`` (clients rebuild server errors with it).

    Falls back to the most general class with that HTTP ``status``, then to :class:`CallFSError`.
    """
    classes = _all_error_classes()
    for cls in classes:
        if cls.code == code:
            return cls
    for cls in classes:
        if cls.status == status:
            return cls
    return CallFSError
