"""``callfs-mount``: mount a CallFS volume directory through FUSE (the CSI node plugin's mount helper).

Usage::

    callfs-mount SERVER_URL VOLUME_PATH MOUNTPOINT --key-file FILE [--read-only] [--uid N] [--gid N]
                 [--fs-name NAME] [--option KEY=VALUE ...] [--foreground] [--log-file FILE] [--pid-file FILE]
                 [--log-level LEVEL] [--log-format json|console] [--via-service SOCKET]

Without ``--foreground`` the command daemonises the mount into its own session and exits 0 once the mount
is live, or 1 with one line on stderr (``callfs-mount: <reason>``). Bad arguments exit 2. Unmount with
``fusermount3 -u MOUNTPOINT``; the daemon then exits 0. The readiness handshake: :mod:`callfs_csi.fuse.daemon`;
the filesystem semantics: :mod:`callfs_csi.fuse.fs`.

With ``--via-service SOCKET`` the command mounts nothing itself: it sends its other arguments to the
``callfs-mount-service`` listening there (:mod:`callfs_csi.mount_service`), which runs ``callfs-mount`` with
them, and exits as that did (same contract; 1 and one line when the service cannot be reached).
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Sequence
from typing import NoReturn

from callfs.errors import BadRequest
from callfs.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from callfs_csi.fuse.daemon import Readiness, spawn_daemon
from callfs_csi.fuse.mount import run_mount
from callfs_csi.fuse.options import OptionError, build_settings

READY_GRACE = 30.0
"""Seconds the command waits for readiness beyond the request deadline (libfuse start, first requests)."""


VIA_SERVICE = "--via-service"


class ArgumentsRefused(ValueError):
    """Arguments the parser of a service request does not accept; the message is argparse's."""


class _RequestParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ArgumentsRefused(message)


def build_parser(*, service_request: bool = False) -> argparse.ArgumentParser:
    """The command-line parser (``--help`` text included). Options are spelled in full (no abbreviations), so
    ``--via-service`` is recognised and removed exactly (:func:`without_via_service`).

    ``service_request=True`` gives the parser the mount service checks a request's arguments with
    (:mod:`callfs_csi.mount_service`): the same arguments without ``--help`` and ``--via-service`` (the service
    mounts itself), whose errors raise :class:`ArgumentsRefused` instead of printing usage and exiting.
    """
    parser = (_RequestParser if service_request else argparse.ArgumentParser)(
        prog="callfs-mount", add_help=not service_request, allow_abbrev=False,
        description="Mount the CallFS directory VOLUME_PATH of the cluster at SERVER_URL on MOUNTPOINT (FUSE).",
        epilog="Unmount with: fusermount3 -u MOUNTPOINT. Tuning options (--option): attr_timeout=SECONDS, "
        "negative_timeout=SECONDS, request_deadline=SECONDS, read_ahead=BLOCKS, kernel_read_ahead=KIB, "
        "writeback_cache, spool_dir=DIR, quiet, xattr=false; any "
        "other KEY[=VALUE] is passed to FUSE as a mount option.",
    )
    parser.add_argument("server_url", metavar="SERVER_URL", help="CallFS server, e.g. http://callfs:8443")
    parser.add_argument("volume_path", metavar="VOLUME_PATH", help="directory on the server, e.g. /volumes/pvc-1")
    parser.add_argument("mountpoint", metavar="MOUNTPOINT", help="existing empty directory to mount on")
    parser.add_argument("--key-file", required=True, metavar="FILE",
                        help="file holding the API key (never pass the key itself: it would show in ps)")
    parser.add_argument("--read-only", action="store_true", help="mount read-only")
    parser.add_argument("--ca-file", default=None, metavar="FILE",
                        help="PEM certificates to trust for an https:// SERVER_URL (default: the system's)")
    parser.add_argument("--uid", type=int, default=None, help="owner uid of every inode (default: caller's)")
    parser.add_argument("--gid", type=int, default=None, help="owner gid of every inode (default: caller's)")
    parser.add_argument("--fs-name", default=None, metavar="NAME",
                        help="accepted for compatibility; the mount source is always callfs:VOLUME_PATH")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="tuning or FUSE option (repeatable)")
    parser.add_argument("--foreground", "-f", action="store_true", help="stay in the foreground (tests, debug)")
    parser.add_argument("--log-file", default=None, metavar="FILE", help="append logs here (default: none "
                        "when daemonised, stderr in the foreground)")
    parser.add_argument("--pid-file", default=None, metavar="FILE", help="write the daemon's pid here")
    parser.add_argument("--log-level", type=str.lower, default="info", choices=LOG_LEVELS,
                        help="lowest level logged (default info)")
    parser.add_argument("--log-format", default="console", choices=LOG_FORMATS,
                        help="json (one object per line) or console (default)")
    if not service_request:
        parser.add_argument(VIA_SERVICE, default=None, metavar="SOCKET",
                            help="do not mount here: have the callfs-mount-service listening on this unix socket "
                            "run callfs-mount with the other arguments (the daemon then lives in its container)")
    return parser


