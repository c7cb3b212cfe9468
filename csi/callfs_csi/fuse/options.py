"""Mount settings: the parsed form of the ``callfs-mount`` command line (pure).

``--option KEY=VALUE`` (repeatable) carries two kinds of keys:

* tuning keys of this client (:data:`TUNING_KEYS`): ``attr_timeout`` (seconds, default 1.0: how long attributes
  and directory entries are trusted, in the kernel and here), ``negative_timeout`` (seconds a "no such file"
  answer is trusted, default 1.0), ``request_deadline`` (seconds a call retries a briefly unreachable server
  before failing with EIO, default 30), ``read_ahead`` (number of 1 MiB blocks fetched ahead of a sequential
  reader, default 8), ``kernel_read_ahead`` (KiB the kernel reads ahead of a sequential reader and so the
  size of its read requests, default 1024; 0 keeps the kernel's default of 128), ``writeback_cache`` (the
  kernel buffers writes in its page cache and sends them in large batches; default false: with it the kernel
  trusts its own file sizes and stops taking size changes made by other clients, so enable it only for a
  volume that one mount writes — see docs/architecture.md), ``spool_dir`` (where write buffers live,
  default the system temp dir), ``quiet`` (a chown the server refuses succeeds silently, as
  vfat's ``quiet``), ``xattr`` (``user.*`` extended attributes kept on the server, default true; false leaves
  out the xattr callbacks, so writes skip the kernel's ``security.capability`` query, one round trip into the
  mount per ``write(2)``, and every xattr call fails with ENOTSUP);
* anything else is passed to FUSE as a mount option (``-o KEY[=VALUE]``), e.g. ``max_read=1048576``.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

TUNING_KEYS: Final = frozenset(
    {"attr_timeout", "negative_timeout", "request_deadline", "read_ahead", "kernel_read_ahead", "writeback_cache",
     "spool_dir", "quiet", "xattr"}
)
"""``--option`` keys this client consumes itself; the others become FUSE mount options."""

FORBIDDEN_FUSE_KEYS: Final = frozenset({"fsname", "subtype"})
"""FUSE options the client sets itself (``fsname=callfs:<VOLUME_PATH>``, ``subtype=callfs``): the CSI node
plugin finds its mounts by them, so a caller may not change them."""


MAX_KERNEL_READ_AHEAD: Final = 16 * 1024
"""Largest ``kernel_read_ahead`` in KiB (the kernel splits reads at its 1 MiB request size anyway)."""


class OptionError(ValueError):
    """A malformed ``--option`` or out-of-range setting; the message names the option."""


@dataclass(frozen=True, slots=True)
class MountSettings:
    """Everything the mount needs, validated.

    ``server_url`` the CallFS base URL; ``volume_path`` the canonical API directory mounted as the root;
    ``uid``/``gid`` the owner every inode appears to have; times in seconds; ``read_ahead`` in 1 MiB blocks;
    ``kernel_read_ahead`` in KiB (0: the kernel's default); ``writeback_cache`` the kernel's write-back mode;
    ``xattr`` whether the mount serves extended attributes;
    ``fuse_options`` extra FUSE ``-o`` options (value ``None`` for a bare flag).
    """

    server_url: str
    volume_path: str
    mountpoint: str
    uid: int
    gid: int
    read_only: bool = False
    attr_timeout: float = 1.0
    negative_timeout: float = 1.0
    request_deadline: float = 30.0
    read_ahead: int = 8
    kernel_read_ahead: int = 1024
    writeback_cache: bool = False
    spool_dir: str = field(default_factory=tempfile.gettempdir)
    quiet: bool = False
    xattr: bool = True
    fuse_options: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def fsname(self) -> str:
        """The mount source shown in ``/proc/self/mountinfo``: ``callfs:<volume_path>``."""
        return f"callfs:{self.volume_path}"


def split_option(text: str) -> tuple[str, str | None]:
    """``"KEY=VALUE"`` → ``("KEY", "VALUE")``; ``"KEY"`` → ``("KEY", None)``.

    Raises:
        OptionError: empty key, or a key/value containing ``,`` (it would split the FUSE option list).
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not key:
        raise OptionError(f"--option {text!r}: empty key")
    if "," in text:
        raise OptionError(f"--option {text!r}: commas are not allowed (give one option per --option)")
    return key, (value if sep else None)


def _positive_float(key: str, value: str | None, *, allow_zero: bool) -> float:
    try:
        number = float(value if value is not None else "")
    except ValueError as exc:
        raise OptionError(f"--option {key}: expected a number of seconds, got {value!r}") from exc
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise OptionError(f"--option {key}: out of range: {value!r}")
    return number


def build_settings(
    *,
    server_url: str,
    volume_path: str,
    mountpoint: str,
    uid: int | None = None,
    gid: int | None = None,
    read_only: bool = False,
    options: Iterable[str] = (),
) -> MountSettings:
    """Validate the command line into :class:`MountSettings`.

    ``uid``/``gid`` default to the caller's (``os.getuid()``/``os.getgid()``). ``volume_path`` is
    canonicalised like the server does (``callfs.client.canonical``).

    Raises:
        OptionError: bad ``--option``, a negative uid/gid, a URL that is not http(s), or a forbidden FUSE key.
        callfs.errors.BadRequest: ``volume_path`` has characters the server rejects.
    """
    from callfs.client import canonical

    if not server_url.startswith(("http://", "https://")):
        raise OptionError(f"SERVER_URL must start with http:// or https://, got {server_url!r}")
    resolved_uid = os.getuid() if uid is None else uid
    resolved_gid = os.getgid() if gid is None else gid
    if resolved_uid < 0 or resolved_gid < 0:
        raise OptionError("--uid/--gid must be >= 0")
    tuning: dict[str, object] = {}
    fuse: dict[str, str | None] = {}
    for text in options:
        key, value = split_option(text)
        if key in FORBIDDEN_FUSE_KEYS:
            raise OptionError(f"--option {key}: set by callfs-mount itself")
        if key in ("attr_timeout", "negative_timeout"):
            tuning[key] = _positive_float(key, value, allow_zero=True)
        elif key == "request_deadline":
            tuning[key] = _positive_float(key, value, allow_zero=False)
        elif key == "read_ahead":
            if value is None or not value.isdigit() or int(value) > 64:
                raise OptionError(f"--option read_ahead: expected 0..64 blocks of 1 MiB, got {value!r}")
            tuning[key] = int(value)
        elif key == "spool_dir":
            if not value:
                raise OptionError("--option spool_dir: expected a directory")
            tuning[key] = value
        elif key == "kernel_read_ahead":
            if value is None or not value.isdigit() or int(value) > MAX_KERNEL_READ_AHEAD:
                raise OptionError(f"--option kernel_read_ahead: expected 0..{MAX_KERNEL_READ_AHEAD} KiB, got {value!r}")
            tuning[key] = int(value)
        elif key in ("quiet", "writeback_cache", "xattr"):
            if value not in (None, "true", "false", "1", "0"):
                raise OptionError(f"--option {key}: expected true/false, got {value!r}")
            tuning[key] = value in (None, "true", "1")
        elif key == "ro":
            read_only = True
        else:
            fuse[key] = value
    return MountSettings(
        server_url=server_url.rstrip("/"),
        volume_path=canonical(volume_path),
        mountpoint=mountpoint,
        uid=resolved_uid,
        gid=resolved_gid,
        read_only=read_only,
        fuse_options=fuse,
        **tuning,  # type: ignore[arg-type]
    )
