"""Extended attributes: names, limits and who may read or change them (pure; the engine does the I/O).

An entry's extended attributes (``getxattr(2)``, ``setxattr(2)``...) are byte values by name, kept per inode
number (table ``xattrs``, schema version 14): every name of a hard-linked file shares them, a rename keeps them,
and they go when the inode's last name does. They are not charged to quotas. Rules, as Linux has them:

* Names: 1 to :data:`NAME_MAX_BYTES` (255) bytes of UTF-8 without NUL, in a namespace ``user.``, ``trusted.``
  or ``security.`` followed by at least one byte. ``system.`` (POSIX ACLs) and unknown namespaces are not
  supported (:class:`~callfs.errors.XattrNotSupported`, ``ENOTSUP``).
* Values: 0 to :data:`VALUE_MAX_BYTES` (64 KiB) bytes; an inode holds at most :data:`NAMES_MAX_BYTES` of names
  (each with its terminating NUL, what ``listxattr(2)`` returns) and :data:`TOTAL_MAX_BYTES` of names and values.
* ``user.*``: on regular files and directories only (elsewhere: none to read, none may be set). Reading a value
  needs ``r`` on the entry, setting or removing one ``w``; in a sticky directory only its owner (or a superuser)
  changes the directory's own ``user.*`` attributes.
* ``trusted.*``: superusers only (others neither see nor read them: not found; a change: 403), as Linux asks
  ``CAP_SYS_ADMIN``. ``security.*``: read as ``user.*``, changed by superusers only.
* Listing names needs no permission on the entry (as ``listxattr(2)``), only the path's search permission;
  ``trusted.*`` names are listed to superusers only.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from callfs.errors import (
    BadRequest,
    BadXattrName,
    PermissionDenied,
    XattrExists,
    XattrNotFound,
    XattrNotSupported,
    XattrsFull,
    XattrTooLarge,
)
from callfs.models import Inode, InodeType
from callfs.permissions import READ, STICKY, WRITE, Caller, allows

NAME_MAX_BYTES: Final = 255
"""Longest name in UTF-8 bytes, prefix included (Linux ``XATTR_NAME_MAX``)."""
VALUE_MAX_BYTES: Final = 65536
"""Largest value in bytes (Linux ``XATTR_SIZE_MAX``)."""
NAMES_MAX_BYTES: Final = 65536
"""Room for an inode's names, each counted with its terminating NUL (Linux ``XATTR_LIST_MAX``: the most a
``listxattr(2)`` can return)."""
TOTAL_MAX_BYTES: Final = 256 * 1024
"""Room for an inode's names (with their NULs) and values together."""

USER: Final = "user."
TRUSTED: Final = "trusted."
SECURITY: Final = "security."
NAMESPACES: Final = (USER, TRUSTED, SECURITY)
"""The namespaces kept; any other prefix is :class:`~callfs.errors.XattrNotSupported`."""


class SetMode(StrEnum):
    """How a set treats an existing attribute: ``any`` (create or replace), ``create`` (``XATTR_CREATE``: fail
    with :class:`~callfs.errors.XattrExists` when it exists), ``replace`` (``XATTR_REPLACE``: fail with
    :class:`~callfs.errors.XattrNotFound` when it does not)."""

    ANY = "any"
    CREATE = "create"
    REPLACE = "replace"


def parse_mode(text: str | None) -> SetMode:
    """The :class:`SetMode` named ``text`` (``None`` or empty: ``any``). Raises ``BadRequest`` otherwise."""
    if not text:
        return SetMode.ANY
    try:
        return SetMode(text)
    except ValueError:
        raise BadRequest(f"mode must be one of {', '.join(m.value for m in SetMode)}, not {text!r}") from None


def check_name(name: str) -> str:
    """``name`` when it is a valid name in a kept namespace.

    >>> check_name("user.mime_type")
    'user.mime_type'

    Raises:
        BadXattrName: empty, over 255 bytes, a NUL, or nothing after the namespace prefix.
        XattrNotSupported: a namespace other than ``user.``, ``trusted.``, ``security.``.
    """
    encoded = name.encode("utf-8", "surrogatepass")
    if not encoded:
        raise BadXattrName("an extended attribute name may not be empty")
    if len(encoded) > NAME_MAX_BYTES:
        raise BadXattrName(f"extended attribute name of {len(encoded)} bytes; at most {NAME_MAX_BYTES}")
    if "\x00" in name:
        raise BadXattrName("an extended attribute name may not contain NUL")
    prefix = namespace_of(name)
    if prefix is None:
        raise XattrNotSupported(f"extended attribute {name!r}: namespaces kept are {', '.join(NAMESPACES)}")
    if name == prefix:
        raise BadXattrName(f"extended attribute name {name!r} has nothing after its namespace")
    return name


