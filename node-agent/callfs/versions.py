"""Object versions (S3 bucket versioning) on top of the engine's copy-on-write sharing.

The current version of a key is the ordinary file at its path, which REST and mounts see; its version id is
an attribute of its content (:data:`VERSION_ATTRIBUTE`; absent: :data:`~callfs.models.NULL_VERSION`). Noncurrent
versions and delete markers are rows of the metadata store (:class:`~callfs.models.ObjectVersion`) that no
listing of the namespace shows. Keeping a version costs metadata, not bytes: the row names the file's blob (a
blob is freed only once no file and no version names it) or gets the file's block list with one more reference
on each block (as a copy does, see :mod:`callfs.copies`). Each kept version and delete marker counts against the
quotas governing its path as one inode and its size, as the file did; freeing the last reference frees the
bytes.

Rules from the Amazon S3 User Guide, "Retaining multiple versions of objects with S3 Versioning": a write to a
versioning-enabled bucket keeps the replaced object as a noncurrent version; a write to a versioning-suspended
bucket creates the ``null`` version, replacing a previous ``null`` version; deleting without a version id adds a
delete marker; deleting a version id removes that version for good, and when it was the current one the newest
remaining version becomes current.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from callfs import errors, paths
from callfs.engine import Engine, Keeper, Kept
from callfs.metadata.base import MetadataTxn
from callfs.models import NULL_VERSION, Inode, InodeType, ObjectVersion, new_ino, utcnow
from callfs.permissions import DEFAULT_FILE_MODE, WRITE, Caller, require, require_entry_change

VERSION_ATTRIBUTE = "x-amz-version-id"
"""The attribute of a file's content holding its version id (sent back as the S3 header of that name)."""
ENABLED = "Enabled"
SUSPENDED = "Suspended"
STATUSES = (ENABLED, SUSPENDED)
"""The versioning states a bucket can be put in (Amazon S3 API Reference, PutBucketVersioning)."""


def new_version_id() -> str:
    """A fresh version id: 32 lowercase hex digits (128 random bits; S3 version ids are opaque strings)."""
    return secrets.token_hex(16)


def is_version_id(text: str) -> bool:
    """True for a version id this server issues: :data:`~callfs.models.NULL_VERSION` or 32 lowercase hex
    digits."""
    return text == NULL_VERSION or (len(text) == 32 and all(c in "0123456789abcdef" for c in text))


def version_of(attributes: dict[str, str]) -> str:
    """The version id recorded in a file's content ``attributes`` (none recorded: ``null``)."""
    return attributes.get(VERSION_ATTRIBUTE, NULL_VERSION)


async def bucket_status(engine: Engine, bucket_path: str) -> str | None:
    """The versioning status of the bucket directory ``bucket_path``: ``Enabled``, ``Suspended`` or ``None``
    (never set)."""
    return await engine.store.get_versioning(bucket_path)


async def current_version_id(engine: Engine, inode: Inode) -> str:
    """The version id of the file ``inode`` (the current version of its key)."""
    return version_of(await engine.attributes(inode))


async def _drop(txn: MetadataTxn, path: str, version_id: str) -> Inode | None:
    """Forget the kept version ``version_id`` of ``path`` and let go of its block list; the file it named (its
    blob is the caller's to release), or ``None`` when there was none."""
    gone = await txn.delete_version(path, version_id)
    if gone is None:
        return None
    inode = gone.as_inode()
    await txn.release_blocks(inode)
    return inode


async def _keep(txn: MetadataTxn, current: Inode, version_id: str) -> None:
    """Store the file ``current`` as the noncurrent version ``version_id`` of its path, sharing its content: the
    row names the same blob, or content id with the attributes kept under it (the file gets a new one as it
    changes), and a file in blocks has its block list shared under a fresh inode number (as
    :meth:`Engine.copy` shares it). The inode version goes along, so the version keeps its entity tag. A
    ``version_id`` the path has a version with already is replaced by a fresh one."""
    if await txn.get_version(current.path, version_id) is not None:
        # The content's id is taken at this path already (a REST copy or move brought content written at
        # another key, or there once): the version kept gets an id of its own.
        version_id = new_version_id()
    version = ObjectVersion(
        path=current.path, version_id=version_id, seq=await txn.next_version_seq(current.path),
        delete_marker=False, size=current.size, mode=current.mode, owner=current.owner, group=current.group,
        mtime=current.mtime, version=current.version, backend=current.backend, blob_id=current.blob_id,
        instance_id=current.instance_id, ino=new_ino(), layout=current.layout,
    )
    await txn.insert_version(version)
    await txn.share_blocks(current, version.as_inode())


def keeper(path: str, status: str, *, owner: str, marker: str | None = None) -> Keeper:
    """The :data:`~callfs.engine.Keeper` of a write (``marker`` ``None``) or a delete (``marker``: the version id
    of the delete marker to add) of the key at ``path`` in a bucket whose versioning is ``status``.

    The file being replaced or deleted is kept as a noncurrent version under its own version id, except a
    ``null`` one replaced by another ``null`` version (``Suspended``). A ``null`` version kept before is dropped
    whenever a new ``null`` version comes in (a suspended write or delete, or the current ``null`` version being
    kept again). A delete marker belongs to ``owner``. ``Kept`` counts one inode and the size per version kept,
    less those dropped.
    """

    async def keep(txn: MetadataTxn, current: Inode | None) -> Kept:
        bytes_, inodes, released = 0, 0, []
        current_id = None
        if current is not None and not current.is_dir:
            current_id = version_of(await txn.get_attributes(current.blob_id)) if current.blob_id else NULL_VERSION
        incoming_null = status == SUSPENDED
        if incoming_null or current_id == NULL_VERSION:
            dropped = await _drop(txn, path, NULL_VERSION)
            if dropped is not None:
                bytes_, inodes = bytes_ - dropped.size, inodes - 1
                released.append(dropped)
        if current is not None and current_id is not None and not (incoming_null and current_id == NULL_VERSION):
            await _keep(txn, current, current_id)
            bytes_, inodes = bytes_ + current.size, inodes + 1
        if marker is not None:
            await txn.insert_version(ObjectVersion(
                path=path, version_id=marker, seq=await txn.next_version_seq(path), delete_marker=True, size=0,
                mode=DEFAULT_FILE_MODE, owner=owner, group=owner, mtime=utcnow(),
            ))
            inodes += 1
        return Kept(bytes_, inodes, tuple(released))

    return keep


