"""The metadata store protocol (``callfs.metadata.base``), run identically on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callfs import paths
from callfs.metadata.base import MetadataStore, MetadataUnavailable
from callfs.metadata.postgres import MIGRATIONS as PG_MIGRATIONS
from callfs.metadata.postgres import PostgresStore
from callfs.metadata.rows import BLOB_PAGE_SIZE, from_micros, subtree_bounds, to_micros
from callfs.metadata.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from callfs.metadata.sqlite import SQLiteStore
from callfs.models import Inode, InodeType, ListingPage, NodeRecord, Quota, SingleUseLink
from support.pg import new_store
from support.ports import free_port

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def directory(path: str, **changes: object) -> Inode:
    return Inode(path=path, type=InodeType.DIRECTORY, mode=0o755, mtime=T0, ctime=T0).evolve(**changes)


def file(path: str, **changes: object) -> Inode:
    base = Inode(
        path=path,
        type=InodeType.FILE,
        size=4096,
        mtime=T0,
        ctime=T0,
        backend="localfs",
        blob_id=f"blob{path.replace('/', '_')}",
        instance_id="node-a",
    )
    return base.evolve(**changes)


async def insert_all(store: MetadataStore, *inodes: Inode) -> None:
    async with store.transaction() as txn:
        for inode in inodes:
            assert await txn.insert(inode), inode.path


def paths_of(inodes: list[Inode]) -> list[str]:
    return [inode.path for inode in inodes]


async def applied_versions(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[int]:
    """The rows of ``schema_migrations``, read with a plain driver connection (not through the store)."""
    if kind == "postgres":
        conn = await asyncpg.connect(request.getfixturevalue("postgres_dsn"))
        try:
            return [row[0] for row in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        finally:
            await conn.close()
    with sqlite3.connect(tmp_path / "metadata.db") as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def migration_versions(kind: str) -> list[int]:
    return [m.version for m in (PG_MIGRATIONS if kind == "postgres" else SQLITE_MIGRATIONS)]


# --- start ------------------------------------------------------------------------------------------------


async def test_root_exists_with_mode_1777_after_start(metadata_store: MetadataStore) -> None:
    root = await metadata_store.get("/")
    assert root is not None
    assert root.type is InodeType.DIRECTORY
    assert root.mode == 0o1777
    assert root.parent is None
    assert await metadata_store.list_children("/") == []


async def test_starting_again_applies_no_migration_twice_and_keeps_the_root(
    metadata_store: MetadataStore, metadata_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root = await metadata_store.get("/")
    assert root is not None
    await metadata_store.update(root.evolve(mode=0o755, owner="alice"))
    await metadata_store.start()
    other = new_store(metadata_kind, request, tmp_path)
    await other.start()
    try:
        again = await other.get("/")
        assert again is not None
        assert (again.mode, again.owner) == (0o755, "alice")
    finally:
        await other.close()
    assert await applied_versions(metadata_kind, request, tmp_path) == migration_versions(metadata_kind)


async def test_nodes_starting_at_once_on_a_fresh_database_migrate_once(
    metadata_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    stores = [new_store(metadata_kind, request, tmp_path) for _ in range(4)]
    try:
        await asyncio.gather(*(store.start() for store in stores))
        assert await applied_versions(metadata_kind, request, tmp_path) == migration_versions(metadata_kind)
        assert await stores[0].list_subtree("/") == []
    finally:
        for store in stores:
            await store.close()


async def test_ping_answers_while_open_and_not_after_close(
    metadata_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = new_store(metadata_kind, request, tmp_path)
    await store.start()
    assert await store.ping()
    await store.close()
    assert not await store.ping()
    with pytest.raises(MetadataUnavailable):
        await store.get("/")


# --- single inodes ----------------------------------------------------------------------------------------


async def test_inserted_inode_reads_back_field_for_field(metadata_store: MetadataStore) -> None:
    inode = file("/f", size=12345, mode=0o600, owner="alice", group="staff", version=7, instance_id=None)
    assert await metadata_store.insert(inode)
    assert await metadata_store.get("/f") == inode
    async with metadata_store.transaction() as txn:
        assert await txn.get("/f") == inode
        assert await txn.get("/f", for_update=True) == inode


async def test_get_of_a_missing_path_is_none(metadata_store: MetadataStore) -> None:
    assert await metadata_store.get("/nope") is None


async def test_insert_of_an_existing_path_returns_false_and_changes_nothing(
    metadata_store: MetadataStore,
) -> None:
    original = file("/f")
    assert await metadata_store.insert(original)
    assert not await metadata_store.insert(file("/f", size=1, owner="mallory"))
    async with metadata_store.transaction() as txn:
        assert not await txn.insert(directory("/f"))
    assert await metadata_store.get("/f") == original


async def test_update_replaces_every_field(metadata_store: MetadataStore) -> None:
    await metadata_store.insert(file("/f"))
    changed = file(
        "/f",
        size=1,
        mode=0o640,
        owner="bob",
        group="ops",
        mtime=T0 + timedelta(seconds=1),
        ctime=T0 + timedelta(seconds=2),
        version=2,
        backend="s3",
        blob_id="other",
        instance_id=None,
    )
    await metadata_store.update(changed)
    assert await metadata_store.get("/f") == changed


async def test_update_of_a_missing_inode_raises_lookup_error(metadata_store: MetadataStore) -> None:
    with pytest.raises(LookupError):
        await metadata_store.update(file("/missing"))


async def test_delete_removes_exactly_one_inode(metadata_store: MetadataStore) -> None:
    await insert_all(metadata_store, directory("/d"), file("/d/f"))
    await metadata_store.delete("/d/f")
    assert await metadata_store.get("/d/f") is None
    assert await metadata_store.get("/d") is not None
    await metadata_store.delete("/d/f")  # already gone: no error


async def test_times_round_trip_as_aware_utc_with_microseconds(metadata_store: MetadataStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    mtime = datetime(2031, 12, 31, 23, 59, 59, 999999, tzinfo=plus_two)
    ctime = datetime(1999, 1, 2, 3, 4, 5, 1, tzinfo=UTC)
    await metadata_store.insert(file("/t", mtime=mtime, ctime=ctime))
    got = await metadata_store.get("/t")
    assert got is not None
    assert got.mtime == mtime and got.ctime == ctime
    assert got.mtime.utcoffset() == timedelta(0) and got.ctime.tzinfo is not None
    assert (got.mtime.hour, got.mtime.microsecond) == (21, 999999)
    assert got.ctime.microsecond == 1


async def test_naive_datetimes_are_refused(metadata_store: MetadataStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await metadata_store.insert(file("/n", mtime=datetime(2024, 1, 1)))
    assert await metadata_store.get("/n") is None


# --- listings ---------------------------------------------------------------------------------------------

NAMES = ["é", "a", "B", "a b", "a-b", "a.b", "a0", "Z", "_", "~", "日本", "😀", "10", "9", "a\tb"]


async def test_children_list_directories_first_then_names_in_byte_order(
    metadata_store: MetadataStore,
) -> None:
    inodes = [file(f"/{name}") for name in NAMES] + [directory(f"/dir-{name}") for name in NAMES[:5]]
    await insert_all(metadata_store, *inodes)
    expected_dirs = sorted((f"dir-{n}" for n in NAMES[:5]), key=lambda n: n.encode())
    expected_files = sorted(NAMES, key=lambda n: n.encode())
    listed = await metadata_store.list_children("/")
    assert [i.name for i in listed] == expected_dirs + expected_files
    assert [i.name for i in listed][-len(NAMES) :][:3] == ["10", "9", "B"]


async def test_byte_order_puts_upper_case_before_lower_case_before_accents(
    metadata_store: MetadataStore,
) -> None:
    await insert_all(metadata_store, file("/é"), file("/a"), file("/B"))
    assert paths_of(await metadata_store.list_children("/")) == ["/B", "/a", "/é"]


async def test_a_sibling_sharing_a_name_prefix_is_not_a_descendant(metadata_store: MetadataStore) -> None:
    await insert_all(
        metadata_store,
        directory("/a"),
        file("/a/x"),
        directory("/a-b"),
        file("/a-b/y"),
        file("/a0"),
        file("/ab"),
        file("/a.b"),
    )
    assert paths_of(await metadata_store.list_children("/a")) == ["/a/x"]
    assert paths_of(await metadata_store.list_subtree("/a")) == ["/a/x"]
    assert paths_of(await metadata_store.list_tree("/a", 5)) == ["/a/x"]
    async with metadata_store.transaction() as txn:
        assert paths_of(await txn.list_subtree("/a")) == ["/a/x"]
    assert await metadata_store.has_children("/a")
    assert not await metadata_store.has_children("/a0")


async def tree(store: MetadataStore) -> None:
    await insert_all(
        store,
        directory("/top"),
        file("/top/z"),
        directory("/top/b"),
        directory("/top/a"),
        file("/top/a/f"),
        directory("/top/a/sub"),
        file("/top/a/sub/deep"),
        directory("/top/b/sub"),
        file("/top-sibling"),
    )


async def test_list_tree_limits_depth_below_the_children(metadata_store: MetadataStore) -> None:
    await tree(metadata_store)
    assert paths_of(await metadata_store.list_tree("/top", 0)) == ["/top/a", "/top/b", "/top/z"]
    assert paths_of(await metadata_store.list_tree("/top", 1)) == [
        "/top/a",
        "/top/b",
        "/top/z",
        "/top/a/sub",
        "/top/b/sub",
        "/top/a/f",
    ]
    assert paths_of(await metadata_store.list_tree("/top", 2)) == [
        "/top/a",
        "/top/b",
        "/top/z",
        "/top/a/sub",
        "/top/b/sub",
        "/top/a/f",
        "/top/a/sub/deep",
    ]


async def test_list_tree_of_the_root_covers_everything_but_the_root(metadata_store: MetadataStore) -> None:
    await tree(metadata_store)
    assert paths_of(await metadata_store.list_tree("/", 0)) == ["/top", "/top-sibling"]
    everything = await metadata_store.list_tree("/", 10)
    assert len(everything) == 9 and "/" not in paths_of(everything)


async def test_list_tree_refuses_a_negative_depth(metadata_store: MetadataStore) -> None:
    with pytest.raises(ValueError):
        await metadata_store.list_tree("/", -1)


async def test_list_subtree_orders_by_depth_then_directories_then_name(metadata_store: MetadataStore) -> None:
    await tree(metadata_store)
    assert paths_of(await metadata_store.list_subtree("/top")) == [
        "/top/a",
        "/top/b",
        "/top/z",
        "/top/a/sub",
        "/top/b/sub",
        "/top/a/f",
        "/top/a/sub/deep",
    ]


async def pages_of(store: MetadataStore, path: str, limit: int, max_depth: int | None) -> list[list[str]]:
    """Every page of a listing of ``path`` (children only when ``max_depth`` is None), each keyed by the last
    entry of the one before, as the API's cursor does."""
    pages: list[list[str]] = []
    page = ListingPage(limit)
    while True:
        if max_depth is None:
            entries = await store.list_children(path, page)
        else:
            entries = await store.list_tree(path, max_depth, page)
        assert len(entries) <= limit
        if not entries:
            return pages
        pages.append(paths_of(entries))
        page = ListingPage(limit, entries[-1].path, entries[-1].type)


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
async def test_listing_pages_join_into_the_whole_listing(metadata_store: MetadataStore, limit: int) -> None:
    await tree(metadata_store)
    for max_depth in (None, 0, 1, 5):
        whole = paths_of(
            await metadata_store.list_children("/top")
            if max_depth is None
            else await metadata_store.list_tree("/top", max_depth)
        )
        pages = await pages_of(metadata_store, "/top", limit, max_depth)
        assert [p for page in pages for p in page] == whole, (limit, max_depth)
        assert all(len(page) == limit for page in pages[:-1])


