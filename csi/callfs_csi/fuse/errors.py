"""Translation of CallFS client errors to ``errno`` values, in one place (``STYLE.md``: "translated at the edge").

The mapping follows the error codes of the REST API (docs/rest-api.md, "Errors"); a server that cannot be
reached within the request deadline is ``EIO`` (after retries, :mod:`callfs_csi.fuse.retry`), never a hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
from typing import Final

from callfs.client import CallFSUnavailable
from callfs.errors import (
    AlreadyExists,
    AuthenticationFailed,
    BadRequest,
    CallFSError,
    Conflict,
    CrossesQuotaRoot,
    DirectoryNotEmpty,
    IsADirectory,
    LockConflict,
    NotADirectory,
    NotFound,
    PathTooLong,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    RateLimitExceeded,
    XattrNotFound,
    XattrNotSupported,
    XattrsFull,
    XattrTooLarge,
)

from .bridge import CancelledCall
from .locking import Interrupted

# Most specific first: IsADirectory/NotADirectory are BadRequest subclasses, DirectoryNotEmpty shares 409, the
# extended attribute errors subclass NotFound, BadRequest and PayloadTooLarge.
_ERRNO_BY_CLASS: Final[tuple[tuple[type[BaseException], int], ...]] = (
    (XattrNotFound, errno.ENODATA),
    (XattrNotSupported, errno.ENOTSUP),
    (XattrTooLarge, errno.E2BIG),
    (XattrsFull, errno.ENOSPC),
    (NotFound, errno.ENOENT),
    (AlreadyExists, errno.EEXIST),
    (DirectoryNotEmpty, errno.ENOTEMPTY),
    (CrossesQuotaRoot, errno.EXDEV),
    (PermissionDenied, errno.EACCES),
    (AuthenticationFailed, errno.EACCES),
    (NotADirectory, errno.ENOTDIR),
    (IsADirectory, errno.EISDIR),
    (QuotaExceeded, errno.ENOSPC),
    (PayloadTooLarge, errno.EFBIG),
    (RateLimitExceeded, errno.EAGAIN),
    (PreconditionFailed, errno.ESTALE),
    (LockConflict, errno.EAGAIN),
    (Conflict, errno.EBUSY),
    (PathTooLong, errno.ENAMETOOLONG),
    (BadRequest, errno.EINVAL),
    (CancelledCall, errno.EINTR),
    (Interrupted, errno.EINTR),
    (concurrent.futures.CancelledError, errno.EINTR),
    (asyncio.CancelledError, errno.EINTR),
    (CallFSUnavailable, errno.EIO),
    (TimeoutError, errno.EIO),
)


def errno_for(exc: BaseException) -> int:
    """The ``errno`` a FUSE operation returns for ``exc``.

    ``XattrNotFound``→ENODATA, ``XattrNotSupported``→ENOTSUP, ``XattrTooLarge``→E2BIG, ``XattrsFull``→ENOSPC,
    ``NotFound``→ENOENT, ``AlreadyExists`` (``XattrExists`` too)→EEXIST, ``DirectoryNotEmpty``→ENOTEMPTY,
    ``PermissionDenied`` and ``AuthenticationFailed``→EACCES, ``CrossesQuotaRoot``→EXDEV, ``NotADirectory``→ENOTDIR,
    ``IsADirectory``→EISDIR, ``QuotaExceeded`` (507)→ENOSPC, ``PayloadTooLarge``→EFBIG,
    ``RateLimitExceeded``→EAGAIN, ``PreconditionFailed`` (the file changed under a pinned read)→ESTALE,
    ``LockConflict`` (a ``flock``/``fcntl`` lock held elsewhere)→EAGAIN (``EWOULDBLOCK``), other 409→EBUSY,
    other 400→EINVAL; a request cancelled inside the client and not recovered
    (:class:`.bridge.CancelledCall`, a cancelled future: the mount is stopping) and a lock wait interrupted by a
    signal (:class:`.locking.Interrupted`)→EINTR, never EIO; unreachable
    server, deadline passed, or any other server error (5xx)→EIO. An ``OSError`` carrying an errno keeps it.
    """
    for cls, code in _ERRNO_BY_CLASS:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, CallFSError):
        return errno.EIO
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return exc.errno
    return errno.EIO
