"""The POSIX-style permission model (docs/rest-api.md, "Permissions"). Pure functions.

Reaching any entry needs ``x`` on every ancestor directory. Read a file or list a directory needs ``r``;
overwrite a file needs ``w`` on it; create, delete or rename an entry needs ``w`` on its parent directory plus
the sticky rule (in a sticky directory only the entry's owner, the directory's owner or a superuser may delete or
rename it). chmod and a change of group to one of the caller's groups: the owner or a superuser; giving an entry
to another user: a superuser only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from callfs.errors import BadRequest, PermissionDenied
from callfs.models import Inode

READ = 4
WRITE = 2
EXECUTE = 1
STICKY = 0o1000
SUPERUSERS = frozenset({"root", "internal-proxy"})

SETUID = 0o4000
SETGID = 0o2000

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}")
"""User and group names: 1-64 characters of ASCII letters, digits, ``_``, ``.``, ``@``, ``-``, not starting
with ``.``, ``@`` or ``-`` (no spaces, no control characters: names travel in HTTP headers and logs)."""

DEFAULT_FILE_MODE = 0o644
DEFAULT_DIR_MODE = 0o755
ROOT_DIR_MODE = 0o1777


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user of a request, the groups it belongs to, and the canonical path its key confines it
    to (``scope``: that path and everything below it; ``None``: the whole tree)."""

    user: str
    groups: frozenset[str] = field(default_factory=frozenset)
    scope: str | None = None

    @property
    def is_superuser(self) -> bool:
        # A confined key never has a superuser's powers, whatever user it names.
        return self.user in SUPERUSERS and self.scope is None


def in_scope(caller: Caller, path: str) -> bool:
    """True when canonical ``path`` is the caller's scope or lies below it (always, for an unconfined caller)."""
    scope = caller.scope
    if scope is None or scope == "/":
        return True
    return path == scope or path.startswith(scope + "/")


def require_in_scope(caller: Caller, path: str) -> None:
    """Confinement of scoped keys (run-time API keys, e.g. a CSI volume's): a path outside the scope is refused
    before anything about it is read, so that such a key learns nothing of the rest of the tree.

    Raises:
        PermissionDenied: ``path`` lies outside ``caller.scope``.
    """
    if not in_scope(caller, path):
        raise PermissionDenied(f"{caller.user} may only reach {caller.scope}, not {path}")


def allows(caller: Caller, inode: Inode, want: int) -> bool:
    """True when ``caller`` has all bits of ``want`` (``READ|WRITE|EXECUTE``) on ``inode``."""
    if caller.is_superuser:
        return True
    if caller.user == inode.owner:
        bits = (inode.mode >> 6) & 0o7
    elif inode.group in caller.groups:
        bits = (inode.mode >> 3) & 0o7
    else:
        bits = inode.mode & 0o7
    return bits & want == want


def require(caller: Caller, inode: Inode, want: int, action: str) -> None:
    """Raise :class:`PermissionDenied` ("cannot <action> <path>") unless :func:`allows`."""
    if not allows(caller, inode, want):
        raise PermissionDenied(f"{caller.user} may not {action} {inode.path}")


def require_search(caller: Caller, ancestors: Iterable[Inode]) -> None:
    """Check search (``x``) permission on every directory of ``ancestors`` (the entries above a path, root
    first), as POSIX path resolution does. Superusers pass. Resolution ends at the first file: nothing lies
    below a file, and the caller reports that (404, or 400 ``NOT_A_DIRECTORY`` when creating).

    Raises:
        PermissionDenied: ``x`` is missing on an ancestor (the message names it).
    """
    for ancestor in ancestors:
        if not ancestor.is_dir:
            return
        if not allows(caller, ancestor, EXECUTE):
            raise PermissionDenied(f"{caller.user} may not search {ancestor.path}")


def require_entry_change(caller: Caller, parent: Inode, entry: Inode | None, action: str) -> None:
    """Check creating, deleting or renaming ``entry`` (``None`` when it does not exist yet) in ``parent``.

    Needs ``w`` on the parent; in a sticky parent an existing entry may only be changed by its owner, the
    parent's owner or a superuser (POSIX ``S_ISVTX`` semantics).
    """
    require(caller, parent, WRITE, f"{action} entries in")
    if (
        entry is not None
        and parent.mode & STICKY
        and not caller.is_superuser
        and caller.user not in (entry.owner, parent.owner)
    ):
        raise PermissionDenied(f"{caller.user} may not {action} {entry.path}: sticky directory owned by others")


def require_owner(caller: Caller, inode: Inode, action: str) -> None:
    """chmod/chown rule: only the owner or a superuser."""
    if not caller.is_superuser and caller.user != inode.owner:
        raise PermissionDenied(f"only the owner of {inode.path} may {action} it")