async def test_a_page_boundary_holds_while_entries_come_and_go(metadata_store: MetadataStore) -> None:
    await insert_all(metadata_store, directory("/p"), *(file(f"/p/{c}") for c in "bdfh"))
    first = await metadata_store.list_children("/p", ListingPage(2))
    assert paths_of(first) == ["/p/b", "/p/d"]
    # Before the boundary: an entry removed and one added; after it: one added.
    async with metadata_store.transaction() as txn:
        await txn.delete("/p/b")
        assert await txn.insert(file("/p/a"))
        assert await txn.insert(file("/p/e"))
    rest = await metadata_store.list_children("/p", ListingPage(10, "/p/d", InodeType.FILE))
    assert paths_of(rest) == ["/p/e", "/p/f", "/p/h"]
    # A directory sorts before every file: a page after a file never repeats one.
    async with metadata_store.transaction() as txn:
        assert await txn.insert(directory("/p/z"))
    assert paths_of(await metadata_store.list_children("/p", ListingPage(10, "/p/z", InodeType.DIRECTORY))) == [
        "/p/a",
        "/p/d",
        "/p/e",
        "/p/f",
        "/p/h",
    ]


# Names as the API admits them: no '/', no control characters but tab, not '.' or '..'.
name_strategy = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"),
        blacklist_characters="/\\\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
    )
    | st.just("\t"),
    min_size=1,
    max_size=12,
).filter(lambda n: n not in (".", ".."))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.sets(name_strategy, min_size=1, max_size=12), dirs=st.sets(st.integers(0, 11)))
async def test_listing_order_matches_utf8_byte_order_for_any_names(
    metadata_store: MetadataStore, names: set[str], dirs: set[int]
) -> None:
    top = f"/{time.monotonic_ns()}"  # a fresh directory per example: the fixture's store is shared
    entries = sorted(names)
    inodes = [
        (directory if i in dirs else file)(paths.join(top, paths.canonicalize(name).path[1:]))
        for i, name in enumerate(entries)
    ]
    await insert_all(metadata_store, directory(top), *inodes)
    expected = sorted(inodes, key=lambda i: (not i.is_dir, i.name.encode()))
    assert paths_of(await metadata_store.list_children(top)) == paths_of(expected)
    assert paths_of(await metadata_store.list_tree(top, 0)) == paths_of(expected)
    assert [p for page in await pages_of(metadata_store, top, 5, 0) for p in page] == paths_of(expected)


