"""Pure helpers to turn raw measurements into the printed figures: sizes, rates, percentiles, tables."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

MIB = 1024 * 1024
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB, "T": 1024 * 1024 * MIB}


def parse_size(text: str) -> int:
    """Bytes of a size such as ``4096``, ``64K``, ``256M``, ``1G``, ``1GiB`` (binary units).

    Raises ``ValueError`` for anything else or a size below one byte.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 4096, 256M, 1G)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size < 1:
        raise ValueError(f"size must be at least one byte: {text!r}")
    return size


def parse_int_list(text: str) -> list[int]:
    """``"16,64"`` → ``[16, 64]``; each value must be >= 1 (``ValueError`` otherwise)."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise ValueError(f"need positive integers separated by commas: {text!r}")
    return values


def mib_per_second(nbytes: int, seconds: float) -> float:
    """Throughput in MiB/s (``inf`` when ``seconds`` is 0)."""
    return nbytes / MIB / seconds if seconds > 0 else math.inf


def ratio(value: float, reference: float) -> float:
    """``value / reference`` (``nan`` when the reference is 0)."""
    return value / reference if reference else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method; ``nan`` for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def human_bytes(nbytes: float) -> str:
    """``1536`` → ``"1.5 KiB"``; binary units up to GiB."""
    for unit in ("B", "KiB", "MiB"):
        if abs(nbytes) < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} GiB"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (pipes), columns padded to their widest cell, so it reads in a terminal too."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(headers), separator, *(line(row) for row in rows)])
