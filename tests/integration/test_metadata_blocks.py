"""Inode numbers, block lists and block reference counts in the metadata store, and the upgrade of a store
written before them; run identically on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from callfs.metadata.base import BlockNotReserved, MetadataStore
from callfs.metadata.postgres import MIGRATIONS as PG_MIGRATIONS
from callfs.metadata.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from callfs.models import FileBlock, Inode, InodeType, Layout, NodeRecord, path_ino, utcnow
from support.pg import new_store

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
H = {name: name * 64 for name in "abcdef"}  # block names (64 hex digits)
PATH_KEYED_VERSION = 3
"""The last schema version before inode numbers and blocks."""
ENTRIES_VERSION = 16
"""The first schema version whose rows are directory entries, keyed by ``(parent_ino, name)``."""


def blocks_file(path: str, **changes: object) -> Inode:
    return Inode(path=path, type=InodeType.FILE, size=0, mode=0o644, backend="localfs", blob_id="k" + "c" * 31,
                 instance_id="node-a", layout=Layout.BLOCKS, mtime=T0, ctime=T0).evolve(**changes)




# --- the upgrade of a path-keyed store -----------------------------------------------------------------------

OLD_ROWS = [
    # path, parent, name, depth, type, size, blob_id
    ("/docs", "/", "docs", 1, "directory", 0, None),
    ("/docs/a.txt", "/docs", "a.txt", 2, "file", 5, "0123456789abcdef0123456789abcdef"),
    ("/docs/sub", "/docs", "sub", 2, "directory", 0, None),
    ("/docs/sub/b.bin", "/docs/sub", "b.bin", 3, "file", 9, "fedcba9876543210fedcba9876543210"),
]


def _build_old_sqlite(path: Path, version: int = PATH_KEYED_VERSION, statements: tuple[str, ...] = ()) -> None:
    """A SQLite store at schema ``version`` holding :data:`OLD_ROWS`, then ``statements`` run on it."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, "
                     "description TEXT NOT NULL, applied_at INTEGER NOT NULL)")
        for migration in [m for m in SQLITE_MIGRATIONS if m.version <= version]:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (migration.version, migration.description))
        for path_, parent, name, depth, kind, size, blob in [("/", None, "", 0, "directory", 0, None), *OLD_ROWS]:
            conn.execute(
                "INSERT INTO inodes (path, parent, name, depth, type, size, mode, owner, grp, mtime, ctime, "
                "version, backend, blob_id, instance_id) VALUES (?, ?, ?, ?, ?, ?, 493, 'alice', 'alice', 0, 0, 2, "
                "?, ?, ?)",
                (path_, parent, name, depth, kind, size, "localfs" if blob else None, blob,
                 "node-a" if blob else None),
            )
        for statement in statements:
            conn.execute(statement.replace("$1", "0"))