@given(
    top=st.lists(name_strategy, min_size=0, max_size=3).map(lambda parts: "/" + "/".join(parts)),
    other=st.lists(name_strategy, min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts)),
)
def test_subtree_bounds_hold_exactly_the_descendants(top: str, other: str) -> None:
    low, high = subtree_bounds(top)
    inside = low.encode() <= other.encode() < high.encode()
    assert inside == (other != top and paths.is_within(other, top))


@given(st.datetimes(timezones=st.just(UTC)))
def test_microsecond_encoding_round_trips(value: datetime) -> None:
    assert from_micros(to_micros(value)) == value


# --- subtree operations -----------------------------------------------------------------------------------


async def test_delete_subtree_returns_every_deleted_inode_and_spares_prefix_siblings(
    metadata_store: MetadataStore,
) -> None:
    await insert_all(
        metadata_store,
        directory("/dir"),
        file("/dir/f1"),
        directory("/dir/sub"),
        file("/dir/sub/f2"),
        directory("/dir2"),
        file("/dir2/keep"),
        file("/dir-x"),
    )
    async with metadata_store.transaction() as txn:
        deleted = await txn.delete_subtree("/dir")
    assert paths_of(deleted) == ["/dir", "/dir/f1", "/dir/sub", "/dir/sub/f2"]
    assert all(inode.blob_id for inode in deleted if inode.type is InodeType.FILE)
    assert await metadata_store.get("/dir") is None
    assert await metadata_store.list_subtree("/dir") == []
    assert paths_of(await metadata_store.list_subtree("/")) == ["/dir2", "/dir-x", "/dir2/keep"]


