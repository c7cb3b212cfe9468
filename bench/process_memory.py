"""Resident memory of a running process, read from ``/proc/<pid>/status`` (Linux ``proc(5)``).

``VmRSS`` is the resident set now, ``VmHWM`` its peak ("high water mark"). Writing ``5`` to
``/proc/<pid>/clear_refs`` resets the peak to the current RSS (Linux >= 4.0), so a benchmark can measure the
peak of one phase.
"""

from __future__ import annotations

from pathlib import Path


def parse_status_kib(status_text: str, field: str) -> int:
    """Bytes of a ``<field>:  <n> kB`` line of a ``/proc/<pid>/status`` text; ``KeyError`` when absent."""
    for line in status_text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            number, _, unit = value.strip().partition(" ")
            if unit != "kB":
                raise ValueError(f"unexpected unit in {line!r}")
            return int(number) * 1024
    raise KeyError(field)


def resident_bytes(pid: int) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of ``pid`` in bytes. Raises ``OSError`` when the process is gone."""
    text = Path(f"/proc/{pid}/status").read_text()
    return parse_status_kib(text, "VmRSS"), parse_status_kib(text, "VmHWM")


def reset_peak(pid: int) -> bool:
    """Reset ``VmHWM`` of ``pid`` to its current RSS; ``False`` when the kernel or permissions refuse."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid`` (``/proc/<pid>/task/<tid>/children``, Linux >= 3.5); ``[]`` when gone."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return out
