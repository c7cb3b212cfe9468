"""Inodes rendered as CallFS v1 response headers and listing items (docs/rest-api.md, GET/HEAD)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from callfs.api.conditional import etag
from callfs.api.render import headers, item
from callfs.models import Inode, InodeType

MTIME = datetime(2026, 11, 22, 4, 16, 0, 123_456, tzinfo=UTC)

FILE = Inode(
    path="/docs/report.pdf", type=InodeType.FILE, size=1234, mode=0o640, owner="alice", group="staff", mtime=MTIME,
    version=3, backend="localfs", blob_id="0123456789abcdef0123456789abcdef", instance_id="node-a1b2c3d4",
    ctime=MTIME,
)
DIRECTORY = Inode(path="/docs", type=InodeType.DIRECTORY, mode=0o1777, owner="bob", group="bob", mtime=MTIME)


def test_listing_item_of_a_file() -> None:
    assert item(FILE) == {
        "name": "report.pdf",
        "path": "/docs/report.pdf",
        "type": "file",
        "ino": FILE.ino,
        "size": 1234,
        "mode": "0640",
        "owner": "alice",
        "group": "staff",
        "uid": None,
        "gid": None,
        "mtime": "2026-11-22T04:16:00.123456Z",
        "atime": "2026-11-22T04:16:00.123456Z",
        "ctime": "2026-11-22T04:16:00.123456Z",
        "nlink": 1,
    }
    assert item(FILE.evolve(nlink=3))["nlink"] == 3


def test_listing_item_of_a_directory_keeps_the_sticky_bit() -> None:
    rendered = item(DIRECTORY)
    assert rendered["nlink"] == 2  # not counted: at least its name and its "."
    assert item(DIRECTORY.evolve(nlink=5))["nlink"] == 5
    assert rendered["type"] == "directory"
    assert rendered["mode"] == "1777"
    assert rendered["size"] == 0
    assert rendered["name"] == "docs"


def test_listing_item_of_the_root_has_an_empty_name() -> None:
    root = Inode(path="/", type=InodeType.DIRECTORY, mode=0o1777, mtime=MTIME)
    assert item(root)["name"] == ""
    assert item(root)["path"] == "/"


def test_listing_item_is_json_serialisable_and_utc() -> None:
    shifted = FILE.evolve(mtime=MTIME.astimezone(timezone(timedelta(hours=9))))
    assert json.loads(json.dumps(item(shifted)))["mtime"] == "2026-11-22T04:16:00.123456Z"
    assert item(FILE.evolve(mtime=MTIME.replace(microsecond=0)))["mtime"] == "2026-11-22T04:16:00Z"


def test_numeric_owner_times_and_symlink_target_are_rendered() -> None:
    link = Inode(path="/docs/latest", type=InodeType.SYMLINK, mode=0o777, owner="bob", group="bob", mtime=MTIME,
                 ctime=MTIME + timedelta(seconds=1), atime=MTIME - timedelta(seconds=1), uid=1000, gid=0,
                 target="reports/2026 ü.pdf")
    rendered = item(link)
    assert (rendered["uid"], rendered["gid"], rendered["target"]) == (1000, 0, "reports/2026 ü.pdf")
    assert (rendered["atime"], rendered["ctime"]) == ("2026-11-22T04:15:59.123456Z", "2026-11-22T04:16:01.123456Z")
    sent = headers(link)
    assert (sent["X-CallFS-UID"], sent["X-CallFS-GID"]) == ("1000", "0")
    assert sent["X-CallFS-Target"] == "reports/2026%20%C3%BC.pdf"
    assert not {"ETag", "Accept-Ranges"} & sent.keys()


def test_file_headers() -> None:
    assert headers(FILE) == {
        "X-CallFS-Type": "file",
        "X-CallFS-Ino": str(FILE.ino),
        "X-CallFS-Size": "1234",
        "X-CallFS-Mode": "0640",
        "X-CallFS-Owner": "alice",
        "X-CallFS-Group": "staff",
        "X-CallFS-MTime": "2026-11-22T04:16:00.123456Z",
        "X-CallFS-ATime": "2026-11-22T04:16:00.123456Z",
        "X-CallFS-CTime": "2026-11-22T04:16:00.123456Z",
        "X-CallFS-Nlink": "1",
        "Last-Modified": "Sun, 22 Nov 2026 04:16:00 GMT",
        "ETag": etag(FILE),
        "Accept-Ranges": "bytes",
        "X-CallFS-Instance-ID": "node-a1b2c3d4",
    }


def test_file_on_a_shared_backend_has_no_instance_header() -> None:
    rendered = headers(FILE.evolve(instance_id=None))
    assert "X-CallFS-Instance-ID" not in rendered
    assert rendered["ETag"] == etag(FILE)


def test_directory_headers_have_no_etag_ranges_or_instance() -> None:
    rendered = headers(DIRECTORY.evolve(instance_id="node-x"))
    assert rendered["X-CallFS-Type"] == "directory"
    assert rendered["X-CallFS-Mode"] == "1777"
    assert rendered["X-CallFS-Size"] == "0"
    assert rendered["X-CallFS-Ino"] == str(DIRECTORY.ino)
    assert rendered["Last-Modified"] == "Sun, 22 Nov 2026 04:16:00 GMT"
    assert not {"ETag", "Accept-Ranges", "X-CallFS-Instance-ID"} & rendered.keys()
    assert rendered["X-CallFS-Nlink"] == "2"


def test_header_values_are_all_strings() -> None:
    assert all(isinstance(value, str) for value in headers(FILE).values())