async def test_delete_subtree_of_a_file_returns_that_file(metadata_store: MetadataStore) -> None:
    await metadata_store.insert(file("/only"))
    assert paths_of(await metadata_store.delete_subtree("/only")) == ["/only"]
    assert await metadata_store.get("/only") is None


async def test_rename_subtree_moves_one_entry_and_every_descendant_follows_it(
    metadata_store: MetadataStore,
) -> None:
    original = file("/dir/sub/f2", size=77)
    await insert_all(
        metadata_store,
        directory("/dir"),
        file("/dir/f1"),
        directory("/dir/sub"),
        original,
        directory("/dir2"),
        file("/dir2/keep"),
        directory("/new"),
    )
    async with metadata_store.transaction() as txn:
        assert await txn.rename_subtree("/dir", "/new/place") == 1  # one entry re-keyed, whatever is below
    assert await metadata_store.get("/dir") is None
    assert await metadata_store.list_subtree("/dir") == []
    moved = await metadata_store.list_subtree("/new")
    assert [(i.path, i.parent, i.name, i.depth) for i in moved] == [
        ("/new/place", "/new", "place", 2),
        ("/new/place/sub", "/new/place", "sub", 3),
        ("/new/place/f1", "/new/place", "f1", 3),
        ("/new/place/sub/f2", "/new/place/sub", "f2", 4),
    ]
    f2 = await metadata_store.get("/new/place/sub/f2")
    # Everything but the path stays, the inode number included.
    assert f2 == original.evolve(path="/new/place/sub/f2")
    assert paths_of(await metadata_store.list_children("/new/place")) == ["/new/place/sub", "/new/place/f1"]
    assert paths_of(await metadata_store.list_subtree("/dir2")) == ["/dir2/keep"]