def namespace_of(name: str) -> str | None:
    """The kept namespace prefix of ``name`` (``"user."``...), or ``None``."""
    return next((prefix for prefix in NAMESPACES if name.startswith(prefix)), None)


def check_value(value: bytes) -> None:
    """Raise :class:`~callfs.errors.XattrTooLarge` for a value over :data:`VALUE_MAX_BYTES`."""
    if len(value) > VALUE_MAX_BYTES:
        raise XattrTooLarge(f"extended attribute value of {len(value)} bytes; at most {VALUE_MAX_BYTES}")


def check_room(sizes: Mapping[str, int], name: str, size: int) -> None:
    """Check that setting ``name`` to a value of ``size`` bytes keeps an inode whose values have ``sizes`` (by
    name) within :data:`NAMES_MAX_BYTES` and :data:`TOTAL_MAX_BYTES`.

    Raises:
        XattrsFull: there is no room left.
    """
    after = {**sizes, name: size}
    names = sum(len(n.encode("utf-8", "surrogatepass")) + 1 for n in after)
    if names > NAMES_MAX_BYTES:
        raise XattrsFull(f"the names of the extended attributes would take {names} bytes; at most {NAMES_MAX_BYTES}")
    total = names + sum(after.values())
    if total > TOTAL_MAX_BYTES:
        raise XattrsFull(f"the extended attributes would take {total} bytes; at most {TOTAL_MAX_BYTES}")


def check_mode(name: str, exists: bool, mode: SetMode) -> None:
    """Raise :class:`~callfs.errors.XattrExists` (``create`` of an existing ``name``) or
    :class:`~callfs.errors.XattrNotFound` (``replace`` of a missing one)."""
    if mode is SetMode.CREATE and exists:
        raise XattrExists(f"extended attribute {name} exists already")
    if mode is SetMode.REPLACE and not exists:
        raise XattrNotFound(f"no extended attribute {name} to replace")


def _holds_user(inode: Inode) -> bool:
    return inode.type in (InodeType.FILE, InodeType.DIRECTORY)


def visible(caller: Caller, inode: Inode, name: str) -> bool:
    """True when ``name`` appears in ``caller``'s listing of ``inode``'s attributes."""
    if name.startswith(TRUSTED):
        return caller.is_superuser
    return not name.startswith(USER) or _holds_user(inode)


def require_read(caller: Caller, inode: Inode, name: str) -> None:
    """Check reading the value of the attribute ``name`` (already :func:`check_name`-ed) of ``inode``.

    Raises:
        XattrNotFound: a ``trusted.*`` name for a caller who is not a superuser, or a ``user.*`` name on an
            entry that cannot hold one (a symlink, a special file): Linux answers ``ENODATA`` there.
        PermissionDenied: no ``r`` on the entry.
    """
    if not visible(caller, inode, name):
        raise XattrNotFound(f"{inode.path} has no extended attribute {name}")
    if not allows(caller, inode, READ):
        raise PermissionDenied(f"{caller.user} may not read the extended attributes of {inode.path}")


def require_write(caller: Caller, inode: Inode, name: str) -> None:
    """Check setting or removing the attribute ``name`` (already :func:`check_name`-ed) of ``inode``.

    Raises:
        PermissionDenied: a ``trusted.*`` or ``security.*`` name for a caller who is not a superuser; a
            ``user.*`` name on a symlink or special file; no ``w`` on the entry; a sticky directory the caller
            does not own.
    """
    if name.startswith((TRUSTED, SECURITY)):
        if not caller.is_superuser:
            raise PermissionDenied(f"only a superuser may change {name.split('.', 1)[0]}.* extended attributes")
        return
    if not _holds_user(inode):
        raise PermissionDenied(f"{inode.path} is a {inode.type.value}: user.* extended attributes are only for "
                               "regular files and directories")
    if not allows(caller, inode, WRITE):
        raise PermissionDenied(f"{caller.user} may not change the extended attributes of {inode.path}")
    if inode.is_dir and inode.mode & STICKY and not caller.is_superuser and caller.user != inode.owner:
        raise PermissionDenied(f"only the owner of the sticky directory {inode.path} may change its user.* "
                               "extended attributes")
