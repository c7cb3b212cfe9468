"""The block grid of a file: block ``i`` holds bytes ``[i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)``.

Pure arithmetic, no I/O. A fixed grid (rather than content-defined boundaries) makes a partial write touch
exactly the blocks its byte range overlaps, so an append or a 4 KiB write rewrites one block, never the file.
"""

from __future__ import annotations

from dataclasses import dataclass

BLOCK_SIZE = 4 << 20
"""Bytes of plaintext per block (4 MiB); the last block of a file may be shorter."""


def block_count(size: int, block_size: int = BLOCK_SIZE) -> int:
    """Blocks a file of ``size`` bytes has (0 for an empty file). Raises ``ValueError`` for a negative size."""
    if size < 0:
        raise ValueError("size must be >= 0")
    return -(-size // block_size)


def block_length(index: int, size: int, block_size: int = BLOCK_SIZE) -> int:
    """Bytes of block ``index`` in a file of ``size`` bytes (0 when the block lies past the end)."""
    return max(0, min(block_size, size - index * block_size))


def touched_blocks(offset: int, length: int, block_size: int = BLOCK_SIZE) -> range:
    """Indexes of the blocks overlapping bytes ``[offset, offset + length)`` (empty for ``length == 0``).

    Raises ``ValueError`` for a negative offset or length.
    """
    if offset < 0 or length < 0:
        raise ValueError("offset and length must be >= 0")
    if length == 0:
        return range(0)
    return range(offset // block_size, (offset + length - 1) // block_size + 1)


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """What a change of a file's bytes does to its blocks.

    The file goes from ``old_size`` to ``new_size`` bytes; bytes ``[offset, offset + length)`` come from the
    request body (``length`` 0 for a truncate or extend). ``rewrite`` lists, ascending, the indexes of the
    blocks to write anew; every other block below ``count`` (the new number of blocks) keeps its stored bytes,
    or stays a hole (zeros) when it lies wholly in a zero-filled gap. Blocks at ``count`` and above go.
    """

    old_size: int
    new_size: int
    offset: int
    length: int
    rewrite: tuple[int, ...]

    @property
    def count(self) -> int:
        """Blocks of the file after the change."""
        return block_count(self.new_size)

    def covers(self, index: int) -> bool:
        """True when the body overwrites the whole of block ``index`` (its old bytes are not needed)."""
        start = index * BLOCK_SIZE
        end = start + block_length(index, self.new_size)
        return self.length > 0 and self.offset <= start and end <= self.offset + self.length


def plan_write(old_size: int, offset: int, length: int, *, convert: bool = False) -> BlockPlan:
    """The plan of writing ``length`` bytes at ``offset`` into a file of ``old_size`` bytes (RFC 9110 §14.5
    partial PUT). Past the end the file grows; a gap between the old end and ``offset`` reads as zeros (the
    block holding the old end is rewritten zero-padded, whole blocks in the gap stay holes). ``convert``
    rewrites every old block too (a file stored as one blob moving to blocks).

    Raises ``ValueError`` for a negative offset or length.
    """
    if offset < 0 or length < 0:
        raise ValueError("offset and length must be >= 0")
    new_size = max(old_size, offset + length)
    rewrite = set(touched_blocks(offset, length))
    if offset > old_size and old_size % BLOCK_SIZE:
        rewrite.add(old_size // BLOCK_SIZE)
    if convert:
        rewrite.update(range(block_count(old_size)))
    return BlockPlan(old_size, new_size, offset, length, tuple(sorted(rewrite)))


def plan_resize(old_size: int, new_size: int, *, convert: bool = False) -> BlockPlan:
    """The plan of truncating or extending a file of ``old_size`` bytes to ``new_size`` (POSIX
    ``ftruncate``): the block cut by the new end is rewritten shorter, the block holding the old end is
    rewritten zero-padded when the file grows, whole new blocks are holes. ``convert`` as in :func:`plan_write`.

    Raises ``ValueError`` for a negative size.
    """
    if new_size < 0:
        raise ValueError("size must be >= 0")
    rewrite: set[int] = set()
    if new_size < old_size and new_size % BLOCK_SIZE:
        rewrite.add(new_size // BLOCK_SIZE)
    if new_size > old_size and old_size % BLOCK_SIZE:
        rewrite.add(old_size // BLOCK_SIZE)
    if convert:
        rewrite.update(range(block_count(min(old_size, new_size))))
    return BlockPlan(old_size, new_size, new_size, 0, tuple(sorted(rewrite)))
