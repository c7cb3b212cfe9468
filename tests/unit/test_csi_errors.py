"""gRPC status mapping of driver and CallFS errors (callfs_csi.errors)."""

from __future__ import annotations

import grpc
import pytest

from callfs import errors as fs_errors
from callfs.client import CallFSUnavailable
from callfs_csi import errors


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.OutOfRange("x"), grpc.StatusCode.OUT_OF_RANGE),
        (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Aborted("x"), grpc.StatusCode.ABORTED),
        (fs_errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (fs_errors.NotADirectory("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (fs_errors.AuthenticationFailed("x"), grpc.StatusCode.UNAUTHENTICATED),
        (fs_errors.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
        (fs_errors.QuotaExceeded("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (fs_errors.LockTimeout("x"), grpc.StatusCode.UNAVAILABLE),
        (fs_errors.BadGateway("x"), grpc.StatusCode.UNAVAILABLE),
        (CallFSUnavailable("refused"), grpc.StatusCode.UNAVAILABLE),
        (TimeoutError("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (RuntimeError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_of(exc: BaseException, code: grpc.StatusCode) -> None:
    assert errors.status_of(exc)[0] == code


def test_no_error_maps_to_unknown() -> None:
    classes = [errors.CSIError, *errors.CSIError.__subclasses__()]
    assert all(errors.status_of(cls("m"))[0] != grpc.StatusCode.UNKNOWN for cls in classes)


def test_callfs_messages_name_the_server_code() -> None:
    assert "QUOTA_EXCEEDED" in errors.status_of(fs_errors.QuotaExceeded("full"))[1]
