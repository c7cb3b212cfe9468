"""Pure parts of the client and the file CLI: FileInfo parsing, URL building, ranges, error and exit mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from callfs import errors
from callfs.cli.files import ExitCode, Location, exit_code_for, mode_string, parse_location, remote_path
from callfs.client import (
    CallFSUnavailable,
    FileInfo,
    canonical,
    directories_url_path,
    error_from_body,
    files_url_path,
    range_header,
)

HEADERS = {
    "X-CallFS-Type": "file",
    "X-CallFS-Size": "1234",
    "X-CallFS-Mode": "0640",
    "X-CallFS-Owner": "api-user-0",
    "X-CallFS-MTime": "2024-05-06T07:08:09Z",
    "ETag": '"v3-abc"',
}


def test_file_info_from_head_headers() -> None:
    info = FileInfo.from_headers("/docs/a.txt", CIMultiDict(HEADERS))
    assert info == FileInfo(
        path="/docs/a.txt",
        name="a.txt",
        type="file",
        size=1234,
        mode=0o640,
        owner="api-user-0",
        mtime=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        etag='"v3-abc"',
    )
    assert info.is_file and not info.is_dir


def test_header_names_are_case_insensitive() -> None:
    lowered = CIMultiDict({k.lower(): v for k, v in HEADERS.items()})
    assert FileInfo.from_headers("/x", lowered).mode == 0o640


def test_file_info_path_is_canonical_even_for_a_directory_hint() -> None:
    headers = CIMultiDict(HEADERS)
    headers["X-CallFS-Type"] = "directory"
    headers["X-CallFS-Mode"] = "1777"
    info = FileInfo.from_headers("a/./b/../c/", headers)
    assert (info.path, info.name, info.is_dir, info.mode) == ("/a/c", "c", True, 0o1777)


def test_root_has_an_empty_name() -> None:
    assert FileInfo.from_headers("/", CIMultiDict(HEADERS)).name == ""


def test_etag_is_optional_in_headers() -> None:
    headers = CIMultiDict(HEADERS)
    del headers["ETag"]
    assert FileInfo.from_headers("/x", headers).etag is None


def test_mtime_keeps_a_non_utc_offset() -> None:
    headers = CIMultiDict(HEADERS)
    headers["X-CallFS-MTime"] = "2024-05-06T09:08:09+02:00"
    mtime = FileInfo.from_headers("/x", headers).mtime
    assert mtime.utcoffset() == timedelta(hours=2)
    assert mtime == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.mark.parametrize("missing", ["X-CallFS-Type", "X-CallFS-Mode", "X-CallFS-Owner", "X-CallFS-MTime"])
def test_missing_metadata_header_is_a_value_error(missing: str) -> None:
    headers = CIMultiDict(HEADERS)
    del headers[missing]
    with pytest.raises(ValueError, match=missing):
        FileInfo.from_headers("/x", headers)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-CallFS-Type", "socket"),
        ("X-CallFS-Mode", "rw-r--r--"),
        ("X-CallFS-Size", "12kB"),
        ("X-CallFS-MTime", "yesterday"),
        ("X-CallFS-MTime", "2024-05-06T07:08:09"),
    ],
)
def test_malformed_metadata_header_is_a_value_error(name: str, value: str) -> None:
    headers = CIMultiDict(HEADERS)
    headers[name] = value
    with pytest.raises(ValueError):
        FileInfo.from_headers("/x", headers)


def test_file_info_from_listing_item() -> None:
    item = {
        "name": "b.bin",
        "path": "/a/b.bin",
        "type": "file",
        "size": 7,
        "mode": "0644",
        "owner": "alice",
        "mtime": "2024-01-02T03:04:05Z",
    }
    info = FileInfo.from_json(item)
    assert info == FileInfo(
        "/a/b.bin", "b.bin", "file", 7, 0o644, "alice", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), None
    )


def test_listing_item_round_trips_through_to_json() -> None:
    info = FileInfo(
        "/d", "d", "directory", 0, 0o1755, "bob", datetime(2023, 3, 3, tzinfo=timezone(timedelta(hours=-5)))
    )
    as_json = info.to_json()
    assert as_json["mode"] == "1755"
    assert FileInfo.from_json(as_json) == info


def test_listing_item_without_mode_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="mode"):
        FileInfo.from_json({"path": "/x", "type": "file", "owner": "a", "mtime": "2024-01-01T00:00:00Z"})


@pytest.mark.parametrize(
    ("path", "directory", "expected"),
    [
        ("/", False, "/v1/files/"),
        ("", False, "/v1/files/"),
        (".", True, "/v1/files/"),
        ("/a/b.txt", False, "/v1/files/a/b.txt"),
        ("a/b.txt", False, "/v1/files/a/b.txt"),
        ("/a/b/", False, "/v1/files/a/b"),
        ("/a/b", True, "/v1/files/a/b/"),
        ("/sp ace/q?x=1#frag", False, "/v1/files/sp%20ace/q%3Fx%3D1%23frag"),
        ("/100%/a+b", False, "/v1/files/100%25/a%2Bb"),
        ("/ünï/日本", False, "/v1/files/%C3%BCn%C3%AF/%E6%97%A5%E6%9C%AC"),
        ("/a/../b//./c", False, "/v1/files/b/c"),
        ("/tab\tname", False, "/v1/files/tab%09name"),
    ],
)
def test_files_url_path_quotes_each_segment(path: str, directory: bool, expected: str) -> None:
    assert files_url_path(path, directory=directory) == expected


def test_directories_url_path_of_root_and_nested() -> None:
    assert directories_url_path("/") == "/v1/directories/"
    assert directories_url_path("/x y/z") == "/v1/directories/x%20y/z"


@pytest.mark.parametrize("bad", ["/a\\b", "/a\x00b", "/a\nb", "/a\u202eb", "/../etc"])
def test_paths_the_server_rejects_are_rejected_before_sending(bad: str) -> None:
    with pytest.raises(errors.BadRequest):
        files_url_path(bad)


_segment = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="/\\\x7f"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", "..") and all(ord(c) >= 0x20 or c == "\t" for c in s))
_segment = _segment.filter(
    lambda s: not any(0x7F <= ord(c) <= 0x9F or 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in s)
)


@given(st.lists(_segment, min_size=1, max_size=5))
def test_quoted_url_decodes_to_the_same_segments(segments: list[str]) -> None:
    url_path = files_url_path("/" + "/".join(segments))
    encoded = url_path.removeprefix("/v1/files/").split("/")
    assert len(encoded) == len(segments)
    assert [unquote(s) for s in encoded] == segments
    assert all(set(s) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%") for s in encoded)


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [(0, None, None), (0, 10, "bytes=0-9"), (5, None, "bytes=5-"), (1024, 1, "bytes=1024-1024")],
)
def test_range_header(offset: int, length: int | None, expected: str | None) -> None:
    assert range_header(offset, length) == expected


@pytest.mark.parametrize(("offset", "length"), [(-1, None), (0, 0), (3, -2)])
def test_invalid_range_is_a_value_error(offset: int, length: int | None) -> None:
    with pytest.raises(ValueError):
        range_header(offset, length)


def test_canonical_matches_the_server_rule() -> None:
    assert canonical("a/./b/../c/") == "/a/c"
    assert canonical("") == "/"


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "FILE_NOT_FOUND", errors.NotFound),
        (409, "FILE_ALREADY_EXISTS", errors.AlreadyExists),
        (409, "DIRECTORY_NOT_EMPTY", errors.DirectoryNotEmpty),
        (401, "AUTHENTICATION_FAILED", errors.AuthenticationFailed),
        (403, "PERMISSION_DENIED", errors.PermissionDenied),
        (400, "NOT_A_DIRECTORY", errors.NotADirectory),
        (410, "LINK_EXPIRED", errors.LinkExpired),
        (507, "QUOTA_EXCEEDED", errors.QuotaExceeded),
        (502, "BAD_GATEWAY", errors.BadGateway),
    ],
)
def test_error_body_rebuilds_the_server_class(status: int, code: str, cls: type[errors.CallFSError]) -> None:
    exc = error_from_body(status, {"code": code, "message": "the reason"}, "fallback")
    assert type(exc) is cls
    assert exc.message == "the reason"


def test_error_body_extra_fields_are_kept() -> None:
    body = {"code": "FILE_ALREADY_EXISTS", "message": "m", "instance_id": "n2", "update_url": "http://n2/x"}
    exc = error_from_body(409, body, "Conflict")
    assert exc.extra == {"instance_id": "n2", "update_url": "http://n2/x"}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (404, errors.NotFound),
        (401, errors.AuthenticationFailed),
        (403, errors.PermissionDenied),
        (400, errors.BadRequest),
        (409, errors.Conflict),
        (503, errors.ServiceUnavailable),
        (416, errors.RangeNotSatisfiable),
    ],
)
def test_bodyless_error_maps_to_the_general_class_of_its_status(status: int, cls: type[errors.CallFSError]) -> None:
    exc = error_from_body(status, None, "Not Found")
    assert type(exc) is cls
    assert exc.message == "Not Found"


def test_non_json_error_body_falls_back_to_the_status() -> None:
    exc = error_from_body(500, ["not", "an", "object"], "Internal Server Error")
    assert type(exc) is errors.CallFSError
    assert exc.message == "Internal Server Error"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.NotFound("x"), ExitCode.NOT_FOUND),
        (FileNotFoundError(2, "No such file", "a"), ExitCode.NOT_FOUND),
        (errors.AuthenticationFailed("x"), ExitCode.DENIED),
        (errors.PermissionDenied("x"), ExitCode.DENIED),
        (PermissionError(13, "denied"), ExitCode.DENIED),
        (errors.AlreadyExists("x"), ExitCode.CONFLICT),
        (errors.DirectoryNotEmpty("x"), ExitCode.CONFLICT),
        (errors.PreconditionFailed("x"), ExitCode.CONFLICT),
        (FileExistsError(17, "exists"), ExitCode.CONFLICT),
        (errors.BadRequest("x"), ExitCode.USAGE),
        (errors.IsADirectory("x"), ExitCode.USAGE),
        (click.UsageError("x"), ExitCode.USAGE),
        (CallFSUnavailable("refused"), ExitCode.UNAVAILABLE),
        (errors.BadGateway("x"), ExitCode.UNAVAILABLE),
        (errors.LockTimeout("x"), ExitCode.UNAVAILABLE),
        (errors.RateLimitExceeded("x"), ExitCode.UNAVAILABLE),
        (errors.CallFSError("boom"), ExitCode.ERROR),
        (errors.QuotaExceeded("x"), ExitCode.ERROR),
        (OSError(5, "I/O error"), ExitCode.ERROR),
    ],
)
def test_exit_code_for(exc: BaseException, code: ExitCode) -> None:
    assert exit_code_for(exc) == code


def test_exit_codes_are_distinct_and_stable() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("kind", "mode", "expected"),
    [
        ("file", 0o644, "-rw-r--r--"),
        ("directory", 0o755, "drwxr-xr-x"),
        ("directory", 0o1777, "drwxrwxrwt"),
        ("directory", 0o1770, "drwxrwx--T"),
        ("file", 0o000, "----------"),
    ],
)
def test_mode_string(kind: str, mode: int, expected: str) -> None:
    assert mode_string(kind, mode) == expected


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("callfs:/a/b", Location(True, "/a/b", False)),
        (":/a/b/", Location(True, "/a/b", True)),
        (":", Location(True, "/", True)),
        ("callfs:", Location(True, "/", True)),
        ("./local.txt", Location(False, "./local.txt", False)),
        ("/abs/dir/", Location(False, "/abs/dir/", True)),
        ("-", Location(False, "-", False)),
    ],
)
def test_parse_location(arg: str, expected: Location) -> None:
    assert parse_location(arg) == expected


def test_remote_path_accepts_both_prefixes_and_bare_paths() -> None:
    assert remote_path("callfs:/x") == remote_path(":/x") == remote_path("/x") == remote_path("x") == "/x"


def test_file_info_reads_numeric_owner_times_target_and_special_kind() -> None:
    headers = CIMultiDict({**HEADERS, "X-CallFS-Type": "symlink", "X-CallFS-UID": "1000", "X-CallFS-GID": "0",
                           "X-CallFS-ATime": "2024-05-06T07:08:09.250000Z", "X-CallFS-CTime": "2024-05-07T00:00:00Z",
                           "X-CallFS-Target": "a%20%C3%BC/b"})
    info = FileInfo.from_headers("/l", headers)
    assert (info.is_symlink, info.uid, info.gid, info.target) == (True, 1000, 0, "a ü/b")
    assert info.atime == datetime(2024, 5, 6, 7, 8, 9, 250_000, tzinfo=UTC)
    assert info.ctime == datetime(2024, 5, 7, tzinfo=UTC)
    item = {"path": "/p", "type": "special", "size": 0, "mode": "0600", "owner": "u", "mtime": "2024-05-06T07:08:09Z",
            "uid": None, "gid": 7, "special": "fifo", "rdev": 0}
    special = FileInfo.from_json(item)
    assert (special.type, special.special, special.rdev, special.uid, special.gid) == ("special", "fifo", 0, None, 7)
    with pytest.raises(ValueError):
        FileInfo.from_headers("/l", CIMultiDict({**HEADERS, "X-CallFS-UID": "-1"}))