async def folder_of(engine: Engine, caller: Caller, path: str) -> Inode:
    """The deepest existing directory on the way to ``path``, search permission checked on every directory on
    the way (POSIX path resolution). Raises ``PermissionDenied``, ``NotFound`` (no directory leads there)."""
    resolved = await engine._resolve(caller, path)
    directories = [a for a in resolved.ancestors if a.is_dir]
    if not directories:
        raise errors.NotFound(f"no directory leads to {path}")
    return directories[-1]


async def _free(engine: Engine, unnamed: Sequence[Inode]) -> None:
    for file in unnamed:
        await engine._free_bytes(file)


async def add_marker(engine: Engine, caller: Caller, path: str, status: str, version_id: str) -> None:
    """Add a delete marker ``version_id`` for the key at ``path`` where no file is (S3 adds one whether or not
    the key exists): the caller needs ``w`` on the directory the key is in (or its deepest existing folder).
    Under the file's path lock, in one transaction with the quota charge (one inode). Raises
    ``PermissionDenied``, ``QuotaExceeded``, ``NotFound``; a file that appeared meanwhile raises ``Conflict``."""
    directory = await folder_of(engine, caller, path)
    require(caller, directory, WRITE, "delete entries in")
    async with engine.hold_file(path), engine.store.transaction() as txn:
        if await txn.get(path) is not None:
            raise errors.Conflict(f"{path} was written meanwhile; retry")
        kept = await keeper(path, status, owner=caller.user, marker=version_id)(txn, None)
        unnamed = await engine._charge(txn, path, kept.bytes, kept.inodes, kept.released)
    await _free(engine, unnamed)


async def _promote(engine: Engine, txn: MetadataTxn, caller: Caller, path: str) -> Inode | None:
    """When no file is at ``path`` and its newest kept version is not a delete marker, make that version the
    file again (its row goes; its content, usage and inode number move to the file; missing folders are
    created as the ``caller``). The file made, or ``None``."""
    if await txn.get(path) is not None:
        return None
    newest = await txn.versions_of(path)
    if not newest or newest[0].delete_marker:
        return None
    row = newest[0]
    await txn.delete_version(path, row.version_id)
    await engine._ensure_parents(txn, caller, path, create=True)
    inode = Inode(path=path, type=InodeType.FILE, size=row.size, mode=row.mode, owner=row.owner, group=row.group,
                  mtime=row.mtime, ctime=utcnow(), version=row.version, backend=row.backend, blob_id=row.blob_id,
                  instance_id=row.instance_id, ino=row.ino, layout=row.layout)
    if not await txn.insert(inode):
        raise errors.Conflict(f"{path} was written meanwhile; retry")
    return inode


async def promote(engine: Engine, caller: Caller, path: str) -> Inode | None:
    """:func:`_promote` in its own transaction, under the file's path lock (after the current version was
    deleted for good)."""
    async with engine.hold_file(path), engine.store.transaction() as txn:
        return await _promote(engine, txn, caller, path)


async def remove(engine: Engine, caller: Caller, path: str, version_id: str) -> ObjectVersion | None:
    """Delete the kept version (or delete marker) ``version_id`` of ``path`` for good: its row and usage go, its
    bytes are freed when nothing else names them, and when no file is at ``path`` the newest remaining version
    becomes current (:func:`_promote`). The caller needs ``w`` on the key's directory (sticky rule: the version's
    owner). Returns the version removed, ``None`` when there was none. Raises ``PermissionDenied``."""
    directory = await folder_of(engine, caller, path)
    async with engine.hold_file(path), engine.store.transaction() as txn:
        found = await txn.get_version(path, version_id, for_update=True)
        if found is None:
            return None
        require_entry_change(caller, directory, found.as_inode(), "delete")
        dropped = await _drop(txn, path, version_id)
        assert dropped is not None
        unnamed = await engine._charge(txn, path, -found.size, -1, [dropped])
        await _promote(engine, txn, caller, path)
    await _free(engine, unnamed)
    return found


async def versions_below(engine: Engine, directory: str) -> list[ObjectVersion]:
    """The kept versions and delete markers of every key below ``directory``, by path, newest first."""
    return await engine.store.versions_under(directory)


async def has_versions(engine: Engine, directory: str) -> bool:
    """True when a key below ``directory`` has a kept version or delete marker."""
    return await engine.store.has_versions_under(directory)


async def set_status(engine: Engine, bucket_path: str, status: str) -> None:
    """Record the versioning ``status`` (``Enabled`` or ``Suspended``) of the bucket directory ``bucket_path``.
    Raises ``BadRequest`` for another status, ``NotFound`` when the directory is gone."""
    if status not in STATUSES:
        raise errors.BadRequest(f"versioning status must be one of {', '.join(STATUSES)}")
    async with engine.store.transaction() as txn:
        found = await txn.lock([bucket_path], read=[paths.ROOT])
        if bucket_path not in found or not found[bucket_path].is_dir:
            raise errors.NotFound(f"{bucket_path} does not exist")
        await txn.put_versioning(bucket_path, status)
