"""The pure parts of the S3 face: key ↔ path mapping, listing pages, XML documents, body integrity checks."""

from __future__ import annotations

import base64
import hashlib
import zlib

import crc32c
import pytest

from callfs import versions
from callfs.s3 import listing, messages, names
from callfs.s3 import versions as s3versions
from callfs.s3.errors import S3Error
from callfs.s3.objects import object_attributes, quoted_etags
from callfs.s3.payload import Integrity

# --- names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "my-bucket", "my.bucket.2", "a" * 63, "0zero"])
def test_valid_bucket_names(name: str) -> None:
    assert names.check_bucket(name) == name


@pytest.mark.parametrize("name", ["ab", "a" * 64, "Upper", "under_score", "-start", "end-", "a..b", "192.168.1.1",
                                  ".multipart", ""])
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(S3Error) as info:
        names.check_bucket(name)
    assert (info.value.code, info.value.status) == ("InvalidBucketName", 400)


def test_keys_map_to_paths_below_the_bucket() -> None:
    assert names.object_path("b", "x/y.txt") == names.ObjectPath("/b/x/y.txt", False)
    assert names.object_path("b", "folder/") == names.ObjectPath("/b/folder", True)
    assert names.key_of("b", "/b/x/y.txt") == "x/y.txt"
    assert names.key_of("b", "/b/folder", is_dir=True) == "folder/"


@pytest.mark.parametrize("key", ["", "/lead", "a//b", "a/./b", "a/../b", "..", "x\x00y", "a/" + "n" * 256])
def test_keys_without_a_path_are_refused(key: str) -> None:
    with pytest.raises(S3Error) as info:
        names.object_path("b", key)
    assert info.value.status == 400


def test_too_long_key() -> None:
    with pytest.raises(S3Error) as info:
        names.object_path("b", "k/" * 600)
    assert info.value.code == "KeyTooLongError"


# --- listing -----------------------------------------------------------------------------------------------

KEYS = ["a-c", "a/b", "a/c/d", "b", "photos/2024/x.jpg", "photos/z.jpg", "é"]


def _page(**kwargs: object) -> listing.Page[None]:
    params = {"prefix": "", "delimiter": "", "after": "", "max_keys": 1000} | kwargs
    return listing.page([(k, None) for k in reversed(KEYS)], **params)  # type: ignore[arg-type]


def test_keys_come_in_utf8_byte_order() -> None:
    assert [k for k, _ in _page().objects] == KEYS


def test_delimiter_rolls_up_common_prefixes() -> None:
    found = _page(delimiter="/")
    assert [k for k, _ in found.objects] == ["a-c", "b", "é"]
    assert found.prefixes == ["a/", "photos/"]


def test_prefix_and_delimiter() -> None:
    found = _page(prefix="photos/", delimiter="/")
    assert [k for k, _ in found.objects] == ["photos/z.jpg"]
    assert found.prefixes == ["photos/2024/"]


def test_pages_continue_after_the_last_key_or_prefix() -> None:
    first = _page(delimiter="/", max_keys=2)
    assert ([k for k, _ in first.objects], first.prefixes, first.last) == (["a-c"], ["a/"], "a/")
    second = _page(delimiter="/", max_keys=2, after=first.last)
    assert ([k for k, _ in second.objects], second.prefixes, second.last) == (["b"], ["photos/"], "photos/")
    third = _page(delimiter="/", max_keys=2, after=second.last)
    assert ([k for k, _ in third.objects], third.prefixes, third.last) == (["é"], [], None)


def test_max_keys_zero_is_an_empty_page() -> None:
    assert _page(max_keys=0).objects == []


def test_continuation_tokens_round_trip() -> None:
    assert listing.decode_token(listing.encode_token("photos/é/x")) == "photos/é/x"
    with pytest.raises(S3Error):
        listing.decode_token("not base64!!")


# --- messages ----------------------------------------------------------------------------------------------


def test_parse_delete() -> None:
    body = (b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>'
            b"<Object><Key>a</Key></Object><Object><Key>b/c</Key><VersionId>null</VersionId></Object></Delete>")
    assert messages.parse_delete(body) == ([("a", None), ("b/c", "null")], True)


@pytest.mark.parametrize("body", [b"not xml", b"<Other/>", b"<Delete></Delete>", b"<Delete><Object/></Delete>",
                                  b'<!DOCTYPE x [<!ENTITY a "b">]><Delete/>'])
def test_malformed_delete(body: bytes) -> None:
    with pytest.raises(S3Error) as info:
        messages.parse_delete(body)
    assert info.value.code == "MalformedXML"


def test_parse_complete() -> None:
    body = (b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"aa\"</ETag></Part>"
            b"<Part><ETag>bb</ETag><PartNumber>3</PartNumber></Part></CompleteMultipartUpload>")
    assert messages.parse_complete(body) == [(1, '"aa"'), (3, "bb")]
    with pytest.raises(S3Error):
        messages.parse_complete(b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>x</ETag></Part>"
                                b"</CompleteMultipartUpload>")


def test_error_document() -> None:
    body = messages.error("NoSuchKey", "gone", "/b/k", "REQ1")
    assert b"<Code>NoSuchKey</Code>" in body and b"<Resource>/b/k</Resource>" in body


# --- integrity ---------------------------------------------------------------------------------------------

