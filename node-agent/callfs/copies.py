"""What a server-side copy creates: the new inodes of a copied file or subtree (pure; no I/O).

A copy shares the source's bytes instead of copying them (copy-on-write): a file stored in blocks gets the
source's block list with one more reference on each block (:meth:`~callfs.metadata.base.MetadataTxn.share_blocks`);
a file stored as one blob names the same immutable blob, which is deleted only once no file names it any more
(:meth:`~callfs.metadata.base.MetadataTxn.blob_referenced`). Either copy changes afterwards without touching the
other: a write stores a new blob or new blocks for the file written, and lets go of its old ones.

Each copy is a new inode; the engine gives it the extended attributes of its source in the same transaction
(``cp --preserve=xattr``: all of them in a superuser's copy, the ``user.*`` ones in anyone else's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from callfs import paths
from callfs.models import Inode, Layout, new_content_id, new_ino


@dataclass(frozen=True, slots=True)
class CopiedEntry:
    """One entry of a copy: the ``source`` inode and the ``copy`` to insert."""

    source: Inode
    copy: Inode


@dataclass(frozen=True, slots=True)
class CopyResult:
    """Outcome of a copy: the ``inode`` at the destination (the destination directory itself when copying
    into it), the ``files`` and ``directories`` created and the ``bytes`` they hold (file sizes)."""

    inode: Inode
    files: int
    directories: int
    bytes: int


def reachable(top: Inode, entries: Sequence[Inode]) -> list[Inode]:
    """The ``entries`` (descendants of ``top``, parents before children) whose every ancestor up to ``top`` is
    among them too: an entry whose directory vanished meanwhile (moved away or deleted) is left out."""
    kept = {top.path}
    out: list[Inode] = []
    for entry in sorted(entries, key=lambda e: (e.depth, e.path)):
        if entry.parent in kept:
            out.append(entry)
            if entry.is_dir:
                kept.add(entry.path)
    return out


def copy_entry(source: Inode, path: str, *, owner: str | None, now: datetime) -> Inode:
    """The copy of ``source`` at ``path``: a new inode number, version 1, the same type, size, mode, times
    (``ctime`` is ``now``) and bytes. ``owner`` (``None``: keep the source's owner and group) becomes owner and
    group, as ``cp`` gives a copy to the user who makes it unless that user may preserve ownership.

    A file in blocks gets a fresh content id (its blocks are shared through the block list); a blob file names
    the same blob.
    """
    copied = source.evolve(
        path=path, ino=new_ino(), version=1, ctime=now, nlink=1,
        owner=source.owner if owner is None else owner, group=source.group if owner is None else owner,
    )
    if source.layout is Layout.BLOCKS:
        copied = copied.evolve(blob_id=new_content_id())
    return copied


def plan_copy(
    top: Inode, entries: Sequence[Inode], destination: str, *, into: bool, owner: str | None, now: datetime
) -> list[CopiedEntry]:
    """The entries a copy of ``top`` (with its descendants ``entries``) to ``destination`` creates, parents
    first. ``into`` copies the descendants of the directory ``top`` into the existing directory ``destination``
    (which keeps its own attributes); otherwise ``top`` itself becomes ``destination``."""
    plan: list[CopiedEntry] = []
    if not into:
        plan.append(CopiedEntry(top, copy_entry(top, destination, owner=owner, now=now)))
    for entry in reachable(top, entries):
        relative = entry.path[len(top.path):].lstrip("/") if top.path != paths.ROOT else entry.path.lstrip("/")
        plan.append(CopiedEntry(entry, copy_entry(entry, paths.join(destination, relative), owner=owner, now=now)))
    return plan