async def test_rename_subtree_to_a_shallower_place(metadata_store: MetadataStore) -> None:
    await insert_all(metadata_store, directory("/a"), directory("/a/b"), directory("/a/b/c"), file("/a/b/c/f"))
    assert await metadata_store.rename_subtree("/a/b", "/b") == 1
    assert [(i.path, i.parent, i.depth) for i in await metadata_store.list_subtree("/b")] == [
        ("/b/c", "/b", 2),
        ("/b/c/f", "/b/c", 3),
    ]
    assert paths_of(await metadata_store.list_children("/a")) == []


async def test_rename_subtree_of_a_missing_path_moves_nothing(metadata_store: MetadataStore) -> None:
    assert await metadata_store.rename_subtree("/ghost", "/elsewhere") == 0


async def test_rename_subtree_refuses_an_existing_target_or_a_move_into_itself(
    metadata_store: MetadataStore,
) -> None:
    await insert_all(metadata_store, directory("/a"), file("/a/f"), file("/b"))
    with pytest.raises(ValueError):
        await metadata_store.rename_subtree("/a", "/b")
    with pytest.raises(ValueError):
        await metadata_store.rename_subtree("/a", "/a/inner")
    with pytest.raises(ValueError):
        await metadata_store.rename_subtree("/", "/x")
    assert paths_of(await metadata_store.list_subtree("/")) == ["/a", "/b", "/a/f"]


async def test_a_failed_rename_inside_a_transaction_rolls_back_the_whole_move(
    metadata_store: MetadataStore,
) -> None:
    await insert_all(metadata_store, directory("/a"), file("/a/f"))
    with pytest.raises(RuntimeError):
        async with metadata_store.transaction() as txn:
            await txn.rename_subtree("/a", "/b")
            raise RuntimeError("abort after the move")
    assert paths_of(await metadata_store.list_subtree("/")) == ["/a", "/a/f"]


# --- transactions -----------------------------------------------------------------------------------------


async def test_an_exception_rolls_the_transaction_back(metadata_store: MetadataStore) -> None:
    await metadata_store.insert(file("/existing"))
    with pytest.raises(KeyError):
        async with metadata_store.transaction() as txn:
            await txn.insert(directory("/d"))
            await txn.insert(file("/d/f"))
            await txn.delete("/existing")
            await txn.insert_link(SingleUseLink(token_id="t", path="/d/f", created_by="u", expires_at=T0))
            raise KeyError("boom")
    assert paths_of(await metadata_store.list_subtree("/")) == ["/existing"]
    assert await metadata_store.get_link("t") is None


