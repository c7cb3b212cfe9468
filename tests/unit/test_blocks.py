"""The pure parts of blocks: the block grid and the stored form (codec, SHA-256 names, verification)."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callfs.blocks import codec
from callfs.blocks.layout import BLOCK_SIZE, block_count, block_length, plan_resize, plan_write, touched_blocks


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


# --- plans of partial writes ---------------------------------------------------------------------------------

B = BLOCK_SIZE


def test_a_write_inside_one_block_rewrites_only_that_block() -> None:
    plan = plan_write(3 * B, B + 10, 4096)
    assert (plan.rewrite, plan.new_size, plan.count) == ((1,), 3 * B, 3)
    assert not plan.covers(1)  # partial: its old bytes are read


def test_an_append_rewrites_the_short_last_block_and_adds_new_ones() -> None:
    plan = plan_write(B + 100, B + 100, B)
    assert plan.rewrite == (1, 2)
    assert plan.new_size == 2 * B + 100


def test_a_gap_rewrites_the_block_holding_the_old_end_and_leaves_holes() -> None:
    plan = plan_write(100, 5 * B + 1, 10)
    assert plan.rewrite == (0, 5)  # blocks 1..4 are holes (zeros)
    aligned = plan_write(B, 5 * B, 10)
    assert aligned.rewrite == (5,)


def test_a_whole_block_overwrite_needs_no_old_bytes() -> None:
    plan = plan_write(4 * B, B, 2 * B)
    assert plan.rewrite == (1, 2)
    assert plan.covers(1) and plan.covers(2)


def test_conversion_rewrites_every_old_block() -> None:
    assert plan_write(2 * B + 1, 0, 1, convert=True).rewrite == (0, 1, 2)
    assert plan_resize(2 * B + 1, B, convert=True).rewrite == (0,)


def test_truncate_cuts_one_block_and_extend_pads_one() -> None:
    assert plan_resize(3 * B, B + 5).rewrite == (1,)
    assert plan_resize(3 * B, B).rewrite == ()
    assert plan_resize(3 * B, B).count == 1
    assert plan_resize(B + 5, 4 * B).rewrite == (1,)
    assert plan_resize(B, 4 * B).rewrite == ()
    assert plan_resize(10, 0).count == 0


def test_plans_refuse_negative_numbers() -> None:
    with pytest.raises(ValueError):
        plan_write(0, -1, 1)
    with pytest.raises(ValueError):
        plan_resize(0, -1)


@given(old=st.integers(0, 6 * B), offset=st.integers(0, 6 * B), length=st.integers(1, 2 * B))
def test_every_block_whose_bytes_change_is_rewritten(old: int, offset: int, length: int) -> None:
    plan = plan_write(old, offset, length)
    changed = set(touched_blocks(offset, length))
    if offset > old:  # zeros appear from the old end on; whole gap blocks past the old end are holes
        changed |= {i for i in touched_blocks(old, offset - old) if i * B < old}
    assert changed <= set(plan.rewrite)
    assert all(i < plan.count for i in plan.rewrite)
