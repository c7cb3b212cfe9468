"""The TTL attribute cache (csi/callfs_csi/fuse/cache.py), driven by a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

from callfs.client import FileInfo
from callfs_csi.fuse import cache as cache_module
from callfs_csi.fuse.cache import AttrCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def info(path: str) -> FileInfo:
    return FileInfo(path=path, name=path.rsplit("/", 1)[-1], type="file", size=1, mode=0o644, owner="u",
                    mtime=datetime(2024, 1, 1, tzinfo=UTC))


def test_positive_entry_expires_after_the_ttl() -> None:
    clock = Clock()
    cache = AttrCache(ttl=1.0, negative_ttl=0.5, clock=clock)
    cache.put(info("/a"))
    hit = cache.get("/a")
    assert hit is not None and hit.info == info("/a")
    clock.now += 0.99
    assert cache.get("/a") is not None
    clock.now += 0.02
    assert cache.get("/a") is None


def test_negative_entry_has_its_own_ttl() -> None:
    clock = Clock()
    cache = AttrCache(ttl=10.0, negative_ttl=0.5, clock=clock)
    cache.put_missing("/gone")
    hit = cache.get("/gone")
    assert hit is not None and hit.info is None
    clock.now += 0.6
    assert cache.get("/gone") is None


def test_zero_ttls_disable_caching() -> None:
    cache = AttrCache(ttl=0, negative_ttl=0)
    cache.put(info("/a"))
    cache.put_missing("/b")
    assert cache.get("/a") is None and cache.get("/b") is None


def test_invalidate_tree_drops_the_subtree_only() -> None:
    cache = AttrCache(ttl=10, negative_ttl=10)
    for path in ("/d", "/d/x", "/d/x/y", "/dd", "/e"):
        cache.put(info(path))
    cache.invalidate_tree("/d")
    assert [p for p in ("/d", "/d/x", "/d/x/y", "/dd", "/e") if cache.get(p) is not None] == ["/dd", "/e"]


def test_invalidate_exact_paths() -> None:
    cache = AttrCache(ttl=10, negative_ttl=10)
    cache.put(info("/a"))
    cache.put(info("/a/b"))
    cache.invalidate("/a", "/missing")
    assert cache.get("/a") is None and cache.get("/a/b") is not None


def test_size_stays_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cache_module, "MAX_ENTRIES", 10)
    cache = AttrCache(ttl=10, negative_ttl=10)
    for i in range(50):
        cache.put(info(f"/f{i}"))
    assert len(cache) <= 10
    assert cache.get("/f49") is not None
