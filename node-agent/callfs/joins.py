"""What joining files end to end creates without copying bytes (pure; no I/O).

A file stored in blocks (:mod:`callfs.blocks.layout`) whose size is a whole number of blocks ends exactly on the
block grid, so the next file's block ``i`` falls on block ``first + i`` of the joined file: the joined file's
block list is the sources' block lists, each moved up by the number of blocks before it, and its blocks are the
sources' blocks with one more reference each (:meth:`~callfs.metadata.base.MetadataTxn.share_blocks`, as a
copy-on-write copy shares them, see :mod:`callfs.copies`). Any other join (a source ending inside a block, a
source stored as one blob, sources on different backends or nodes) needs its bytes copied: :func:`plan_join`
answers ``None`` then.

S3's CompleteMultipartUpload (Amazon S3 API Reference) joins an upload's parts this way when every part but the
last is a multiple of :data:`~callfs.blocks.layout.BLOCK_SIZE` (4 MiB) long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from callfs.blocks.layout import BLOCK_SIZE, block_count
from callfs.models import Inode, Layout


@dataclass(frozen=True, slots=True)
class JoinedSource:
    """One source of a join: the ``source`` file and the ``first`` block index its blocks take in the joined
    file (its block ``i`` becomes block ``first + i``)."""

    source: Inode
    first: int


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """A join that shares blocks: the ``sources`` in order with their first block index, the joined ``size``
    (bytes), and the ``backend`` and ``instance_id`` (``None``: a shared backend) the sources' blocks are
    stored on, which the joined file gets too."""

    sources: tuple[JoinedSource, ...]
    size: int
    backend: str
    instance_id: str | None


def plan_join(sources: Sequence[Inode]) -> JoinPlan | None:
    """The plan of joining the files ``sources`` end to end by sharing their blocks, or ``None`` when their
    bytes must be copied: no source, a directory, a source stored as one blob, sources on different backends or
    nodes, or a source but the last whose size (bytes) is not a multiple of
    :data:`~callfs.blocks.layout.BLOCK_SIZE`. An empty file adds nothing, whatever its layout: it is left out of
    the plan (and may lie anywhere)."""
    if any(s.is_dir for s in sources):
        return None
    stored = [s for s in sources if s.size]
    if not stored:
        return None
    first = stored[0]
    if first.backend is None:
        return None
    joined: list[JoinedSource] = []
    index, size = 0, 0
    for position, source in enumerate(stored):
        if source.layout is not Layout.BLOCKS:
            return None
        if (source.backend, source.instance_id) != (first.backend, first.instance_id):
            return None
        last = position == len(stored) - 1
        if not last and source.size % BLOCK_SIZE:
            return None
        joined.append(JoinedSource(source, index))
        index += block_count(source.size)
        size += source.size
    return JoinPlan(tuple(joined), size, first.backend, first.instance_id)
