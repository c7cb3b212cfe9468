"""Path canonicalisation and path arithmetic (docs/rest-api.md, "Paths")."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from callfs import paths
from callfs.errors import BadRequest

FORBIDDEN_SAMPLES = ["\x00", "\x01", "\x08", "\n", "\r", "\x1b", "\x1f", "\x7f", "\\", "\u202a", "\u202e",
                     "\u2066", "\u2069"]


# --- canonicalize -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", ".", "/", "//", "///", "/./", "./.", "/a/..", "a/b/../.."])
def test_root_spellings_canonicalize_to_root_with_directory_hint(raw: str) -> None:
    result = paths.canonicalize(raw)
    assert result.path == "/"
    assert result.is_dir_hint is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a", "/a"),
        ("/a", "/a"),
        ("a/b", "/a/b"),
        ("//a//b//", "/a/b"),
        ("/a/./b/.", "/a/b"),
        ("a/../b", "/b"),
        ("/a/b/../c", "/a/c"),
        ("/a/b/c/../../d", "/a/d"),
        ("/.hidden/..dots/...", "/.hidden/..dots/..."),
        ("/with space/tab\there", "/with space/tab\there"),
        ("/ünïcødé/日本", "/ünïcødé/日本"),
    ],
)
def test_canonicalize_normalises_separators_and_dot_segments(raw: str, expected: str) -> None:
    assert paths.canonicalize(raw).path == expected


def test_trailing_slash_marks_a_directory_hint() -> None:
    assert paths.canonicalize("/a/b/").is_dir_hint is True
    assert paths.canonicalize("/a/b").is_dir_hint is False


def test_canonicalize_returns_a_frozen_request_path() -> None:
    result = paths.canonicalize("/a")
    with pytest.raises(AttributeError):
        result.path = "/b"  # type: ignore[misc]


@pytest.mark.parametrize("raw", ["..", "/..", "/../a", "a/../..", "/a/../../b", "./.."])
def test_climbing_above_the_root_is_a_bad_request(raw: str) -> None:
    with pytest.raises(BadRequest, match="above the root"):
        paths.canonicalize(raw)


@pytest.mark.parametrize("char", FORBIDDEN_SAMPLES)
def test_forbidden_characters_are_rejected_with_their_code_point(char: str) -> None:
    with pytest.raises(BadRequest, match=f"U\\+{ord(char):04X}"):
        paths.canonicalize(f"/a{char}b")


@pytest.mark.parametrize("char", ["\u0085", "\u009b"])
def test_c1_control_characters_are_rejected(char: str) -> None:
    with pytest.raises(BadRequest):
        paths.canonicalize(f"/a{char}b")


def test_tab_is_allowed() -> None:
    assert paths.canonicalize("/a\tb").path == "/a\tb"


def test_segment_of_255_bytes_is_accepted_and_256_rejected() -> None:
    assert paths.canonicalize("/" + "x" * 255).path == "/" + "x" * 255
    with pytest.raises(BadRequest, match="255 bytes"):
        paths.canonicalize("/" + "x" * 256)


def test_segment_length_counts_utf8_bytes_not_characters() -> None:
    # "é" is 2 bytes in UTF-8: 128 of them are 256 bytes although only 128 characters.
    with pytest.raises(BadRequest, match="255 bytes"):
        paths.canonicalize("/" + "é" * 128)
    assert paths.canonicalize("/" + "é" * 127).path == "/" + "é" * 127


def test_path_of_4096_bytes_is_accepted_and_longer_rejected() -> None:
    segment = "x" * 255
    # 16 segments of "/"+255 bytes = 4096 bytes exactly.
    exact = "/".join([""] + [segment] * 16)
    assert len(exact) == 4096
    assert paths.canonicalize(exact).path == exact
    with pytest.raises(BadRequest, match="4096 bytes"):
        paths.canonicalize(exact + "/y")


def test_lone_surrogate_is_not_valid_utf8() -> None:
    with pytest.raises(BadRequest, match="UTF-8"):
        paths.canonicalize("/a\udcffb")


# --- property: canonical form ---------------------------------------------------------------------------

_PATH_ALPHABET = st.sampled_from(
    ["/", "/", "/", ".", ".", "a", "b", "é", "日", " ", "\t", "\\", "\x00", "\n", "\x7f", "\u202e", "\u2067",
     "\udc80", "-", "_"]
)


@given(st.one_of(st.text(), st.text(_PATH_ALPHABET, max_size=40), st.lists(st.sampled_from(["a", ".", "..", ""]))
                 .map("/".join)))
@example("")
@example("/../")
@example("a/" * 3000)
@example("/" + "x" * 256)
def test_canonicalize_either_rejects_or_yields_a_canonical_idempotent_path(raw: str) -> None:
    try:
        result = paths.canonicalize(raw)
    except BadRequest:
        return
    path = result.path
    assert path.startswith("/")
    assert "//" not in path
    segments = path.split("/")[1:]
    assert "." not in segments
    assert ".." not in segments
    assert path == "/" or not path.endswith("/")
    assert paths._FORBIDDEN.search(path) is None
    for char in FORBIDDEN_SAMPLES:
        assert char not in path
    assert len(path.encode("utf-8")) <= paths.MAX_PATH_BYTES
    assert paths.canonicalize(path).path == path


# --- parent_of / name_of / join / depth_of / ancestors / is_within ---------------------------------------


@pytest.mark.parametrize(
    ("path", "parent", "name", "depth"),
    [
        ("/", None, "", 0),
        ("/a", "/", "a", 1),
        ("/a/b", "/a", "b", 2),
        ("/a/b/c.txt", "/a/b", "c.txt", 3),
    ],
)
def test_parent_name_and_depth_of_canonical_paths(path: str, parent: str | None, name: str, depth: int) -> None:
    assert paths.parent_of(path) == parent
    assert paths.name_of(path) == name
    assert paths.depth_of(path) == depth


@pytest.mark.parametrize(("parent", "name", "joined"), [("/", "a", "/a"), ("/a", "b", "/a/b"), ("/a/b", "c", "/a/b/c")])
def test_join_adds_one_segment(parent: str, name: str, joined: str) -> None:
    assert paths.join(parent, name) == joined
    assert paths.parent_of(joined) == parent
    assert paths.name_of(joined) == name


def test_ancestors_run_from_the_root_down_to_the_parent() -> None:
    assert paths.ancestors("/") == []
    assert paths.ancestors("/a") == ["/"]
    assert paths.ancestors("/a/b/c") == ["/", "/a", "/a/b"]


@pytest.mark.parametrize(
    ("path", "top", "within"),
    [
        ("/a", "/a", True),
        ("/a/b", "/a", True),
        ("/a/b/c", "/a", True),
        ("/ab", "/a", False),
        ("/a", "/a/b", False),
        ("/b", "/a", False),
        ("/", "/", True),
        ("/anything/deep", "/", True),
        ("/", "/a", False),
    ],
)
def test_is_within_respects_segment_boundaries(path: str, top: str, within: bool) -> None:
    assert paths.is_within(path, top) is within


# --- validate_name ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "file.txt", ".hidden", "...", "with space", "ünï"])
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert paths.validate_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/a", "a/", "a\\b", "a\x00b", "a\u202eb", "x" * 256])
def test_invalid_names_are_bad_requests(name: str) -> None:
    with pytest.raises(BadRequest):
        paths.validate_name(name)


def test_path_of_256_segments_is_accepted_and_deeper_rejected() -> None:
    assert paths.depth_of(paths.canonicalize("/a" * paths.MAX_PATH_DEPTH).path) == 256
    with pytest.raises(BadRequest, match="more than 256 segments"):
        paths.canonicalize("/a" * 257)


def test_depth_counts_segments_after_dot_dot_resolution() -> None:
    # 300 raw segments, but ".." pairs leave 200: accepted.
    assert paths.depth_of(paths.canonicalize("/a" * 200 + "/b/.." * 50).path) == 200


@pytest.mark.parametrize("target", ["f", "../a//b/./c", "/etc/passwd", "dir/", "é" * 2047, "a\tb"])
def test_symlink_targets_are_kept_as_given(target: str) -> None:
    assert paths.validate_target(target) == target


@pytest.mark.parametrize("target", ["", "a" * 4096, "é" * 2048, "a\nb", "a\x00b", "a\\b", "a\u202eb", "a\ud800"])
def test_bad_symlink_targets_are_refused(target: str) -> None:
    with pytest.raises(BadRequest):
        paths.validate_target(target)
