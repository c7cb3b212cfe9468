"""Paths of a tree copy (callfs_csi.clone.relative_to)."""

from __future__ import annotations

import pytest

from callfs_csi.clone import relative_to


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [("/volumes/a/x", "/volumes/a", "x"), ("/volumes/a/x/y z", "/volumes/a/", "x/y z")],
)
def test_relative_to(path: str, root: str, expected: str) -> None:
    assert relative_to(path, root) == expected


@pytest.mark.parametrize(("path", "root"), [("/volumes/ab/x", "/volumes/a"), ("/volumes/a", "/volumes/a")])
def test_paths_outside_the_root_are_refused(path: str, root: str) -> None:
    with pytest.raises(ValueError, match="not below"):
        relative_to(path, root)