def without_via_service(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--via-service SOCKET`` / ``--via-service=SOCKET``: what a mount service is sent."""
    rest: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == VIA_SERVICE:
            skip = True
        elif not arg.startswith(VIA_SERVICE + "="):
            rest.append(arg)
    return rest


def _read_key(path: str) -> str:
    with open(path, encoding="utf-8") as source:
        key = source.read().strip()
    if not key:
        raise ValueError(f"key file {path} is empty")
    return key


def _configure_logging(level: str, fmt: str, log_file: str | None, *, daemon: bool) -> None:
    """Log to ``log_file`` (appended) in the foreground, else to stderr (a daemon's stderr is its log file)."""
    stream = open(log_file, "a", encoding="utf-8") if log_file and not daemon else None  # noqa: SIM115 - kept open
    configure_logging(level, fmt, stream=stream)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``callfs-mount``; returns (and exits with) 0 on success, 1 when the mount failed,
    2 for bad arguments."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.via_service is not None:
        # Imported here: the service module imports this one (for the parser).
        from callfs_csi.mount_service import MountServiceError, request_mount

        try:
            reply = request_mount(args.via_service, without_via_service(arguments))
        except MountServiceError as exc:
            print(f"callfs-mount: {exc}", file=sys.stderr)
            return 1
        if reply.stderr.strip():
            print(reply.stderr.rstrip("\n"), file=sys.stderr)
        return reply.exit_code
    try:
        settings = build_settings(
            server_url=args.server_url, volume_path=args.volume_path, mountpoint=args.mountpoint,
            uid=args.uid, gid=args.gid, read_only=args.read_only, options=args.option,
        )
    except (OptionError, BadRequest) as exc:
        parser.error(str(exc))
    try:
        api_key = _read_key(args.key_file)
    except (OSError, ValueError) as exc:
        print(f"callfs-mount: cannot read the key file: {exc}", file=sys.stderr)
        return 1
    try:
        context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    except (OSError, ssl.SSLError) as exc:
        print(f"callfs-mount: cannot load the CA file: {exc}", file=sys.stderr)
        return 1
    if args.foreground:
        _configure_logging(args.log_level, args.log_format, args.log_file, daemon=False)
        return run_mount(settings, api_key, Readiness(None), args.pid_file, ssl_context=context)

    def daemon(readiness: Readiness) -> int:
        _configure_logging(args.log_level, args.log_format, args.log_file, daemon=True)
        return run_mount(settings, api_key, readiness, args.pid_file, ssl_context=context)

    return spawn_daemon(daemon, output_path=args.log_file, timeout=settings.request_deadline + READY_GRACE)


if __name__ == "__main__":
    sys.exit(main())