async def test_a_cancelled_transaction_rolls_back_and_the_store_stays_usable(
    metadata_store: MetadataStore,
) -> None:
    inside = asyncio.Event()

    async def writer() -> None:
        async with metadata_store.transaction() as txn:
            await txn.insert(file("/cancelled"))
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(writer())
    await asyncio.wait_for(inside.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await metadata_store.get("/cancelled") is None
    assert await metadata_store.insert(file("/after"))
    async with metadata_store.transaction() as txn:
        assert await txn.get("/cancelled") is None


async def test_a_writer_cancelled_while_queued_does_not_strand_the_others(metadata_store: MetadataStore) -> None:
    inside, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with metadata_store.transaction() as txn:
            await txn.insert(file("/first"))
            inside.set()
            await release.wait()

    holder = asyncio.create_task(first())
    await asyncio.wait_for(inside.wait(), 10)
    queued = [asyncio.create_task(metadata_store.insert(file(f"/queued{i}"))) for i in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)  # let them reach the writer's queue
    release.set()
    queued[1].cancel()
    await asyncio.wait_for(holder, 10)
    done = await asyncio.wait_for(asyncio.gather(*queued, return_exceptions=True), 10)
    assert done[0] is True and done[2] is True
    assert await metadata_store.get("/first") is not None
    assert await metadata_store.get("/queued0") is not None
    assert await metadata_store.insert(file("/later"))


async def test_reads_outside_a_transaction_see_only_committed_rows(metadata_store: MetadataStore) -> None:
    async with metadata_store.transaction() as txn:
        await txn.insert(file("/pending"))
        assert await txn.get("/pending") is not None
        assert await metadata_store.get("/pending") is None
        assert await metadata_store.list_children("/") == []
        assert not await metadata_store.has_children("/")
    assert await metadata_store.get("/pending") is not None


async def test_concurrent_read_modify_write_transactions_serialise(metadata_store: MetadataStore) -> None:
    await metadata_store.insert(file("/counter", version=0))

    async def increment() -> None:
        async with metadata_store.transaction() as txn:
            current = await txn.get("/counter", for_update=True)
            assert current is not None
            await asyncio.sleep(0)  # give the others every chance to interleave
            await txn.update(current.evolve(version=current.version + 1))

    await asyncio.gather(*(increment() for _ in range(20)))
    counter = await metadata_store.get("/counter")
    assert counter is not None and counter.version == 20


async def test_every_concurrent_transaction_is_committed_when_it_returns(metadata_store: MetadataStore) -> None:
    async def write(i: int) -> None:
        async with metadata_store.transaction() as txn:
            await txn.get("/", for_update=True)
            assert await txn.insert(file(f"/c{i:02d}"))
        # Visible to the autocommit reader as soon as the block is left: committed, not merely queued.
        assert await metadata_store.get(f"/c{i:02d}") is not None

    await asyncio.gather(*(write(i) for i in range(30)))
    assert len(await metadata_store.list_children("/")) == 30


async def test_a_failing_transaction_among_concurrent_ones_rolls_back_only_itself(
    metadata_store: MetadataStore,
) -> None:
    async def write(i: int) -> None:
        async with metadata_store.transaction() as txn:
            await txn.insert(directory(f"/d{i:02d}"))
            await txn.insert(file(f"/d{i:02d}/f"))
            await asyncio.sleep(0)
            if i % 3 == 0:
                raise KeyError(i)

    results = await asyncio.gather(*(write(i) for i in range(21)), return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, KeyError)] == list(range(0, 21, 3))
    expected = sorted(f"/d{i:02d}" for i in range(21) if i % 3)
    assert paths_of(await metadata_store.list_children("/")) == expected
    assert len(await metadata_store.list_tree("/", 1)) == 2 * len(expected)


async def test_concurrent_single_writes_all_land(metadata_store: MetadataStore) -> None:
    inserted = await asyncio.gather(*(metadata_store.insert(file(f"/s{i:02d}")) for i in range(30)))
    duplicate = await asyncio.gather(*(metadata_store.insert(file(f"/s{i:02d}")) for i in range(30)))
    assert all(inserted) and not any(duplicate)
    await asyncio.gather(*(metadata_store.delete(f"/s{i:02d}") for i in range(0, 30, 2)))
    assert paths_of(await metadata_store.list_children("/")) == [f"/s{i:02d}" for i in range(1, 30, 2)]


# --- single-use links -------------------------------------------------------------------------------------


def link(token_id: str, expires_at: datetime, **changes: object) -> SingleUseLink:
    from dataclasses import replace

    return replace(
        SingleUseLink(token_id=token_id, path="/f", created_by="alice", expires_at=expires_at, created_at=T0),
        **changes,
    )


async def test_link_reads_back_field_for_field(metadata_store: MetadataStore) -> None:
    original = link("tok", T0 + timedelta(hours=1))
    await metadata_store.insert_link(original)
    assert await metadata_store.get_link("tok") == original
    assert await metadata_store.get_link("other") is None


async def test_exactly_one_of_twenty_concurrent_consumers_wins(metadata_store: MetadataStore) -> None:
    original = link("once", T0 + timedelta(hours=1))
    await metadata_store.insert_link(original)
    now = T0 + timedelta(minutes=1)

    async def consume(i: int) -> SingleUseLink | None:
        return await metadata_store.consume_link("once", now=now, client_ip=f"10.0.0.{i}")

    results = await asyncio.gather(*(consume(i) for i in range(20)))
    winners = [r for r in results if r is not None]
    assert winners == [original]  # as it was before the flip
    stored = await metadata_store.get_link("once")
    assert stored is not None
    assert stored.status == "used" and stored.used_at == now
    assert stored.used_by_ip in {f"10.0.0.{i}" for i in range(20)}


