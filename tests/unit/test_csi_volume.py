"""Volume names, IDs, capacity ranges, ListVolumes tokens and archive paths (callfs_csi.volume)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callfs_csi.errors import Aborted, InvalidArgument, OutOfRange
from callfs_csi.volume import (
    DEFAULT_CAPACITY,
    VolumeRef,
    archive_path,
    capacity_fits,
    decode_list_token,
    encode_list_token,
    parse_volume_id,
    requested_capacity,
    validate_name,
)

names = st.text(
    alphabet=st.characters(blacklist_characters="/@\\?#", blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60
).filter(lambda n: not n.startswith("."))


@pytest.mark.parametrize("name", ["", ".hidden", "..", "a/b", "a@b", "a\\b", "a?b", "a#b", "tab\there", "x" * 201])
def test_names_that_cannot_round_trip_are_invalid(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_name(name)


@pytest.mark.parametrize("name", ["pvc-4f1c2b9e-3d55-4a7e-9d0b-1f2e3a4b5c6d", "sanity controller 1", "x" * 128, "é"])
def test_kubernetes_and_sanity_names_are_valid(name: str) -> None:
    assert validate_name(name) == name


@given(names, st.sampled_from([None, "http://callfs.ns.svc:8443", "https://a.example:1"]))
def test_volume_ids_round_trip(name: str, server: str | None) -> None:
    ref = VolumeRef(name, server)
    assert parse_volume_id(ref.volume_id) == ref


def test_default_server_is_left_out_of_the_id() -> None:
    ref = VolumeRef.on("pvc-1", "http://127.0.0.1:8443/", "http://127.0.0.1:8443")
    assert ref.volume_id == "pvc-1"
    assert ref.path == "/volumes/pvc-1"
    assert ref.record_path == "/volumes/.csi/pvc-1.json"


def test_other_server_is_part_of_the_id() -> None:
    ref = VolumeRef.on("pvc-1", "http://other:8443", "http://127.0.0.1:8443")
    assert ref.volume_id == "pvc-1@http://other:8443"


@pytest.mark.parametrize("volume_id", ["", "../etc", ".csi", "a/b", "pvc@ftp://x", "pvc@"])
def test_ids_no_volume_can_have_parse_to_none(volume_id: str) -> None:
    assert parse_volume_id(volume_id) is None


@pytest.mark.parametrize(
    ("required", "limit", "expected"),
    [(0, 0, DEFAULT_CAPACITY), (5, 0, 5), (5, 10, 5), (0, 10, 10), (0, 2 * DEFAULT_CAPACITY, DEFAULT_CAPACITY),
     (7, 7, 7)],
)
def test_requested_capacity(required: int, limit: int, expected: int) -> None:
    assert requested_capacity(required, limit) == expected


def test_limit_below_required_is_out_of_range() -> None:
    with pytest.raises(OutOfRange):
        requested_capacity(10, 5)


def test_negative_capacity_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        requested_capacity(-1, 0)


@pytest.mark.parametrize(
    ("capacity", "required", "limit", "fits"),
    [(10, 10, 10, True), (10, 5, 0, True), (10, 11, 0, False), (10, 0, 9, False), (10, 0, 0, True)],
)
def test_capacity_fits(capacity: int, required: int, limit: int, fits: bool) -> None:
    assert capacity_fits(capacity, required, limit) is fits


@given(names)
def test_list_tokens_round_trip(name: str) -> None:
    assert decode_list_token(encode_list_token(name)) == name


@pytest.mark.parametrize("token", ["invalid-token", "after:!!!", "after:_w", "3"])
def test_foreign_tokens_are_aborted(token: str) -> None:
    with pytest.raises(Aborted):
        decode_list_token(token)


def test_archive_path_is_utc_stamped() -> None:
    when = datetime(2026, 1, 2, 4, 5, 6, tzinfo=timezone(timedelta(hours=1)))
    assert archive_path("pvc-1", when) == "/archive/pvc-1-20260102T030506Z"
    assert archive_path("v", datetime(2026, 1, 2, tzinfo=UTC)).startswith("/archive/v-20260102T")