DATA = b"the quick brown fox"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("headers", [
    {"Content-MD5": _b64(hashlib.md5(DATA).digest())},  # noqa: S324
    {"x-amz-checksum-crc32": _b64(zlib.crc32(DATA).to_bytes(4, "big"))},
    {"x-amz-checksum-crc32c": _b64(crc32c.crc32c(DATA).to_bytes(4, "big"))},
    {"x-amz-checksum-sha1": _b64(hashlib.sha1(DATA).digest())},  # noqa: S324
    {"x-amz-checksum-sha256": _b64(hashlib.sha256(DATA).digest())},
    {"x-amz-content-sha256": hashlib.sha256(DATA).hexdigest()},
])
def test_matching_digests_pass_and_others_fail(headers: dict[str, str]) -> None:
    good = Integrity(headers)
    good.update(DATA[:5])
    good.update(DATA[5:])
    good.check({})
    bad = Integrity(headers)
    bad.update(DATA + b"!")
    with pytest.raises(S3Error) as info:
        bad.check({})
    assert info.value.code in ("BadDigest", "XAmzContentSHA256Mismatch")


def test_trailing_checksum_is_taken_from_the_trailers() -> None:
    integrity = Integrity({"x-amz-trailer": "x-amz-checksum-crc32"})
    integrity.update(DATA)
    integrity.check({"x-amz-checksum-crc32": _b64(zlib.crc32(DATA).to_bytes(4, "big"))})
    with pytest.raises(S3Error):
        integrity.check({})


def test_malformed_content_md5_is_invalid_digest() -> None:
    with pytest.raises(S3Error) as info:
        Integrity({"Content-MD5": "short"})
    assert info.value.code == "InvalidDigest"


@pytest.mark.parametrize(("value", "expected"), [
    ('"abc"', '"abc"'), ("abc", '"abc"'), ("*", "*"), ('W/"abc"', 'W/"abc"'), ('abc, "def"', '"abc", "def"'),
    (None, None),
])
def test_bare_etags_are_quoted(value: str | None, expected: str | None) -> None:
    assert quoted_etags(value) == expected


def test_storage_classes_s3_defines_are_accepted_others_refused() -> None:
    assert object_attributes({"x-amz-storage-class": "STANDARD_IA"}) == {}
    with pytest.raises(S3Error) as info:
        object_attributes({"x-amz-storage-class": "INVALID_STORAGE_CLASS"})
    assert (info.value.code, info.value.status) == ("InvalidStorageClass", 400)


# --- versions ----------------------------------------------------------------------------------------------


def _by_key(spec: dict[str, int]) -> dict[str, list[s3versions.Candidate]]:
    """Candidates per key: ``spec[key]`` versions each, named ``key#0`` (newest) on."""
    return {key: [s3versions.Candidate(f"{key}#{n}") for n in range(count)] for key, count in spec.items()}


def _names(page: s3versions.Page) -> list[tuple[str, bool]]:
    return [(candidate.key, latest) for candidate, latest in page.entries]


def test_version_pages_list_keys_in_order_newest_first_and_mark_the_latest() -> None:
    by_key = _by_key({"b": 2, "a": 1})
    page = s3versions.page_versions(by_key, prefix="", delimiter="", key_marker="", after_version=None, max_keys=10)
    assert _names(page) == [("a#0", True), ("b#0", True), ("b#1", False)]
    assert page.last is None


def test_version_pages_continue_within_a_key() -> None:
    by_key = _by_key({"a": 3, "b": 1})
    first = s3versions.page_versions(by_key, prefix="", delimiter="", key_marker="", after_version=None, max_keys=2)
    assert _names(first) == [("a#0", True), ("a#1", False)]
    assert isinstance(first.last, s3versions.Candidate) and first.last.key == "a#1"
    rest = s3versions.page_versions(by_key, prefix="", delimiter="", key_marker="a", after_version=1, max_keys=2)
    assert _names(rest) == [("a#2", False), ("b#0", True)]
    skipped = s3versions.page_versions(by_key, prefix="", delimiter="", key_marker="a", after_version=None,
                                       max_keys=9)
    assert _names(skipped) == [("b#0", True)]


def test_version_pages_roll_up_common_prefixes() -> None:
    by_key = _by_key({"d/x": 2, "d/y": 1, "e": 1})
    page = s3versions.page_versions(by_key, prefix="", delimiter="/", key_marker="", after_version=None, max_keys=1)
    assert (page.prefixes, page.last) == (["d/"], "d/")
    after = s3versions.page_versions(by_key, prefix="", delimiter="/", key_marker="d/", after_version=None,
                                     max_keys=5)
    assert (_names(after), after.prefixes) == ([("e#0", True)], [])


def test_versioning_configuration_documents() -> None:
    enabled = b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status>' \
              b"</VersioningConfiguration>"
    assert messages.parse_versioning(enabled) == "Enabled"
    for body, code in ((b"<VersioningConfiguration><Status>On</Status></VersioningConfiguration>",
                        "IllegalVersioningConfigurationException"),
                       (b"<Other/>", "MalformedXML"),
                       (b"<VersioningConfiguration><MfaDelete>Enabled</MfaDelete></VersioningConfiguration>",
                        "NotImplemented")):
        with pytest.raises(S3Error) as info:
            messages.parse_versioning(body)
        assert info.value.code == code
    assert b"<Status>Suspended</Status>" in messages.versioning("Suspended")
    assert b"Status" not in messages.versioning(None)


def test_version_ids() -> None:
    assert versions.is_version_id("null") and versions.is_version_id(versions.new_version_id())
    assert not versions.is_version_id("") and not versions.is_version_id("0" * 31)
    assert not versions.is_version_id("G" * 32)