async def test_consume_inside_a_transaction_is_single_use_too(metadata_store: MetadataStore) -> None:
    await metadata_store.insert_link(link("tx", T0 + timedelta(hours=1)))
    async with metadata_store.transaction() as txn:
        assert await txn.consume_link("tx", now=T0, client_ip=None) is not None
        assert await txn.consume_link("tx", now=T0, client_ip=None) is None
    used = await metadata_store.get_link("tx")
    assert used is not None and used.status == "used" and used.used_by_ip is None


async def test_an_expired_or_unknown_link_cannot_be_consumed(metadata_store: MetadataStore) -> None:
    await metadata_store.insert_link(link("old", T0))
    assert await metadata_store.consume_link("old", now=T0, client_ip="::1") is None
    assert await metadata_store.consume_link("old", now=T0 + timedelta(seconds=1), client_ip="::1") is None
    assert await metadata_store.consume_link("unknown", now=T0, client_ip="::1") is None
    stored = await metadata_store.get_link("old")
    assert stored is not None and stored.status == "active"


async def test_sweep_deletes_expired_and_long_used_links_only(metadata_store: MetadataStore) -> None:
    now = T0 + timedelta(days=10)
    used_before = now - timedelta(days=1)
    await metadata_store.insert_link(link("expired", now - timedelta(seconds=1)))
    await metadata_store.insert_link(link("expires-now", now))
    await metadata_store.insert_link(link("active", now + timedelta(hours=1)))
    await metadata_store.insert_link(
        link("used-long-ago", now + timedelta(hours=1), status="used", used_at=used_before - timedelta(hours=1))
    )
    await metadata_store.insert_link(
        link("used-recently", now + timedelta(hours=1), status="used", used_at=used_before + timedelta(hours=1))
    )
    assert await metadata_store.sweep_links(now=now, used_before=used_before) == 3
    remaining = {
        t
        for t in ["expired", "expires-now", "active", "used-long-ago", "used-recently"]
        if await metadata_store.get_link(t) is not None
    }
    assert remaining == {"active", "used-recently"}
    assert await metadata_store.sweep_links(now=now, used_before=used_before) == 0


# --- blob ids ---------------------------------------------------------------------------------------------


async def test_blob_ids_stream_the_files_of_one_backend_and_owner(metadata_store: MetadataStore) -> None:
    mine = [file(f"/many/{i:05d}", blob_id=f"mine-{i}") for i in range(BLOB_PAGE_SIZE * 2 + 7)]
    await insert_all(
        metadata_store,
        directory("/many", backend="localfs", instance_id="node-a"),
        *mine,
        file("/other-node", blob_id="theirs", instance_id="node-b"),
        file("/shared", backend="s3", blob_id="in-s3", instance_id=None),
        file("/s3-owned", backend="s3", blob_id="s3-owned", instance_id="node-a"),
        file("/empty", blob_id=None),
    )
    streamed = [blob async for blob in metadata_store.blob_ids("localfs", "node-a")]
    assert sorted(streamed) == sorted(f"mine-{i}" for i in range(len(mine)))
    assert [b async for b in metadata_store.blob_ids("localfs", "node-b")] == ["theirs"]
    assert [b async for b in metadata_store.blob_ids("s3", None)] == ["in-s3"]
    assert [b async for b in metadata_store.blob_ids("s3", "node-a")] == ["s3-owned"]
    assert [b async for b in metadata_store.blob_ids("noop", None)] == []


# --- failures ---------------------------------------------------------------------------------------------


async def test_postgres_store_reports_an_unreachable_server_quickly() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    started = time.monotonic()
    with pytest.raises(MetadataUnavailable):
        await store.start()
    assert time.monotonic() - started < 5
    assert not await store.ping()
    with pytest.raises(MetadataUnavailable):
        async with store.transaction():
            pass


async def test_postgres_store_reports_a_connection_the_server_killed(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn, min_size=1, max_size=1)
    await store.start()
    try:
        await store.insert(file("/f"))
        with pytest.raises(MetadataUnavailable):
            async with store.transaction() as txn:
                current = await txn.get("/f", for_update=True)
                assert current is not None
                admin = await asyncpg.connect(postgres_dsn)
                try:
                    killed = await admin.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                finally:
                    await admin.close()
                assert killed == 1
                await txn.update(current.evolve(version=2))
        got = await store.get("/f")  # the pool replaced the dead connection; the update never committed
        assert got is not None and got.version == 1
    finally:
        await store.close()


