"""The XML documents of the S3 protocol (Amazon S3 API Reference, each action's "Response Syntax" and
"Request Syntax"): builders return UTF-8 bytes, parsers take a request body and return plain values.
Pure functions.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from callfs.s3.errors import S3Error, malformed_xml

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_DELETE_KEYS = 1000
"""The most keys one DeleteObjects request may name."""
MAX_PARTS = 10_000
"""The most parts a multipart upload may have (part numbers 1..10000)."""


def timestamp(moment: datetime) -> str:
    """ISO 8601 with milliseconds in UTC, as S3 writes ``LastModified``: ``2026-12-04T18:00:00.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _document(root: ET.Element) -> bytes:
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def _root(tag: str) -> ET.Element:
    return ET.Element(tag, xmlns=NAMESPACE)


def _add(parent: ET.Element, tag: str, text: str | int | bool | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = str(text).lower() if isinstance(text, bool) else str(text)
    return child


def _owner(parent: ET.Element, user: str, tag: str = "Owner") -> None:
    owner = _add(parent, tag)
    _add(owner, "ID", user)
    _add(owner, "DisplayName", user)


def error(code: str, message: str, resource: str, request_id: str) -> bytes:
    """An ``<Error>`` body."""
    root = ET.Element("Error")
    _add(root, "Code", code)
    _add(root, "Message", message)
    if resource:
        _add(root, "Resource", resource)
    _add(root, "RequestId", request_id)
    return _document(root)


def list_buckets(owner: str, buckets: Iterable[tuple[str, datetime]]) -> bytes:
    """``ListAllMyBucketsResult``: ``buckets`` are ``(name, creation time)``."""
    root = _root("ListAllMyBucketsResult")
    _owner(root, owner)
    container = _add(root, "Buckets")
    for name, created in buckets:
        bucket = _add(container, "Bucket")
        _add(bucket, "Name", name)
        _add(bucket, "CreationDate", timestamp(created))
    return _document(root)


def location(region: str) -> bytes:
    """``LocationConstraint`` (empty for us-east-1, as S3 answers)."""
    root = _root("LocationConstraint")
    if region and region != "us-east-1":
        root.text = region
    return _document(root)


def versioning(status: str | None) -> bytes:
    """``VersioningConfiguration`` of a bucket: its ``Status`` (``Enabled``/``Suspended``), none when versioning
    was never set (Amazon S3 API Reference, GetBucketVersioning)."""
    root = _root("VersioningConfiguration")
    if status is not None:
        _add(root, "Status", status)
    return _document(root)


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One entry of ListObjectVersions: ``key``, ``version_id``, ``latest`` (the current version), a
    ``delete_marker`` or a version with ``etag`` (quoted) and ``size`` (bytes), ``modified``, ``owner``."""

    key: str
    version_id: str
    latest: bool
    delete_marker: bool
    etag: str
    size: int
    modified: datetime
    owner: str


@dataclass(frozen=True, slots=True)
class VersionsPage:
    """One page of ListObjectVersions: ``entries``, common ``prefixes``, and where the next page starts
    (``next_key``/``next_version``; ``None``: complete)."""

    entries: list[VersionEntry]
    prefixes: list[str]
    next_key: str | None
    next_version: str | None


def list_versions(params: ListParams, version_marker: str, page: VersionsPage) -> bytes:
    """``ListVersionsResult`` (Amazon S3 API Reference, ListObjectVersions): ``Version`` and ``DeleteMarker``
    entries in key order, newest first per key; ``params.marker`` is the ``key-marker``."""
    root = _root("ListVersionsResult")
    _add(root, "Name", params.bucket)
    _add(root, "Prefix", _encoded(params.prefix, params.encoding))
    _add(root, "KeyMarker", _encoded(params.marker, params.encoding))
    _add(root, "VersionIdMarker", version_marker)
    if page.next_key is not None:
        _add(root, "NextKeyMarker", _encoded(page.next_key, params.encoding))
        _add(root, "NextVersionIdMarker", page.next_version or "")
    _add(root, "MaxKeys", params.max_keys)
    if params.delimiter:
        _add(root, "Delimiter", _encoded(params.delimiter, params.encoding))
    if params.encoding:
        _add(root, "EncodingType", params.encoding)
    _add(root, "IsTruncated", page.next_key is not None)
    for entry in page.entries:
        item = _add(root, "DeleteMarker" if entry.delete_marker else "Version")
        _add(item, "Key", _encoded(entry.key, params.encoding))
        _add(item, "VersionId", entry.version_id)
        _add(item, "IsLatest", entry.latest)
        _add(item, "LastModified", timestamp(entry.modified))
        if not entry.delete_marker:
            _add(item, "ETag", entry.etag)
            _add(item, "Size", entry.size)
            _add(item, "StorageClass", "STANDARD")
        _owner(item, entry.owner)
    for prefix in page.prefixes:
        _add(_add(root, "CommonPrefixes"), "Prefix", _encoded(prefix, params.encoding))
    return _document(root)


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """One object of a listing: ``key``, ``etag`` (quoted), ``size`` (bytes), ``modified``, ``owner``."""

    key: str
    etag: str
    size: int
    modified: datetime
    owner: str


@dataclass(frozen=True, slots=True)
class ListParams:
    """The request side of a listing, echoed in the answer. ``marker`` is ``StartAfter`` (v2) or ``Marker``
    (v1); ``token`` the v2 continuation token as sent."""

    bucket: str
    prefix: str
    delimiter: str
    max_keys: int
    marker: str
    encoding: str | None
    token: str | None = None
    fetch_owner: bool = False


def _encoded(text: str, encoding: str | None) -> str:
    if encoding == "url":
        from urllib.parse import quote

        return quote(text, safe="/")
    return text


def _listing(root: ET.Element, params: ListParams, objects: Sequence[ObjectEntry], prefixes: Sequence[str],
             *, owners: bool) -> None:
    for entry in objects:
        item = _add(root, "Contents")
        _add(item, "Key", _encoded(entry.key, params.encoding))
        _add(item, "LastModified", timestamp(entry.modified))
        _add(item, "ETag", entry.etag)
        _add(item, "Size", entry.size)
        if owners:
            _owner(item, entry.owner)
        _add(item, "StorageClass", "STANDARD")
    for prefix in prefixes:
        _add(_add(root, "CommonPrefixes"), "Prefix", _encoded(prefix, params.encoding))


def list_objects_v2(params: ListParams, objects: Sequence[ObjectEntry], prefixes: Sequence[str],
                    next_token: str | None) -> bytes:
    """``ListBucketResult`` of ListObjectsV2; ``next_token`` set when truncated."""
    root = _root("ListBucketResult")
    _add(root, "Name", params.bucket)
    _add(root, "Prefix", _encoded(params.prefix, params.encoding))
    if params.marker:
        _add(root, "StartAfter", _encoded(params.marker, params.encoding))
    if params.token is not None:
        _add(root, "ContinuationToken", params.token)
    if next_token is not None:
        _add(root, "NextContinuationToken", next_token)
    _add(root, "KeyCount", len(objects) + len(prefixes))
    _add(root, "MaxKeys", params.max_keys)
    if params.delimiter:
        _add(root, "Delimiter", _encoded(params.delimiter, params.encoding))
    if params.encoding:
        _add(root, "EncodingType", params.encoding)
    _add(root, "IsTruncated", next_token is not None)
    _listing(root, params, objects, prefixes, owners=params.fetch_owner)
    return _document(root)


def list_objects_v1(params: ListParams, objects: Sequence[ObjectEntry], prefixes: Sequence[str],
                    next_marker: str | None) -> bytes:
    """``ListBucketResult`` of ListObjects (v1); ``next_marker`` set when truncated (``NextMarker`` is sent
    when a delimiter was given, as S3 does)."""
    root = _root("ListBucketResult")
    _add(root, "Name", params.bucket)
    _add(root, "Prefix", _encoded(params.prefix, params.encoding))
    _add(root, "Marker", _encoded(params.marker, params.encoding))
    if next_marker is not None and params.delimiter:
        _add(root, "NextMarker", _encoded(next_marker, params.encoding))
    _add(root, "MaxKeys", params.max_keys)
    if params.delimiter:
        _add(root, "Delimiter", _encoded(params.delimiter, params.encoding))
    if params.encoding:
        _add(root, "EncodingType", params.encoding)
    _add(root, "IsTruncated", next_marker is not None)
    _listing(root, params, objects, prefixes, owners=True)
    return _document(root)


def copy_result(etag: str, modified: datetime, *, part: bool = False) -> bytes:
    """``CopyObjectResult`` (or ``CopyPartResult`` for UploadPartCopy)."""
    root = _root("CopyPartResult" if part else "CopyObjectResult")
    _add(root, "LastModified", timestamp(modified))
    _add(root, "ETag", etag)
    return _document(root)


def initiate_upload(bucket: str, key: str, upload_id: str) -> bytes:
    """``InitiateMultipartUploadResult``."""
    root = _root("InitiateMultipartUploadResult")
    _add(root, "Bucket", bucket)
    _add(root, "Key", key)
    _add(root, "UploadId", upload_id)
    return _document(root)


def complete_upload(location_url: str, bucket: str, key: str, etag: str) -> bytes:
    """``CompleteMultipartUploadResult``."""
    root = _root("CompleteMultipartUploadResult")
    _add(root, "Location", location_url)
    _add(root, "Bucket", bucket)
    _add(root, "Key", key)
    _add(root, "ETag", etag)
    return _document(root)


@dataclass(frozen=True, slots=True)
class PartEntry:
    """One uploaded part: ``number`` (1..10000), ``etag`` (quoted MD5), ``size`` (bytes), ``modified``."""

    number: int
    etag: str
    size: int
    modified: datetime


def list_parts(bucket: str, key: str, upload_id: str, owner: str, parts: Sequence[PartEntry], *,
               marker: int, max_parts: int, next_marker: int | None) -> bytes:
    """``ListPartsResult``; ``next_marker`` set when truncated."""
    root = _root("ListPartsResult")
    _add(root, "Bucket", bucket)
    _add(root, "Key", key)
    _add(root, "UploadId", upload_id)
    _owner(root, owner, "Initiator")
    _owner(root, owner)
    _add(root, "StorageClass", "STANDARD")
    _add(root, "PartNumberMarker", marker)
    if next_marker is not None:
        _add(root, "NextPartNumberMarker", next_marker)
    _add(root, "MaxParts", max_parts)
    _add(root, "IsTruncated", next_marker is not None)
    for part in parts:
        item = _add(root, "Part")
        _add(item, "PartNumber", part.number)
        _add(item, "LastModified", timestamp(part.modified))
        _add(item, "ETag", part.etag)
        _add(item, "Size", part.size)
    return _document(root)


@dataclass(frozen=True, slots=True)
class UploadEntry:
    """One multipart upload in progress: ``key``, ``upload_id``, ``owner``, ``initiated``."""

    key: str
    upload_id: str
    owner: str
    initiated: datetime


def list_uploads(bucket: str, uploads: Sequence[UploadEntry], *, prefix: str, key_marker: str,
                 upload_id_marker: str, max_uploads: int, next_markers: tuple[str, str] | None) -> bytes:
    """``ListMultipartUploadsResult``; ``next_markers`` (key, upload id) set when truncated."""
    root = _root("ListMultipartUploadsResult")
    _add(root, "Bucket", bucket)
    _add(root, "KeyMarker", key_marker)
    _add(root, "UploadIdMarker", upload_id_marker)
    if next_markers is not None:
        _add(root, "NextKeyMarker", next_markers[0])
        _add(root, "NextUploadIdMarker", next_markers[1])
    _add(root, "Prefix", prefix)
    _add(root, "MaxUploads", max_uploads)
    _add(root, "IsTruncated", next_markers is not None)
    for upload in uploads:
        item = _add(root, "Upload")
        _add(item, "Key", upload.key)
        _add(item, "UploadId", upload.upload_id)
        _owner(item, upload.owner, "Initiator")
        _owner(item, upload.owner)
        _add(item, "StorageClass", "STANDARD")
        _add(item, "Initiated", timestamp(upload.initiated))
    return _document(root)


@dataclass(frozen=True, slots=True)
class Deleted:
    """One key a DeleteObject(s) request deleted: the ``key``, the ``version_id`` it named (``None``: none),
    and ``delete_marker`` with ``marker_version_id`` when a delete marker was created or deleted."""

    key: str
    version_id: str | None = None
    delete_marker: bool = False
    marker_version_id: str | None = None


def delete_result(deleted: Sequence[Deleted], failed: Sequence[tuple[str, S3Error]], *, quiet: bool) -> bytes:
    """``DeleteResult``: the keys deleted (left out when ``quiet``), with ``VersionId``, ``DeleteMarker`` and
    ``DeleteMarkerVersionId`` when they apply, and the ones that failed."""
    root = _root("DeleteResult")
    if not quiet:
        for entry in deleted:
            item = _add(root, "Deleted")
            _add(item, "Key", entry.key)
            if entry.version_id is not None:
                _add(item, "VersionId", entry.version_id)
            if entry.delete_marker:
                _add(item, "DeleteMarker", True)
                _add(item, "DeleteMarkerVersionId", entry.marker_version_id)
    for key, exc in failed:
        item = _add(root, "Error")
        _add(item, "Key", key)
        _add(item, "Code", exc.code)
        _add(item, "Message", exc.message)
    return _document(root)


# ---------------------------------------------------------------- parsers

def _parse(body: bytes) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise malformed_xml("document type declarations are not accepted")
    try:
        return ET.fromstring(body)  # noqa: S314 - no DTDs (refused above), so no entity expansion
    except ET.ParseError:
        raise malformed_xml() from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    return (found[0].text or "") if found else None


def parse_delete(body: bytes) -> tuple[list[tuple[str, str | None]], bool]:
    """The ``(key, version id or None)`` pairs of a ``<Delete>`` document and its ``Quiet`` flag. Raises
    ``MalformedXML`` (not a Delete document, an object without a key, no objects or more than 1000)."""
    root = _parse(body)
    if _local(root.tag) != "Delete":
        raise malformed_xml()
    keys: list[tuple[str, str | None]] = []
    for item in _children(root, "Object"):
        key = _text(item, "Key")
        if not key:
            raise malformed_xml()
        keys.append((key, _text(item, "VersionId")))
    if not keys or len(keys) > MAX_DELETE_KEYS:
        raise malformed_xml(f"a Delete request names 1 to {MAX_DELETE_KEYS} objects")
    return keys, (_text(root, "Quiet") or "").strip().lower() == "true"


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """The ``(part number, ETag)`` pairs of a ``<CompleteMultipartUpload>`` document, in document order.

    Raises ``MalformedXML`` (wrong document, a part without number or ETag, no parts) and
    ``InvalidArgument`` (a part number outside 1..10000)."""
    root = _parse(body)
    if _local(root.tag) != "CompleteMultipartUpload":
        raise malformed_xml()
    parts = []
    for item in _children(root, "Part"):
        number, etag = _text(item, "PartNumber"), _text(item, "ETag")
        if number is None or etag is None:
            raise malformed_xml()
        try:
            value = int(number)
        except ValueError:
            raise malformed_xml() from None
        if not 1 <= value <= MAX_PARTS:
            raise S3Error("InvalidArgument", 400, f"Part number must be an integer between 1 and {MAX_PARTS}")
        parts.append((value, etag.strip()))
    if not parts:
        raise malformed_xml("The XML you provided was not well-formed or did not validate against our published "
                            "schema: a multipart upload completes with at least one part")
    return parts


def parse_create_bucket(body: bytes) -> str | None:
    """The ``LocationConstraint`` of a ``<CreateBucketConfiguration>`` (``None`` when absent). Raises
    ``MalformedXML``."""
    root = _parse(body)
    if _local(root.tag) != "CreateBucketConfiguration":
        raise malformed_xml()
    return _text(root, "LocationConstraint")


def parse_versioning(body: bytes) -> str:
    """The ``Status`` of a ``<VersioningConfiguration>`` document (Amazon S3 API Reference,
    PutBucketVersioning). Raises ``MalformedXML`` (another document) and ``IllegalVersioningConfigurationException``
    (a status other than ``Enabled``/``Suspended``, as S3 answers); ``NotImplemented`` for ``MfaDelete``
    ``Enabled`` (MFA delete is not served)."""
    root = _parse(body)
    if _local(root.tag) != "VersioningConfiguration":
        raise malformed_xml()
    if (_text(root, "MfaDelete") or "").strip() == "Enabled":
        raise S3Error("NotImplemented", 501, "MFA delete is not implemented by this server")
    status = (_text(root, "Status") or "").strip()
    if status not in ("Enabled", "Suspended"):
        raise S3Error("IllegalVersioningConfigurationException", 400,
                      "The Versioning element must be specified")
    return status