async def _build_old_postgres(dsn: str, version: int = PATH_KEYED_VERSION, statements: tuple[str, ...] = ()) -> None:
    """A PostgreSQL store at schema ``version`` holding :data:`OLD_ROWS`, then ``statements`` run on it (``$1``: a
    time)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, description text NOT NULL, "
                           "applied_at timestamptz NOT NULL)")
        for migration in [m for m in PG_MIGRATIONS if m.version <= version]:
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, now())", migration.version,
                               migration.description)
        for path_, parent, name, depth, kind, size, blob in [("/", None, "", 0, "directory", 0, None), *OLD_ROWS]:
            await conn.execute(
                "INSERT INTO inodes (path, parent, name, depth, type, size, mode, owner, grp, mtime, ctime, "
                "version, backend, blob_id, instance_id) VALUES ($1, $2, $3, $4, $5, $6, 493, 'alice', 'alice', "
                "$7, $7, 2, $8, $9, $10)",
                path_, parent, name, depth, kind, size, T0, "localfs" if blob else None, blob,
                "node-a" if blob else None,
            )
        for statement in statements:
            await conn.execute(statement, *((T0,) if "$1" in statement else ()))
    finally:
        await conn.close()


async def test_a_path_keyed_store_upgrades_in_place_and_reads_back_every_entry(
    metadata_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if metadata_kind == "postgres":
        await _build_old_postgres(request.getfixturevalue("postgres_dsn"))
    else:
        _build_old_sqlite(tmp_path / "metadata.db")
    store = new_store(metadata_kind, request, tmp_path)
    await store.start()
    try:
        found = {i.path: i for i in await store.list_subtree("/")}
        assert sorted(found) == sorted(row[0] for row in OLD_ROWS)
        for path_, _parent, _name, _depth, kind, size, blob in OLD_ROWS:
            inode = found[path_]
            assert (inode.type.value, inode.size, inode.blob_id, inode.owner, inode.version) == (
                kind, size, blob, "alice", 2
            )
            assert inode.layout is Layout.BLOB  # existing bytes stay where they are, readable as before
        numbers = [i.ino for i in found.values()]
        assert all(n > 0 for n in numbers) and len(set(numbers)) == len(numbers)
        if metadata_kind == "postgres":
            assert all(i.ino == path_ino(i.path) for i in found.values())
        # The numbers are stable: a rename keeps them, a later start does not renumber.
        before = found["/docs/sub/b.bin"].ino
        assert await store.rename_subtree("/docs/sub", "/moved") == 1
        await store.start()
        moved = await store.get("/moved/b.bin")
        assert moved is not None and moved.ino == before
        # The migrations after the blocks (attributes kept with a content) ran too.
        assert moved.blob_id is not None
        await store.put_attributes(moved.blob_id, {"Content-Type": "text/plain"})
        assert await store.get_attributes(moved.blob_id) == {"Content-Type": "text/plain"}
        assert await store.block_replicas("localfs", "node-0", "0" * 64) == []  # and the block replicas' table
        migrations = PG_MIGRATIONS if metadata_kind == "postgres" else SQLITE_MIGRATIONS
        versions = [m.version for m in migrations]  # they need only increase: other branches hold 8 and 9
        assert versions[0] == 1 and versions == sorted(set(versions))
    finally:
        await store.close()


async def test_rows_an_earlier_version_wrote_during_a_rolling_upgrade_survive_the_move_to_entries(
    metadata_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Before entries (schema version 16), a node of an earlier version could insert a row without a number, and
    # overwrite a file stored in blocks with a blob id while the layout column still said blocks.
    old_rows = (
        "INSERT INTO inodes (path, parent, name, depth, type, size, mode, owner, grp, mtime, ctime, version, "
        "backend, blob_id, instance_id) VALUES ('/old', '/', 'old', 1, 'file', 3, 420, 'a', 'a', $1, $1, 1, "
        "'localfs', '0123456789abcdef0123456789abcdef', 'node-a')",
        "UPDATE inodes SET layout = 'blocks' WHERE path = '/old'",
    )
    if metadata_kind == "postgres":
        await _build_old_postgres(request.getfixturevalue("postgres_dsn"), ENTRIES_VERSION - 1, old_rows)
    else:
        _build_old_sqlite(tmp_path / "metadata.db", ENTRIES_VERSION - 1, old_rows)
    store = new_store(metadata_kind, request, tmp_path)
    await store.start()
    try:
        old = await store.get("/old")
        assert old is not None and old.ino > 0 and old.layout is Layout.BLOB and old.size == 3
        if metadata_kind == "postgres":
            assert old.ino == path_ino("/old")  # the number such a row was read with before
        assert {i.path for i in await store.list_subtree("/")} == {"/old", *(row[0] for row in OLD_ROWS)}
        assert await store.rename_subtree("/docs", "/old-docs") == 1
        assert [i.path for i in await store.list_subtree("/old-docs")] == [
            "/old-docs/sub", "/old-docs/a.txt", "/old-docs/sub/b.bin"
        ]
    finally:
        await store.close()


# --- block lists and reference counts ------------------------------------------------------------------------


async def reserve(store: MetadataStore, *names: str, size: int = 4) -> None:
    for name in names:
        assert await store.reserve_block("localfs", "node-a", name, size, size + 1) is not None


async def claimable(store: MetadataStore) -> list[str]:
    """What a collection with no grace left would claim now (claims them)."""
    return await store.claim_blocks("localfs", "node-a", utcnow() + timedelta(seconds=1), 100)


async def test_block_lists_follow_the_inode_number_across_a_rename(metadata_store: MetadataStore) -> None:
    inode = blocks_file("/f", size=10)
    assert await metadata_store.insert(inode)
    await reserve(metadata_store, H["a"], H["b"])
    await metadata_store.replace_blocks(inode, [FileBlock(0, H["a"], 4), FileBlock(1, H["b"], 6)], 2)
    await metadata_store.rename_subtree("/f", "/g")
    moved = await metadata_store.get("/g")
    assert moved is not None and moved.ino == inode.ino
    assert await metadata_store.file_blocks(moved.ino) == [FileBlock(0, H["a"], 4), FileBlock(1, H["b"], 6)]
    assert await metadata_store.file_blocks(moved.ino, start=1) == [FileBlock(1, H["b"], 6)]
    assert await metadata_store.block_totals("localfs", "node-a") == (2, 8, 10)


async def test_reference_counts_free_a_block_only_when_its_last_file_lets_go(metadata_store: MetadataStore) -> None:
    one, two = blocks_file("/one"), blocks_file("/two")
    await metadata_store.insert(one)
    await metadata_store.insert(two)
    await reserve(metadata_store, H["a"], H["b"], H["c"])
    await metadata_store.replace_blocks(one, [FileBlock(0, H["a"], 4), FileBlock(1, H["b"], 4)], 2)
    await metadata_store.replace_blocks(two, [FileBlock(0, H["b"], 4)], 1)
    # Overwriting block 1 of /one lets go of b once; /two still holds it.
    await metadata_store.replace_blocks(one, [FileBlock(1, H["c"], 4)], 2)
    assert await metadata_store.claim_blocks("localfs", "node-a", T0, 10) == []  # nothing old enough
    assert await claimable(metadata_store) == []
    # Deleting /two releases its list in the same transaction: b is now unreferenced, and only b.
    async with metadata_store.transaction() as txn:
        await txn.delete_subtree("/two")
    assert await metadata_store.claim_blocks("localfs", "node-a", T0, 10) == []  # still within its grace
    assert await claimable(metadata_store) == [H["b"]]
    # Claimed: it can be neither reserved nor referenced any more, until its row is forgotten.
    assert await metadata_store.reserve_block("localfs", "node-a", H["b"], 4, 5) is None
    with pytest.raises(BlockNotReserved):
        await metadata_store.replace_blocks(one, [FileBlock(1, H["b"], 4)], 2)
    assert await metadata_store.file_blocks(one.ino) == [FileBlock(0, H["a"], 4), FileBlock(1, H["c"], 4)]
    # A collection cut short is claimed again by the next one.
    assert await metadata_store.claim_blocks("localfs", "node-a", T0, 10) == [H["b"]]
    assert await metadata_store.forget_block("localfs", "node-a", H["b"])
    assert not await metadata_store.block_known("localfs", "node-a", H["b"])
    # A referenced block cannot be claimed nor forgotten.
    assert not await metadata_store.forget_block("localfs", "node-a", H["a"])


async def test_a_block_reserved_again_before_collection_is_kept(metadata_store: MetadataStore) -> None:
    one = blocks_file("/one")
    await metadata_store.insert(one)
    await reserve(metadata_store, H["a"])
    await metadata_store.replace_blocks(one, [FileBlock(0, H["a"], 4)], 1)
    assert await metadata_store.reserve_block("localfs", "node-a", H["a"], 4, 5) == 1  # stored: skip the write
    await metadata_store.replace_blocks(one, [], 0)  # truncated to nothing: a is unreferenced
    await metadata_store.replace_blocks(one, [FileBlock(0, H["a"], 4)], 1)  # and referenced again
    assert await claimable(metadata_store) == []


async def test_a_block_never_reserved_cannot_be_referenced(metadata_store: MetadataStore) -> None:
    one = blocks_file("/one")
    await metadata_store.insert(one)
    with pytest.raises(BlockNotReserved):
        await metadata_store.replace_blocks(one, [FileBlock(0, H["f"], 4)], 1)
    assert await metadata_store.file_blocks(one.ino) == []


async def test_one_block_twice_in_a_file_counts_twice(metadata_store: MetadataStore) -> None:
    one = blocks_file("/zeros")
    await metadata_store.insert(one)
    await reserve(metadata_store, H["d"])
    await metadata_store.replace_blocks(one, [FileBlock(0, H["d"], 4), FileBlock(1, H["d"], 4)], 2)
    await metadata_store.replace_blocks(one, [], 1)  # drops index 1 only
    assert await claimable(metadata_store) == []
    await metadata_store.release_blocks(one)
    assert await claimable(metadata_store) == [H["d"]]
    assert await metadata_store.file_blocks(one.ino) == []


async def test_a_changed_block_past_the_end_is_refused(metadata_store: MetadataStore) -> None:
    one = blocks_file("/short")
    await metadata_store.insert(one)
    with pytest.raises(ValueError, match="past the new end"):
        await metadata_store.replace_blocks(one, [FileBlock(3, H["e"], 4)], 3)


async def test_sharing_a_block_list_adds_one_reference_per_entry(metadata_store: MetadataStore) -> None:
    source, copy = blocks_file("/src", size=12), blocks_file("/copy", size=12)
    await metadata_store.insert(source)
    await metadata_store.insert(copy)
    await reserve(metadata_store, H["a"], H["b"])
    await metadata_store.replace_blocks(
        source, [FileBlock(0, H["a"], 4), FileBlock(1, H["b"], 4), FileBlock(2, H["a"], 4)], 3)
    async with metadata_store.transaction() as txn:
        assert await txn.share_blocks(source, copy) == 3
    assert await metadata_store.file_blocks(copy.ino) == await metadata_store.file_blocks(source.ino)
    await metadata_store.release_blocks(source)
    assert await claimable(metadata_store) == []  # the copy holds every block still
    await metadata_store.replace_blocks(copy, [FileBlock(0, H["b"], 4)], 3)  # "a" keeps the reference at 2
    assert await claimable(metadata_store) == []
    await metadata_store.release_blocks(copy)
    assert await claimable(metadata_store) == [H["a"], H["b"]]


async def test_block_lists_shared_end_to_end_count_each_reference_once(metadata_store: MetadataStore) -> None:
    first, second = blocks_file("/p1", size=8), blocks_file("/p2", size=5)
    joined = blocks_file("/joined", size=13)
    for inode in (first, second, joined):
        await metadata_store.insert(inode)
    await reserve(metadata_store, H["a"], H["b"], H["c"])
    await metadata_store.replace_blocks(first, [FileBlock(0, H["a"], 4), FileBlock(1, H["b"], 4)], 2)
    await metadata_store.replace_blocks(second, [FileBlock(0, H["a"], 4), FileBlock(1, H["c"], 1)], 2)
    async with metadata_store.transaction() as txn:
        assert await txn.share_blocks(first, joined, at=0) == 2
        assert await txn.share_blocks(second, joined, at=2) == 2  # "a" again: counted for this range only
    assert await metadata_store.file_blocks(joined.ino) == [
        FileBlock(0, H["a"], 4), FileBlock(1, H["b"], 4), FileBlock(2, H["a"], 4), FileBlock(3, H["c"], 1)]
    await metadata_store.release_blocks(first)
    await metadata_store.release_blocks(second)
    assert await claimable(metadata_store) == []  # the joined file holds every block
    await metadata_store.release_blocks(joined)
    assert await claimable(metadata_store) == [H["a"], H["b"], H["c"]]  # no reference left over
    with pytest.raises(ValueError, match="non-negative"):
        async with metadata_store.transaction() as txn:
            await txn.share_blocks(first, joined, at=-1)


async def test_sharing_blocks_without_live_rows_fails_and_commits_nothing(metadata_store: MetadataStore) -> None:
    source = blocks_file("/src", size=4)
    await metadata_store.insert(source)
    await reserve(metadata_store, H["c"])
    await metadata_store.replace_blocks(source, [FileBlock(0, H["c"], 4)], 1)
    elsewhere = source.evolve(instance_id="node-b")  # the same list read as another node's: no block rows there
    copy = blocks_file("/copy", size=4, instance_id="node-b")
    with pytest.raises(BlockNotReserved):
        async with metadata_store.transaction() as txn:
            await txn.insert(copy)
            await txn.share_blocks(elsewhere, copy)
    assert await metadata_store.get("/copy") is None
    assert await metadata_store.file_blocks(copy.ino) == []
    with pytest.raises(ValueError, match="same backend"):
        async with metadata_store.transaction() as txn:
            await txn.share_blocks(source, copy)


async def test_a_blob_is_referenced_while_any_file_names_it(metadata_store: MetadataStore) -> None:
    blob = "0123456789abcdef" * 2
    one = Inode(path="/one", type=InodeType.FILE, size=3, backend="localfs", blob_id=blob, instance_id="node-a")
    await metadata_store.insert(one)
    await metadata_store.insert(one.evolve(path="/two", ino=one.ino + 1))
    assert await metadata_store.blob_referenced("localfs", blob)
    await metadata_store.delete("/one")
    assert await metadata_store.blob_referenced("localfs", blob)
    assert not await metadata_store.blob_referenced("s3", blob)
    await metadata_store.delete("/two")
    assert not await metadata_store.blob_referenced("localfs", blob)


async def test_block_replicas_list_their_nodes_and_pages_find_referenced_blocks_per_node(
    metadata_store: MetadataStore,
) -> None:
    one = blocks_file("/one")
    await metadata_store.insert(one)
    await reserve(metadata_store, H["a"], H["b"], H["c"])
    for block_hash, nodes in ((H["a"], ("node-a", "node-b")), (H["b"], ("node-a", "node-c")),
                              (H["c"], ("node-a", "node-b"))):
        for node in nodes:
            await metadata_store.add_block_replica("localfs", "node-a", block_hash, node)
    await metadata_store.add_block_replica("localfs", "node-a", H["a"], "node-b")  # idempotent
    assert await metadata_store.block_replicas("localfs", "node-a", H["a"]) == ["node-a", "node-b"]
    assert await metadata_store.block_replicas("localfs", "node-z", H["a"]) == []
    # Only referenced blocks need repair: c is reserved but no file names it.
    await metadata_store.replace_blocks(one, [FileBlock(0, H["a"], 4), FileBlock(1, H["b"], 4)], 2)
    assert await metadata_store.replicas_on_node("localfs", "node-b", ("", ""), 10) == [("node-a", H["a"])]
    first = await metadata_store.replicas_on_node("localfs", "node-a", ("", ""), 1)
    assert first == [("node-a", H["a"])]
    assert await metadata_store.replicas_on_node("localfs", "node-a", first[-1], 10) == [("node-a", H["b"])]
    assert await metadata_store.drop_block_replica("localfs", "node-a", H["a"], "node-b")
    assert not await metadata_store.drop_block_replica("localfs", "node-a", H["a"], "node-b")
    assert await metadata_store.block_replicas("localfs", "node-a", H["a"]) == ["node-a"]


async def test_a_leaving_node_is_listed_and_what_still_relies_on_it_is_counted(metadata_store: MetadataStore) -> None:
    now = utcnow()
    for node in ("node-a", "node-b", "node-c"):
        await metadata_store.upsert_node(NodeRecord(instance_id=node, url=f"http://{node}", version="1",
                                                    capacity_bytes=1, free_bytes=1, started_at=now,
                                                    last_heartbeat=now))
    one = blocks_file("/one")
    await metadata_store.insert(one)
    await reserve(metadata_store, H["a"], H["b"], H["c"], H["d"])
    await metadata_store.replace_blocks(one, [FileBlock(0, H["a"], 4), FileBlock(1, H["b"], 4),
                                              FileBlock(2, H["c"], 4)], 3)  # d is not referenced
    for block_hash, nodes in ((H["a"], ("node-a", "node-b")), (H["b"], ("node-a", "node-c")),
                              (H["d"], ("node-a",))):  # c has no row: written before replication
        for node in nodes:
            await metadata_store.add_block_replica("localfs", "node-a", block_hash, node)

    assert await metadata_store.leaving_nodes() == []
    assert await metadata_store.mark_leaving("node-a", now)
    assert not await metadata_store.mark_leaving("node-a", now)  # again: no-op
    assert await metadata_store.leaving_nodes() == ["node-a"]
    live = now - timedelta(seconds=10)
    # Two copies wanted: a and b have one on a node that stays, c none (its only copy is node-a's).
    assert await metadata_store.blocks_relying_on("localfs", "node-a", live, 2) == 3
    assert await metadata_store.blocks_relying_on("localfs", "node-a", live, 1) == 1
    # node-a's copy of a does not count, so a relies on node-b too.
    assert await metadata_store.blocks_relying_on("localfs", "node-b", live, 2) == 1
    assert await metadata_store.blocks_relying_on("localfs", "node-b", live, 1) == 0
    # Copies on nodes whose heartbeat is older than ``live_since`` do not count.
    assert await metadata_store.blocks_relying_on("localfs", "node-a", now + timedelta(seconds=1), 1) == 3
    assert await metadata_store.unrecorded_blocks("localfs", "node-a", 10) == [H["c"]]
    await metadata_store.add_block_replica("localfs", "node-a", H["c"], "node-b")
    assert await metadata_store.unrecorded_blocks("localfs", "node-a", 10) == []
    assert await metadata_store.blocks_relying_on("localfs", "node-a", live, 1) == 0

    blob = "0123456789abcdef" * 2
    for i, (path, node) in enumerate((("/x1", "node-a"), ("/x2", "node-a"), ("/x3", "node-b"))):
        await metadata_store.insert(Inode(path=path, type=InodeType.FILE, size=3, backend="localfs", blob_id=blob,
                                          instance_id=node, ino=path_ino(path) + i))
    assert await metadata_store.count_node_blob_files("node-a") == 2  # /one is in blocks
    first = await metadata_store.node_blob_files("node-a", None, 1)
    assert [(path, backend) for path, backend, _ in first] == [("/x1", "localfs")]
    rest = await metadata_store.node_blob_files("node-a", first[-1][2], 10)
    assert [(path, backend) for path, backend, _ in rest] == [("/x2", "localfs")]

    assert await metadata_store.unmark_leaving("node-a")
    assert not await metadata_store.unmark_leaving("node-a")
    assert await metadata_store.leaving_nodes() == []


async def test_a_lost_node_stays_leaving_and_its_rows_are_counted(metadata_store: MetadataStore) -> None:
    since = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    await metadata_store.add_block_replica("localfs", "node-a", H["a"], "node-b")
    await metadata_store.add_block_replica("localfs", "node-b", H["b"], "node-b")
    await metadata_store.add_block_replica("localfs", "node-a", H["a"], "node-a")
    assert await metadata_store.count_node_replicas("localfs", "node-b") == 2
    assert await metadata_store.count_node_replicas("s3", "node-b") == 0
    assert await metadata_store.lost_nodes() == {}
    # A node being drained, then lost: it stays leaving, now lost; again: no-op (its time stays).
    assert await metadata_store.mark_leaving("node-c", since - timedelta(hours=1))
    assert await metadata_store.mark_lost("node-c", since)
    assert await metadata_store.mark_lost("node-b", since)  # lost without a drain: leaving too
    assert not await metadata_store.mark_lost("node-b", since + timedelta(hours=1))
    assert await metadata_store.lost_nodes() == {"node-b": since, "node-c": since}
    assert await metadata_store.leaving_nodes() == ["node-b", "node-c"]
    # A cancelled drain does not bring a lost node back.
    assert not await metadata_store.unmark_leaving("node-b")
    assert await metadata_store.leaving_nodes() == ["node-b", "node-c"]


async def test_blob_files_are_paged_and_counted_per_backend_and_owner(metadata_store: MetadataStore) -> None:
    blob = "0123456789abcdef" * 2
    rows = (("/b1", "localfs", "node-a", 3), ("/b2", "localfs", "node-a", 5), ("/b3", "localfs", "node-b", 7),
            ("/s1", "s3", None, 11))
    for i, (path, backend, node, size) in enumerate(rows):
        await metadata_store.insert(Inode(path=path, type=InodeType.FILE, size=size, backend=backend, blob_id=blob,
                                          instance_id=node, ino=path_ino(path) + i))
    # A second name of /b2 (a hard link: the same inode) is listed but counted once; a file in blocks is neither.
    b2 = await metadata_store.get("/b2")
    assert b2 is not None
    await metadata_store.insert(b2.evolve(path="/b2-link", nlink=2))
    await metadata_store.insert(Inode(path="/k", type=InodeType.FILE, size=9, backend="localfs",
                                      blob_id="k" + "0" * 31, instance_id="node-a", layout=Layout.BLOCKS))
    first = await metadata_store.blob_files("localfs", "node-a", None, 2)
    assert [(path, size) for path, size, _ in first] == [("/b1", 3), ("/b2", 5)]
    rest = await metadata_store.blob_files("localfs", "node-a", first[-1][2], 10)
    assert [(path, size) for path, size, _ in rest] == [("/b2-link", 5)]
    assert [(path, size) for path, size, _ in await metadata_store.blob_files("s3", None, None, 10)] == [("/s1", 11)]
    assert await metadata_store.blob_files("localfs", None, None, 10) == []
    assert await metadata_store.count_blob_files("localfs", "node-a") == (2, 8)
    assert await metadata_store.count_blob_files("localfs", "node-b") == (1, 7)
    assert await metadata_store.count_blob_files("s3", None) == (1, 11)
    assert await metadata_store.count_blob_files("s3", "node-a") == (0, 0)
