"""Copying one volume's tree into another on the same cluster (clones and snapshots).

:func:`share_tree` asks the server for a copy-on-write copy (``POST /v1/copies``): one metadata transaction that
shares the source's blocks and blobs, whatever the volume's size; it is all or nothing. It falls back to
:func:`copy_tree` — streaming each file (``iter_read`` → ``upload``, 1 MiB pieces, bounded memory) and recreating
directories, modes and owners — when the server has no copies (an older node), and to finish a streamed copy
cut short earlier (the destination is not empty then). Every step of a streamed copy overwrites, so one cut
short by a crash is finished by running it again (the volume's record stays ``complete: false`` until then).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from callfs import errors as fs_errors
from callfs.client import CallFSClient, FileInfo

__all__ = ["copy_tree", "relative_to", "share_tree"]

log = logging.getLogger(__name__)


def relative_to(path: str, root: str) -> str:
    """``path`` below ``root`` as a relative path (``/volumes/a/x/y``, ``/volumes/a`` → ``x/y``).

    Raises:
        ValueError: ``path`` is not below ``root``.
    """
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise ValueError(f"{path} is not below {root}")
    return path[len(prefix):]


async def share_tree(
    fs: CallFSClient, source: str, destination: str, *, owner: str | None = None
) -> tuple[int, int]:
    """Copy everything below directory ``source`` into the existing directory ``destination``, copy-on-write
    on the server; ``(files, bytes)`` copied. Falls back to :func:`copy_tree` (see the module docstring).
    ``owner`` (a root key only): every copy belongs to that user (a clone belongs to its volume's user);
    ``None`` keeps the owners.

    Raises:
        NotFound: ``source`` vanished.  QuotaExceeded: the destination's quota is too small (nothing copied).
        CallFSUnavailable: the cluster went away (run again to finish).
    """
    try:
        copied = await fs.copy(source, destination, recursive=True, into=True, owner=owner)
    except (fs_errors.NotFound, fs_errors.MethodNotAllowed) as exc:
        if isinstance(exc, fs_errors.NotFound) and not await _copies_unsupported(fs, source):
            raise
        log.info("the server has no copy-on-write copies; streaming %s to %s", source, destination)
        return await copy_tree(fs, source, destination, owner=owner)
    except fs_errors.DirectoryNotEmpty:
        log.info("%s holds part of an earlier copy; finishing it by streaming %s", destination, source)
        return await copy_tree(fs, source, destination, owner=owner)
    log.info("shared %s into %s: %d files, %d bytes", source, destination, copied.files, copied.bytes)
    return copied.files, copied.bytes


async def _copies_unsupported(fs: CallFSClient, source: str) -> bool:
    """After a 404 from ``POST /v1/copies``: true when it was the route that is missing (the source exists)."""
    return await fs.exists(source)


async def copy_tree(
    fs: CallFSClient, source: str, destination: str, *, owner: str | None = None
) -> tuple[int, int]:
    """Copy everything below directory ``source`` into existing directory ``destination``.

    Directories come before their contents (the listing is ordered by path depth first here), files are streamed;
    modes and owners are copied, or every entry is given to ``owner`` (the caller's key must be root's to give
    entries to anyone). Returns ``(files, bytes)`` copied.

    Raises:
        NotFound: ``source`` vanished.  QuotaExceeded: the destination's quota is too small.
        CallFSUnavailable: the cluster went away mid-copy (run again to finish).
    """
    items = await fs.list_dir(source, recursive=True, max_depth=1000)
    items.sort(key=lambda i: (i.path.count("/"), i.path))
    files = copied = 0
    for item in items:
        target = f"{destination}/{relative_to(item.path, source)}"
        if item.is_dir:
            await fs.mkdir(target)
        else:
            await fs.upload(target, _stream(fs, item), size=item.size)
            files += 1
            copied += item.size
        await _copy_attributes(fs, item, target, owner or item.owner)
    log.info("copied %s to %s: %d files, %d bytes", source, destination, files, copied)
    return files, copied


async def _stream(fs: CallFSClient, item: FileInfo) -> AsyncIterator[bytes]:
    async for chunk in fs.iter_read(item.path):
        yield chunk


async def _copy_attributes(fs: CallFSClient, item: FileInfo, target: str, owner: str) -> None:
    info = await fs.stat(target)
    if info.mode != item.mode:
        await fs.chmod(target, item.mode)
    if info.owner != owner:
        await fs.chown(target, owner)
