"""The POSIX-style permission model (docs/rest-api.md, "Permissions"). Pure functions.

Read a file or list a directory needs ``r``; overwrite a file needs ``w`` on it; create, delete or rename an
entry needs ``w`` on its parent directory plus the sticky rule (in a sticky directory only the entry's owner,
the directory's owner or a superuser may delete or rename it). chmod/chown: the owner or a superuser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callfs.errors import PermissionDenied
from callfs.models import Inode

READ = 4
WRITE = 2
EXECUTE = 1
STICKY = 0o1000
SUPERUSERS = frozenset({"root", "internal-proxy"})

DEFAULT_FILE_MODE = 0o644
DEFAULT_DIR_MODE = 0o755
ROOT_DIR_MODE = 0o1777


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user of a request and the groups it belongs to."""

    user: str
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_superuser(self) -> bool:
        return self.user in SUPERUSERS


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
