"""Path canonicalisation for the CallFS v1 API (docs/rest-api.md, "Paths").

Pure functions. The canonical path is the single key used for metadata, locks and permission checks:
a leading ``/``, no trailing slash, no empty, ``.`` or ``..`` segments; the root is ``/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from callfs.errors import BadRequest, PathTooLong

ROOT = "/"
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_PATH_DEPTH = 256
"""Most segments a path may have: a write creates missing parents in one transaction, so this bounds its cost."""

# SECURITY: C0 and C1 control characters (tab allowed), DEL, and Unicode BiDi overrides/isolates can disguise a path
# in logs and listings ("Trojan Source"); backslashes would be a second separator on some clients.
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\\\\\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class RequestPath:
    """A request path after canonicalisation.

    ``path`` is canonical; ``is_dir_hint`` is true when the raw path ended in ``/`` (or was the root),
    which the API reads as "the client means a directory".
    """

    path: str
    is_dir_hint: bool


def canonicalize(raw: str) -> RequestPath:
    """Canonicalise a raw (already percent-decoded) API path.

    ``""``, ``"."`` and ``"/"`` are the root. ``a/../b`` becomes ``/b``.

    Raises:
        BadRequest: forbidden characters, a path climbing above the root, a segment/path too long
            (255 / 4096 bytes, the POSIX ``NAME_MAX``/``PATH_MAX`` of Linux), or more than
            :data:`MAX_PATH_DEPTH` segments (after ``..`` is resolved).
    """
    match = _FORBIDDEN.search(raw)
    if match is not None:
        raise BadRequest(f"path contains a forbidden character U+{ord(match.group()):04X}")
    stripped = raw.lstrip("/")
    is_dir_hint = stripped == "" or stripped == "." or raw.endswith("/")
    parts: list[str] = []
    for segment in stripped.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                raise BadRequest("path climbs above the root")
            parts.pop()
            continue
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise BadRequest(f"path segment longer than {MAX_NAME_BYTES} bytes")
        parts.append(segment)
    if len(parts) > MAX_PATH_DEPTH:
        raise BadRequest(f"path has more than {MAX_PATH_DEPTH} segments")
    path = "/" + "/".join(parts)
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise PathTooLong(f"path longer than {MAX_PATH_BYTES} bytes")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest("path is not valid UTF-8") from exc
    return RequestPath(path=path, is_dir_hint=is_dir_hint or path == ROOT)


def parent_of(path: str) -> str | None:
    """The canonical parent of a canonical path; ``None`` for the root."""
    if path == ROOT:
        return None
    head = path.rsplit("/", 1)[0]
    return head or ROOT


def name_of(path: str) -> str:
    """The last segment of a canonical path; ``""`` for the root."""
    return path.rsplit("/", 1)[1] if path != ROOT else ""


def join(parent: str, name: str) -> str:
    """Join a canonical directory path and one segment."""
    return f"/{name}" if parent == ROOT else f"{parent}/{name}"


def depth_of(path: str) -> int:
    """Number of segments: 0 for the root, 1 for ``/a``, 2 for ``/a/b``."""
    return 0 if path == ROOT else path.count("/")


def ancestors(path: str) -> list[str]:
    """Canonical ancestors from the root down to the parent of ``path`` (empty for the root)."""
    out: list[str] = []
    parent = parent_of(path)
    while parent is not None:
        out.append(parent)
        parent = parent_of(parent)
    out.reverse()
    return out


def is_within(path: str, top: str) -> bool:
    """True when ``path`` is ``top`` or lies below it."""
    return path == top or top == ROOT or path.startswith(top + "/")


def validate_name(name: str) -> str:
    """Validate a single new name for an in-place rename.

    Raises:
        BadRequest: empty, ``.``/``..``, contains ``/`` or forbidden characters, or too long.
    """
    if not name or name in (".", "..") or "/" in name:
        raise BadRequest("name must be one non-empty path segment without '/'")
    return name_of(canonicalize(name).path)


def validate_target(target: str) -> str:
    """``target`` when it may be a symbolic link's target: stored as given and never resolved by the server
    (relative or absolute, ``.``/``..`` segments and repeated ``/`` kept), 1 to :data:`MAX_PATH_BYTES` - 1 bytes
    of UTF-8 (POSIX ``PATH_MAX`` with its NUL; symlink(2): ENAMETOOLONG beyond), without the characters no path
    may hold (control characters but tab, backslashes, BiDi overrides: see the security note above).

    Raises:
        BadRequest: empty, too long, or holding a forbidden character.
    """
    if not target:
        raise BadRequest("a symbolic link's target must not be empty")
    if len(target.encode("utf-8", "surrogatepass")) >= MAX_PATH_BYTES:
        raise BadRequest(f"a symbolic link's target is at most {MAX_PATH_BYTES - 1} bytes")
    if _FORBIDDEN.search(target) or any("\ud800" <= c <= "\udfff" for c in target):
        raise BadRequest("a symbolic link's target holds a control character, a backslash, a BiDi control or "
                         "an unpaired surrogate")
    return target
