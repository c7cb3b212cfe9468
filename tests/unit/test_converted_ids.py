"""The content id of a file converted from one blob to blocks keeps the file's ETag and single-use links."""

from __future__ import annotations

from callfs.api.conditional import etag
from callfs.metadata.rows import is_content_id
from callfs.models import (
    Inode,
    InodeType,
    Layout,
    converted_content_id,
    etag_id,
    new_content_id,
    same_content,
)

BLOB = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def test_a_converted_content_id_is_a_content_id_with_the_blob_s_etag() -> None:
    converted = converted_content_id(BLOB)
    assert len(converted) == 32 and is_content_id(converted) and converted != BLOB
    assert converted != converted_content_id(BLOB)  # fresh each time: two copies converted apart differ
    assert etag_id(converted) == BLOB[:20] == etag_id(BLOB)
    blob = Inode(path="/f", type=InodeType.FILE, blob_id=BLOB, version=7)
    blocks = blob.evolve(blob_id=converted, layout=Layout.BLOCKS)
    assert etag(blocks) == etag(blob) == f'"{BLOB[:20]}7"'


def test_a_fresh_content_id_shows_its_own_characters() -> None:
    fresh = new_content_id()
    assert etag_id(fresh) == fresh[:20]
    assert etag_id(None) == ""


def test_same_content_accepts_the_blob_converted_and_nothing_else() -> None:
    converted = converted_content_id(BLOB)
    assert same_content(BLOB, BLOB) and same_content(converted, BLOB)
    assert not same_content(BLOB, converted)  # a blob is never made from blocks without a new version
    assert not same_content(converted_content_id("f" * 32), BLOB)
    assert not same_content(new_content_id(), BLOB)
    assert not same_content(None, BLOB) and not same_content(converted, None)
    fresh = new_content_id()
    assert not same_content(converted, fresh)