async def test_sqlite_store_refuses_a_nested_write_instead_of_deadlocking(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    await store.start()
    try:
        async with store.transaction() as txn:
            await txn.insert(file("/x"))
            with pytest.raises(RuntimeError):
                await store.insert(file("/y"))
            with pytest.raises(RuntimeError):
                async with store.transaction():
                    pass
        assert await store.get("/x") is not None
    finally:
        await store.close()


async def test_sqlite_store_reports_an_unopenable_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(MetadataUnavailable):
        await SQLiteStore(blocker / "metadata.db").start()


# --- quotas and cluster nodes ------------------------------------------------------------------------------


async def test_quotas_round_trip_and_usage_deltas(metadata_store: MetadataStore) -> None:
    await insert_all(metadata_store, directory("/vol"), directory("/vol/a"), file("/vol/a/f", size=10))
    async with metadata_store.transaction() as txn:
        await txn.put_quota(Quota("/vol", 1000, None, 10, 2))
        await txn.put_quota(Quota("/vol/a", None, 5, 10, 1))
    assert await metadata_store.quotas_for(["/", "/vol", "/vol/a", "/elsewhere"]) == [
        Quota("/vol", 1000, None, 10, 2), Quota("/vol/a", None, 5, 10, 1)]
    async with metadata_store.transaction() as txn:
        locked = await txn.quotas_for(["/vol/a", "/vol"], for_update=True)
        assert [q.path for q in locked] == ["/vol", "/vol/a"]
        await txn.add_usage("/vol", 90, 1)
        await txn.add_usage("/vol/a", -10, -1)
    assert await metadata_store.quotas_for(["/vol", "/vol/a"]) == [
        Quota("/vol", 1000, None, 100, 3), Quota("/vol/a", None, 5, 0, 0)]
    await metadata_store.put_quota(Quota("/vol", 2000, 7, 100, 3))
    assert (await metadata_store.quotas_for(["/vol"]))[0].inodes_limit == 7
    assert await metadata_store.quotas_for([]) == []
    assert await metadata_store.delete_quota("/vol/a") is True
    assert await metadata_store.delete_quota("/vol/a") is False


async def test_subtree_usage_counts_bytes_of_files_and_every_entry(metadata_store: MetadataStore) -> None:
    await insert_all(
        metadata_store, directory("/u"), file("/u/a", size=100), directory("/u/d"), file("/u/d/b", size=23),
        file("/u-sibling", size=999),
    )
    assert await metadata_store.subtree_usage("/u") == (123, 3)
    assert await metadata_store.subtree_usage("/u/d") == (23, 1)
    assert await metadata_store.subtree_usage("/u/a") == (0, 0)


async def test_quotas_follow_renames_and_die_with_their_subtree(metadata_store: MetadataStore) -> None:
    await insert_all(metadata_store, directory("/q"), directory("/q/inner"), directory("/q2"))
    await metadata_store.put_quota(Quota("/q", 10, None, 0, 1))
    await metadata_store.put_quota(Quota("/q/inner", 5, None, 0, 0))
    await metadata_store.put_quota(Quota("/q2", 5, None, 0, 0))
    await metadata_store.rename_subtree("/q", "/moved")
    assert [q.path for q in await metadata_store.quotas_within("/")] == ["/moved", "/moved/inner", "/q2"]
    assert await metadata_store.quotas_within("/q") == []
    await metadata_store.delete_subtree("/moved")
    assert [q.path for q in await metadata_store.quotas_within("/")] == ["/q2"]


async def test_cluster_nodes_upsert_and_list(metadata_store: MetadataStore) -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    first = NodeRecord("node-b", "http://127.0.0.1:1", "0.1.0", 1000, 500, started, started)
    await metadata_store.upsert_node(first)
    await metadata_store.upsert_node(NodeRecord("node-a", "http://127.0.0.1:2", "0.1.0", 10, 5, started, started))
    later = started + timedelta(seconds=5)
    await metadata_store.upsert_node(NodeRecord("node-b", "http://127.0.0.1:1", "0.1.0", 1000, 400, started, later))
    nodes = await metadata_store.list_nodes()
    assert [n.instance_id for n in nodes] == ["node-a", "node-b"]
    assert nodes[1].free_bytes == 400 and nodes[1].last_heartbeat == later and nodes[1].started_at == started