def is_valid_name(name: str) -> bool:
    """True when ``name`` is a valid user or group name (:data:`NAME_PATTERN`)."""
    return NAME_PATTERN.fullmatch(name) is not None


def validate_name(name: str, what: str = "user name") -> str:
    """``name`` when it is a valid user or group name.

    Raises:
        BadRequest: empty, longer than 64 characters, or holding anything but ASCII letters, digits and
            ``_ . @ -`` (control characters such as CR, LF and NUL included).
    """
    if not is_valid_name(name):
        shown = repr(name) if len(name) <= 70 else repr(name[:70]) + "..."
        raise BadRequest(
            f"{what} {shown} is invalid: use 1-64 ASCII letters, digits, '_', '.', '@' or '-', "
            "not starting with '.', '@' or '-'"
        )
    return name


def require_chown(caller: Caller, inode: Inode, owner: str | None, group: str | None) -> None:
    """POSIX ``chown`` rules for changing ``inode`` to ``owner``/``group`` (``None``: unchanged).

    Superusers may set any owner and group. The owner may keep itself as owner and may set the group to its
    own name or to one of the groups it belongs to; it cannot give the entry away.

    Raises:
        PermissionDenied: not the owner, giving the entry away, or a group the caller is not a member of.
    """
    require_owner(caller, inode, "change the owner or group of")
    if caller.is_superuser:
        return
    if owner is not None and owner != inode.owner:
        raise PermissionDenied(f"only root may give {inode.path} to another user")
    if group is not None and group != inode.group and group != caller.user and group not in caller.groups:
        raise PermissionDenied(f"{caller.user} is not a member of group {group}")


MAX_ID = 2**32 - 2
"""Largest numeric user or group id (``(uid_t) -1`` means "unchanged" to ``chown``, so it is no id)."""


def chmod_mode(caller: Caller, inode: Inode, mode: int) -> int:
    """The mode ``chmod`` by ``caller`` leaves on ``inode`` when asked for ``mode`` (``0..0o7777``, setuid,
    setgid and sticky included).

    POSIX chmod(2): when the caller is not a superuser and the entry's group is neither its own name nor one of
    its groups, the setgid bit is cleared (groups are compared by name here; a mount's kernel applies the same
    rule to numeric ids before asking). Call after :func:`require_owner`.

    Raises:
        BadRequest: ``mode`` outside ``0..0o7777``.
    """
    if not 0 <= mode <= 0o7777:
        raise BadRequest(f"mode {mode:#o} is not in 0000..7777")
    if not caller.is_superuser and inode.group != caller.user and inode.group not in caller.groups:
        mode &= ~SETGID
    return mode


def inherited(parent: Inode, *, directory: bool, mode: int, group: str) -> dict[str, Any]:
    """The ``group``, ``gid`` and ``mode`` fields of a new entry in ``parent`` made by a caller whose own group is
    ``group`` and that asks for ``mode``: in a setgid directory the entry takes the directory's group (name and
    numeric id) and a new directory keeps the setgid bit (POSIX mkdir(2) and open(2), the BSD group rule Linux
    applies to setgid directories); elsewhere the caller's group, no numeric group, and ``mode`` as asked.
    """
    if not parent.mode & SETGID:
        return {"group": group, "gid": None, "mode": mode}
    return {"group": parent.group, "gid": parent.gid, "mode": mode | SETGID if directory else mode}


def check_id(value: object, what: str) -> int:
    """``value`` when it is a numeric user or group id: an integer in ``0..MAX_ID``.

    Raises:
        BadRequest: anything else (booleans, negative numbers, ``2**32 - 1`` and above).
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise BadRequest(f"{what} must be a whole number in 0..{MAX_ID}")
    return value


def require_set_times(caller: Caller, inode: Inode, *, explicit: bool) -> None:
    """POSIX utimensat(2) rules for changing the times of ``inode``: setting them to given values needs the owner
    or a superuser; setting them to the current time (``UTIME_NOW``) also lets anyone with write permission.

    Raises:
        PermissionDenied: neither.
    """
    if caller.is_superuser or caller.user == inode.owner:
        return
    if explicit or not allows(caller, inode, WRITE):
        raise PermissionDenied(f"{caller.user} may not set the times of {inode.path}")


def parse_mode(text: str) -> int:
    """Parse an octal mode string (``"0644"``, ``"1777"``, ``"755"``) to an int in ``0..0o7777``.

    Raises:
        ValueError: not 3-4 octal digits.
    """
    if not 3 <= len(text) <= 4 or any(c not in "01234567" for c in text):
        raise ValueError(f"mode {text!r} must be 3 or 4 octal digits, like 0644")
    return int(text, 8)


def format_mode(mode: int) -> str:
    """``0o644`` → ``"0644"``, ``0o1777`` → ``"1777"``."""
    return f"{mode & 0o7777:04o}"
