"""Extended attributes in the metadata stores (schema version 14), on SQLite and PostgreSQL: they belong to the
inode number, so every name of a hard-linked file shares them; a rename keeps them; they go with the last name."""

from __future__ import annotations

from callfs.metadata.base import MetadataStore
from callfs.models import Inode, InodeType


def _file(path: str, ino: int, nlink: int = 1) -> Inode:
    return Inode(path=path, type=InodeType.FILE, size=0, ino=ino, nlink=nlink)


async def test_values_are_bytes_by_name_in_name_order(metadata_store: MetadataStore) -> None:
    assert await metadata_store.insert(_file("/f", 11))
    async with metadata_store.transaction() as txn:
        await txn.put_xattr(11, "user.b", b"\x00\xff binary")
        await txn.put_xattr(11, "user.a", b"")
    assert await metadata_store.xattrs(11) == {"user.a": b"", "user.b": b"\x00\xff binary"}
    assert list(await metadata_store.xattrs(11)) == ["user.a", "user.b"]
    assert await metadata_store.xattr_sizes(11) == {"user.a": 0, "user.b": 9}
    await metadata_store.put_xattr(11, "user.a", b"replaced")
    assert await metadata_store.get_xattr(11, "user.a") == b"replaced"
    assert await metadata_store.get_xattr(11, "user.none") is None
    assert await metadata_store.delete_xattr(11, "user.a")
    assert not await metadata_store.delete_xattr(11, "user.a")
    assert await metadata_store.xattrs(11) == {"user.b": b"\x00\xff binary"}


async def test_rename_and_unlink_of_one_name_keep_them_the_last_name_takes_them(
    metadata_store: MetadataStore,
) -> None:
    async with metadata_store.transaction() as txn:
        assert await txn.insert(Inode(path="/d", type=InodeType.DIRECTORY, mode=0o755))
        assert await txn.insert(_file("/d/one", 21, nlink=2))
        assert await txn.insert(_file("/two", 21, nlink=2))
        await txn.put_xattr(21, "user.kept", b"v")
    async with metadata_store.transaction() as txn:
        assert await txn.rename_subtree("/two", "/renamed") == 1
    assert await metadata_store.xattrs(21) == {"user.kept": b"v"}
    # A recursive delete of the directory holding one name: the other name keeps the attributes.
    gone = await metadata_store.delete_subtree("/d")
    assert [(i.path, i.nlink) for i in gone] == [("/d", 0), ("/d/one", 1)]
    assert await metadata_store.xattrs(21) == {"user.kept": b"v"}
    # The last name goes: so do they, and a later inode of the same number starts without any.
    await metadata_store.delete("/renamed")
    assert await metadata_store.xattrs(21) == {}
    assert await metadata_store.insert(_file("/again", 21))
    assert await metadata_store.xattrs(21) == {}


async def test_a_subtree_delete_takes_the_attributes_of_every_inode_in_it(metadata_store: MetadataStore) -> None:
    async with metadata_store.transaction() as txn:
        assert await txn.insert(Inode(path="/t", type=InodeType.DIRECTORY, mode=0o755, ino=30))
        for n in range(1, 4):
            assert await txn.insert(_file(f"/t/f{n}", 30 + n))
            await txn.put_xattr(30 + n, "user.n", str(n).encode())
        await txn.put_xattr(30, "user.dir", b"d")
        assert await txn.insert(_file("/t-sibling", 40))
        await txn.put_xattr(40, "user.n", b"kept")
    await metadata_store.delete_subtree("/t")
    for ino in range(30, 34):
        assert await metadata_store.xattrs(ino) == {}
    assert await metadata_store.xattrs(40) == {"user.n": b"kept"}


async def test_copy_gives_a_new_inode_the_same_attributes(metadata_store: MetadataStore) -> None:
    assert await metadata_store.insert(_file("/src", 51))
    await metadata_store.put_xattr(51, "user.a", b"1")
    await metadata_store.put_xattr(51, "user.b", b"2")
    async with metadata_store.transaction() as txn:
        assert await txn.insert(_file("/dst", 52))
        await txn.copy_xattrs(51, 52)
    await metadata_store.put_xattr(52, "user.a", b"changed")
    assert await metadata_store.xattrs(51) == {"user.a": b"1", "user.b": b"2"}
    assert await metadata_store.xattrs(52) == {"user.a": b"changed", "user.b": b"2"}
