"""S3 errors: each carries its S3 error ``code`` and HTTP ``status`` (Amazon S3 API Reference, "Error
responses", the "List of error codes" table), and engine errors are translated to them in one place
(:func:`from_engine`)."""

from __future__ import annotations

from callfs import errors


class S3Error(Exception):
    """An S3 error response: ``code`` (e.g. ``NoSuchKey``), HTTP ``status``, a human ``message``, the
    ``resource`` (``/bucket/key``) it is about and ``headers`` to send with it."""

    def __init__(self, code: str, status: int, message: str, resource: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.resource = resource
        self.headers = dict(headers or {})
        """Headers the error answer carries (e.g. ``x-amz-delete-marker`` on a key whose current version is a
        delete marker)."""


def no_such_bucket(bucket: str) -> S3Error:
    return S3Error("NoSuchBucket", 404, "The specified bucket does not exist", f"/{bucket}")


def no_such_key(bucket: str, key: str) -> S3Error:
    return S3Error("NoSuchKey", 404, "The specified key does not exist.", f"/{bucket}/{key}")


def no_such_version(bucket: str, key: str) -> S3Error:
    return S3Error("NoSuchVersion", 404, "The specified version does not exist.", f"/{bucket}/{key}")


def access_denied(message: str = "Access Denied") -> S3Error:
    return S3Error("AccessDenied", 403, message)


def invalid_argument(message: str) -> S3Error:
    return S3Error("InvalidArgument", 400, message)


def malformed_xml(message: str = "The XML you provided was not well-formed or did not validate against our "
                  "published schema") -> S3Error:
    return S3Error("MalformedXML", 400, message)


def not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", 501, f"{what} is not implemented by this server")


def from_engine(exc: errors.CallFSError, *, bucket: str = "", key: str = "") -> S3Error:
    """The S3 error for an engine error raised while serving ``bucket``/``key`` (``key`` empty: a bucket
    request). A missing entry is ``NoSuchKey`` for an object request and ``NoSuchBucket`` for a bucket one."""
    resource = f"/{bucket}/{key}" if key else (f"/{bucket}" if bucket else "/")
    if isinstance(exc, errors.NotFound):
        return no_such_key(bucket, key) if key else no_such_bucket(bucket)
    if isinstance(exc, errors.PermissionDenied):
        return S3Error("AccessDenied", 403, exc.message, resource)
    if isinstance(exc, errors.PreconditionFailed):
        return S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold",
                       resource)
    if isinstance(exc, errors.RangeNotSatisfiable):
        return S3Error("InvalidRange", 416, "The requested range is not satisfiable", resource)
    if isinstance(exc, errors.PayloadTooLarge):
        return S3Error("EntityTooLarge", 400, exc.message, resource)
    if isinstance(exc, errors.QuotaExceeded | errors.InsufficientStorage):
        # No S3 code fits a directory quota or a full disk; the status says it (507 Insufficient Storage).
        return S3Error("QuotaExceeded" if isinstance(exc, errors.QuotaExceeded) else "InsufficientStorage",
                       507, exc.message, resource)
    if isinstance(exc, errors.RequestTimeout):
        return S3Error("RequestTimeout", 400, exc.message, resource)
    if isinstance(exc, errors.ServiceUnavailable):
        return S3Error("ServiceUnavailable", 503, exc.message, resource)
    if isinstance(exc, errors.NotADirectory | errors.IsADirectory | errors.AlreadyExists | errors.Conflict):
        # A key whose parent "folder" is an object, or an object over a folder: the namespace is a tree.
        return S3Error("InvalidRequest", 409 if not isinstance(exc, errors.BadRequest) else 400, exc.message,
                       resource)
    if isinstance(exc, errors.DirectoryNotEmpty):
        return S3Error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty", resource)
    if isinstance(exc, errors.BadGateway):
        return S3Error("ServiceUnavailable", 503, exc.message, resource)
    if exc.status < 500:
        return S3Error("InvalidRequest", exc.status if exc.status != 404 else 400, exc.message, resource)
    return S3Error("InternalError", 500, "We encountered an internal error. Please try again.", resource)
