"""The pure parts of blocks: the block grid and the stored form (codec, SHA-256 names, verification)."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callfs.blocks import codec
from callfs.blocks.layout import BLOCK_SIZE, block_count, block_length, touched_blocks


def test_block_count_rounds_up_and_an_empty_file_has_none() -> None:
    assert [block_count(n) for n in (0, 1, BLOCK_SIZE, BLOCK_SIZE + 1)] == [0, 1, 1, 2]
    with pytest.raises(ValueError):
        block_count(-1)


def test_the_last_block_is_short_and_blocks_past_the_end_are_empty() -> None:
    size = 2 * BLOCK_SIZE + 10
    assert [block_length(i, size) for i in range(4)] == [BLOCK_SIZE, BLOCK_SIZE, 10, 0]


def test_touched_blocks_are_exactly_those_a_range_overlaps() -> None:
    assert touched_blocks(0, 0) == range(0)
    assert touched_blocks(BLOCK_SIZE - 1, 1) == range(0, 1)
    assert touched_blocks(BLOCK_SIZE - 1, 2) == range(0, 2)
    assert touched_blocks(3 * BLOCK_SIZE, 4096) == range(3, 4)
    with pytest.raises(ValueError):
        touched_blocks(-1, 3)


@given(offset=st.integers(0, 10 * BLOCK_SIZE), length=st.integers(1, 3 * BLOCK_SIZE))
def test_touched_blocks_cover_the_range_and_nothing_more(offset: int, length: int) -> None:
    blocks = touched_blocks(offset, length)
    assert blocks[0] * BLOCK_SIZE <= offset < (blocks[0] + 1) * BLOCK_SIZE
    last = offset + length - 1
    assert blocks[-1] * BLOCK_SIZE <= last < (blocks[-1] + 1) * BLOCK_SIZE


def test_a_block_is_named_by_the_sha256_of_its_plaintext_whatever_its_codec() -> None:
    text = b"callfs " * 10_000
    compressed = codec.encode(text)
    raw = codec.encode(text, compress=False)
    assert compressed.hash == raw.hash == hashlib.sha256(text).hexdigest()
    assert compressed.codec == codec.ZSTD and len(compressed.stored) < len(text) // 10
    assert raw.codec == codec.RAW and raw.stored == b"\x00" + text
    assert codec.decode(compressed.stored, compressed.hash, max_size=BLOCK_SIZE) == text


def test_incompressible_data_is_stored_raw_at_one_byte_of_cost() -> None:
    noise = os.urandom(1 << 16)
    encoded = codec.encode(noise)
    assert encoded.codec == codec.RAW
    assert len(encoded.stored) == len(noise) + 1


def test_an_empty_block_round_trips() -> None:
    encoded = codec.encode(b"")
    assert codec.decode(encoded.stored, encoded.hash, max_size=BLOCK_SIZE) == b""


@pytest.mark.parametrize("compress", [True, False])
def test_a_flipped_byte_is_refused_not_returned(compress: bool) -> None:
    text = b"0123456789" * 5000
    encoded = codec.encode(text, compress=compress)
    for position in (1, len(encoded.stored) // 2, len(encoded.stored) - 1):
        damaged = bytearray(encoded.stored)
        damaged[position] ^= 0x01
        with pytest.raises(codec.CorruptBlock):
            codec.decode(bytes(damaged), encoded.hash, max_size=BLOCK_SIZE)


def test_an_unknown_codec_or_an_empty_object_is_corrupt() -> None:
    with pytest.raises(codec.CorruptBlock, match="unknown codec"):
        codec.decode(b"\x07abc", "0" * 64, max_size=BLOCK_SIZE)
    with pytest.raises(codec.CorruptBlock, match="empty"):
        codec.decode(b"", "0" * 64, max_size=BLOCK_SIZE)


def test_a_frame_inflating_past_the_block_size_is_refused() -> None:
    big = codec.encode(bytes(BLOCK_SIZE))
    with pytest.raises(codec.CorruptBlock):
        codec.decode(big.stored, big.hash, max_size=BLOCK_SIZE // 2)


def test_block_names_are_64_lowercase_hex_digits() -> None:
    assert codec.is_block_hash("ab" * 32)
    assert not codec.is_block_hash("AB" * 32)
    assert not codec.is_block_hash("ab" * 16)
