"""Copying one volume's tree into another on the same cluster (``CreateVolume`` from a volume source).

The REST API has no server-side copy, so the controller streams each file (``iter_read`` → ``upload``, 1 MiB
pieces, bounded memory) and recreates directories, modes and owners. Every step overwrites, so a copy cut short
by a crash is finished by running it again (the volume's record stays ``complete: false`` until then).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from callfs.client import CallFSClient, FileInfo

__all__ = ["copy_tree", "relative_to"]

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


async def copy_tree(fs: CallFSClient, source: str, destination: str) -> tuple[int, int]:
    """Copy everything below directory ``source`` into existing directory ``destination``.

    Directories come before their contents (the listing is ordered by path depth first here), files are streamed;
    modes and owners are copied (the caller's key must be root's to give entries to their owners). Returns
    ``(files, bytes)`` copied.

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
        await _copy_attributes(fs, item, target)
    log.info("copied %s to %s: %d files, %d bytes", source, destination, files, copied)
    return files, copied


async def _stream(fs: CallFSClient, item: FileInfo) -> AsyncIterator[bytes]:
    async for chunk in fs.iter_read(item.path):
        yield chunk


async def _copy_attributes(fs: CallFSClient, item: FileInfo, target: str) -> None:
    info = await fs.stat(target)
    if info.mode != item.mode:
        await fs.chmod(target, item.mode)
    if info.owner != item.owner:
        await fs.chown(target, item.owner)
