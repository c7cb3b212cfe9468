"""The block grid of a file: block ``i`` holds bytes ``[i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)``.

Pure arithmetic, no I/O. A fixed grid (rather than content-defined boundaries) makes a partial write touch
exactly the blocks its byte range overlaps, so an append or a 4 KiB write rewrites one block, never the file.
"""

from __future__ import annotations

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
