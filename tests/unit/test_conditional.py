"""Validators, conditional requests and byte ranges (RFC 9110 §8.8, §13, §14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from callfs.api.conditional import (
    ByteRange,
    Conditions,
    etag,
    evaluate_read,
    http_date,
    parse_range,
    range_applies,
    rfc3339,
    write_precondition,
)
from callfs.errors import PreconditionFailed, RangeNotSatisfiable
from callfs.models import Inode, InodeType

MTIME = datetime(2026, 11, 22, 4, 16, 0, 750_000, tzinfo=UTC)
LAST_MODIFIED = "Sun, 22 Nov 2026 04:16:00 GMT"
EARLIER = "Sun, 22 Nov 2026 04:15:59 GMT"
LATER = "Sun, 22 Nov 2026 04:16:01 GMT"


def make_file(blob_id: str = "0123456789abcdef0123456789abcdef", version: int = 26) -> Inode:
    return Inode(path="/f", type=InodeType.FILE, size=10, mtime=MTIME, version=version, blob_id=blob_id)


FILE = make_file()
TAG = etag(FILE)
OTHER_TAG = etag(make_file(blob_id="ffffffffffffffffffff0000000000000000"))


# --- validators and dates ---------------------------------------------------------------------------------


def test_etag_is_a_quoted_strong_tag_from_blob_and_version() -> None:
    assert TAG == '"0123456789abcdef01231a"'
    assert not TAG.startswith("W/")


def test_etag_changes_with_blob_and_with_version() -> None:
    assert etag(make_file(version=27)) != TAG
    assert etag(make_file(blob_id="1123456789abcdef0123456789abcdef")) != TAG
    assert etag(make_file()) == TAG


def test_etag_of_an_inode_without_blob_uses_the_version() -> None:
    assert etag(Inode(path="/d", type=InodeType.DIRECTORY, version=3)) == '"3"'


def test_http_date_is_imf_fixdate_in_gmt_without_fractions() -> None:
    assert http_date(MTIME) == LAST_MODIFIED
    assert http_date(datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_http_date_converts_other_time_zones_to_gmt() -> None:
    plus_two = MTIME.astimezone(timezone(timedelta(hours=2)))
    assert http_date(plus_two) == LAST_MODIFIED


def test_rfc3339_is_utc_with_seconds_precision() -> None:
    assert rfc3339(MTIME) == "2026-11-22T04:16:00Z"
    assert rfc3339(MTIME.astimezone(timezone(timedelta(hours=-5)))) == "2026-11-22T04:16:00Z"


# --- evaluate_read (RFC 9110 §13.2.2) ---------------------------------------------------------------------


def test_no_conditions_serve_normally() -> None:
    assert not Conditions().present
    assert evaluate_read(Conditions(), FILE) is None


@pytest.mark.parametrize("value", [TAG, f"{OTHER_TAG}, {TAG}", "*", f' {TAG} ,"x"'])
def test_if_match_that_matches_serves(value: str) -> None:
    assert evaluate_read(Conditions(if_match=value), FILE) is None


@pytest.mark.parametrize("value", [OTHER_TAG, f"W/{TAG}", '""', "garbage"])
def test_if_match_that_fails_is_412_and_weak_tags_never_match_strongly(value: str) -> None:
    assert evaluate_read(Conditions(if_match=value), FILE) == 412


@pytest.mark.parametrize("value", [TAG, f"W/{TAG}", "*", f'"x", {TAG}'])
def test_if_none_match_that_matches_is_304_with_weak_comparison(value: str) -> None:
    assert evaluate_read(Conditions(if_none_match=value), FILE) == 304


def test_if_none_match_that_does_not_match_serves() -> None:
    assert evaluate_read(Conditions(if_none_match=OTHER_TAG), FILE) is None


def test_if_unmodified_since_before_the_mtime_is_412() -> None:
    assert evaluate_read(Conditions(if_unmodified_since=EARLIER), FILE) == 412


@pytest.mark.parametrize("value", [LAST_MODIFIED, LATER, "not a date"])
def test_if_unmodified_since_at_or_after_the_mtime_or_invalid_serves(value: str) -> None:
    # Sub-second parts of the mtime do not count: Last-Modified has whole seconds.
    assert evaluate_read(Conditions(if_unmodified_since=value), FILE) is None


@pytest.mark.parametrize("value", [LAST_MODIFIED, LATER])
def test_if_modified_since_at_or_after_the_mtime_is_304(value: str) -> None:
    assert evaluate_read(Conditions(if_modified_since=value), FILE) == 304


@pytest.mark.parametrize("value", [EARLIER, "yesterday"])
def test_if_modified_since_before_the_mtime_or_invalid_serves(value: str) -> None:
    assert evaluate_read(Conditions(if_modified_since=value), FILE) is None


def test_if_modified_since_accepts_the_obsolete_rfc850_and_asctime_forms() -> None:
    assert evaluate_read(Conditions(if_modified_since="Sunday, 22-Nov-26 04:16:00 GMT"), FILE) == 304
    assert evaluate_read(Conditions(if_modified_since="Sun Nov 22 04:16:00 2026"), FILE) == 304


def test_if_match_takes_precedence_over_if_unmodified_since() -> None:
    # §13.2.2 step 2 only runs when If-Match is absent.
    assert evaluate_read(Conditions(if_match=TAG, if_unmodified_since=EARLIER), FILE) is None


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    # §13.2.2 step 4 only runs when If-None-Match is absent.
    assert evaluate_read(Conditions(if_none_match=OTHER_TAG, if_modified_since=LATER), FILE) is None
    assert evaluate_read(Conditions(if_none_match=TAG, if_modified_since=EARLIER), FILE) == 304


def test_failed_if_match_wins_over_a_matching_if_none_match() -> None:
    # Step 1 (412) is evaluated before step 3 (304).
    assert evaluate_read(Conditions(if_match=OTHER_TAG, if_none_match=TAG), FILE) == 412


def test_failed_if_unmodified_since_wins_over_if_modified_since() -> None:
    assert evaluate_read(Conditions(if_unmodified_since=EARLIER, if_modified_since=LATER), FILE) == 412


# --- write_precondition (RFC 9110 §13.1) ------------------------------------------------------------------


def test_write_without_conditions_has_no_check() -> None:
    assert write_precondition(Conditions()) is None


def test_write_if_match_passes_on_the_current_version_and_fails_otherwise() -> None:
    check = write_precondition(Conditions(if_match=TAG))
    assert check is not None
    check(FILE)
    with pytest.raises(PreconditionFailed, match="If-Match"):
        check(make_file(version=27))


def test_write_if_match_star_fails_when_the_file_is_missing() -> None:
    check = write_precondition(Conditions(if_match="*"))
    assert check is not None
    check(FILE)
    with pytest.raises(PreconditionFailed) as info:
        check(None)
    assert info.value.status == 412


def test_write_if_none_match_star_only_creates() -> None:
    check = write_precondition(Conditions(if_none_match="*"))
    assert check is not None
    check(None)
    with pytest.raises(PreconditionFailed, match="If-None-Match"):
        check(FILE)


def test_write_if_none_match_uses_weak_comparison() -> None:
    check = write_precondition(Conditions(if_none_match=f"W/{TAG}"))
    assert check is not None
    with pytest.raises(PreconditionFailed):
        check(FILE)
    check(make_file(version=27))


def test_write_if_unmodified_since() -> None:
    passing = write_precondition(Conditions(if_unmodified_since=LAST_MODIFIED))
    failing = write_precondition(Conditions(if_unmodified_since=EARLIER))
    assert passing is not None and failing is not None
    passing(FILE)
    with pytest.raises(PreconditionFailed, match="If-Unmodified-Since"):
        failing(FILE)
    failing(None)  # nothing to compare against when the file does not exist


def test_write_ignores_if_modified_since() -> None:
    check = write_precondition(Conditions(if_modified_since=LATER))
    assert check is not None
    check(FILE)
    check(None)


def test_write_ignores_if_unmodified_since_when_if_match_is_present() -> None:
    check = write_precondition(Conditions(if_match=TAG, if_unmodified_since=EARLIER))
    assert check is not None
    check(FILE)


# --- If-Range (RFC 9110 §13.1.5) --------------------------------------------------------------------------


def test_range_applies_without_if_range() -> None:
    assert range_applies(None, FILE)


def test_if_range_with_the_current_etag_applies() -> None:
    assert range_applies(TAG, FILE)
    assert range_applies(f"  {TAG} ", FILE)


@pytest.mark.parametrize("value", [OTHER_TAG, f"W/{TAG}"])
def test_if_range_with_another_or_weak_etag_does_not_apply(value: str) -> None:
    assert not range_applies(value, FILE)


def test_if_range_with_the_exact_last_modified_date_applies() -> None:
    assert range_applies(LAST_MODIFIED, FILE)


@pytest.mark.parametrize("value", [EARLIER, LATER, "not a date", ""])
def test_if_range_with_another_or_invalid_date_does_not_apply(value: str) -> None:
    assert not range_applies(value, FILE)


# --- Range (RFC 9110 §14) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "start", "end"),
    [
        ("bytes=0-4", 10, 0, 4),
        ("bytes=5-", 10, 5, 9),
        ("bytes=-3", 10, 7, 9),
        ("bytes=0-0", 10, 0, 0),
        ("bytes=9-9", 10, 9, 9),
        ("bytes=0-100", 10, 0, 9),  # last-pos beyond the end is clamped
        ("bytes=-100", 10, 0, 9),  # suffix longer than the file is the whole file
        ("Bytes=2-3", 10, 2, 3),  # range units are case-insensitive
        ("bytes= 2-3 ", 10, 2, 3),
        ("bytes=0-", 1, 0, 0),
    ],
)
def test_single_satisfiable_ranges(header: str, size: int, start: int, end: int) -> None:
    assert parse_range(header, size) == ByteRange(start, end, size)


def test_byte_range_length_and_content_range() -> None:
    byte_range = parse_range("bytes=2-5", 10)
    assert byte_range is not None
    assert byte_range.length == 4
    assert byte_range.content_range() == "bytes 2-5/10"


def test_no_range_header_serves_the_whole_file() -> None:
    assert parse_range(None, 10) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=11-", 10),
                                              ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=0-0", 0)])
def test_unsatisfiable_ranges_are_416_with_the_size(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.status == 416
    assert info.value.extra["size"] == size


@pytest.mark.parametrize("header", ["bytes=0-4,6-8", "bytes=0-1, 3-4", "bytes=-1,0-0", "bytes=0-4,"])
def test_multiple_ranges_are_answered_with_the_whole_file(header: str) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize(
    "header",
    ["bytes=", "bytes=-", "bytes=a-b", "bytes=1-a", "bytes=5-2", "bytes=+1-2", "bytes=1--2", "bytes 0-4", "bytes",
     "=0-4", "bytes=0x1-2", "bytes=1.5-2"],
)
def test_malformed_ranges_are_ignored(header: str) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize("header", ["items=0-4", "none=0-4", "bites=0-4"])
def test_other_range_units_are_ignored(header: str) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize("header", ["bytes=\u00b2-", "bytes=-\u00b2", "bytes=\u0661-3"])
def test_non_ascii_digits_are_malformed_and_ignored(header: str) -> None:
    assert parse_range(header, 10) is None


def test_suffix_range_on_an_empty_file_serves_the_whole_empty_file() -> None:
    assert parse_range("bytes=-3", 0) is None
