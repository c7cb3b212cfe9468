"""CallFS errors → errno for FUSE replies (csi/callfs_csi/fuse/errors.py)."""

from __future__ import annotations

import errno

import pytest

from callfs import errors as e
from callfs.client import CallFSUnavailable
from callfs_csi.fuse.errors import errno_for


@pytest.mark.parametrize(("exc", "code"), [
    (e.NotFound("x"), errno.ENOENT),
    (e.AlreadyExists("x"), errno.EEXIST),
    (e.DirectoryNotEmpty("x"), errno.ENOTEMPTY),
    (e.PermissionDenied("x"), errno.EACCES),
    (e.AuthenticationFailed("x"), errno.EACCES),
    (e.NotADirectory("x"), errno.ENOTDIR),
    (e.IsADirectory("x"), errno.EISDIR),
    (e.QuotaExceeded("x"), errno.ENOSPC),
    (e.BadRequest("x"), errno.EINVAL),
    (e.PayloadTooLarge("x"), errno.EFBIG),
    (e.RateLimitExceeded("x"), errno.EAGAIN),
    (e.PreconditionFailed("x"), errno.ESTALE),
    (e.Conflict("x"), errno.EBUSY),
    (CallFSUnavailable("refused"), errno.EIO),
    (TimeoutError(), errno.EIO),
    (e.ServiceUnavailable("x"), errno.EIO),
    (e.BadGateway("x"), errno.EIO),
    (e.CallFSError("x"), errno.EIO),
    (RuntimeError("bug"), errno.EIO),
    (FileNotFoundError(errno.ENOENT, "local"), errno.ENOENT),
])
def test_each_error_has_its_errno(exc: BaseException, code: int) -> None:
    assert errno_for(exc) == code


def test_specialised_bad_requests_are_not_einval() -> None:
    assert errno_for(e.IsADirectory("d")) != errno.EINVAL
    assert errno_for(e.NotADirectory("f")) != errno.EINVAL
