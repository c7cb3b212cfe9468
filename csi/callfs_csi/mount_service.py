"""``callfs-mount-service``: runs ``callfs-mount`` on behalf of the CSI node plugin, from another container.

    callfs-mount-service --socket /mount-service/mount.sock [--timeout SECONDS] [--log-level LEVEL]
                         [--log-format json|console]

In Kubernetes a container restart (a crash, a failed liveness probe, an OOM kill) kills every process in the
container's cgroup, so FUSE daemons started by the node plugin would die with the plugin's container, and every
pod's mount on the node with them. This service runs in a sibling container of the plugin's pod; the plugin is
given ``--mount-command "callfs-mount --via-service /mount-service/mount.sock"`` (:mod:`callfs_csi.mount_main`),
so each ``callfs-mount`` is a child of this service, and its daemon, once detached into its own session, stays
in this container's cgroup when the plugin's container restarts.

Wire protocol, one request per connection on a unix socket created with mode 0600: the client writes one JSON
object ``{"argv": [str, ...]}`` (``callfs-mount``'s arguments, program name excluded; at most
:data:`MAX_REQUEST_BYTES`) and shuts down its sending side; the service answers ``{"exit_code": int, "stderr":
str}`` (``callfs-mount``'s exit code and standard error: 0 once the mount is live, else 1 or 2 and a last line
``callfs-mount: <reason>``) and closes the connection. The service runs nothing but ``callfs-mount``: ``argv``
must parse with ``callfs-mount``'s own parser (:func:`callfs_csi.mount_main.build_parser`, without ``--help`` and
``--via-service``) and must not ask for ``--foreground``; any other request is answered with exit code 1 and
``callfs-mount: the mount service refuses the request: <why>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from callfs.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from callfs_csi.mount_main import ArgumentsRefused, build_parser
from callfs_csi.mounter import default_mount_command, run_command

__all__ = [
    "CLIENT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MAX_REQUEST_BYTES",
    "MountReply",
    "MountService",
    "MountServiceError",
    "RequestRefused",
    "check_arguments",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "main",
    "request_mount",
    "serve",
]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 64 * 1024
"""Largest request accepted, in bytes (a mount's arguments are a few hundred)."""
MAX_REPLY_BYTES: Final = 1024 * 1024
"""Largest answer a client reads, in bytes (the service sends at most 64 KiB of stderr)."""
READ_TIMEOUT: Final = 10.0
"""Seconds a client has to send its whole request."""
DEFAULT_TIMEOUT: Final = 90.0
"""Default seconds one ``callfs-mount`` may run (it gives up by itself after its request deadline + 30 s)."""
CLIENT_TIMEOUT: Final = 120.0
"""Seconds a client waits for the answer: beyond the service's default timeout, so that answer arrives."""


class RequestRefused(ValueError):
    """A request the service does not run; the message says why."""


class MountServiceError(Exception):
    """The service could not be reached, or did not answer with a reply; the message is one line."""


@dataclass(frozen=True, slots=True)
class MountReply:
    """The outcome of one request: ``callfs-mount``'s ``exit_code`` and its ``stderr`` text."""

    exit_code: int
    stderr: str


def encode_request(argv: Sequence[str]) -> bytes:
    """The request bytes for ``callfs-mount`` arguments ``argv`` (program name excluded)."""
    return json.dumps({"argv": list(argv)}).encode()


def decode_request(data: bytes) -> list[str]:
    """The ``argv`` of a request.

    Raises:
        RequestRefused: not a JSON object whose ``argv`` (its only key) is a list of strings.
    """
    try:
        request = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestRefused(f"not JSON ({exc})") from None
    if not isinstance(request, dict) or set(request) != {"argv"}:
        raise RequestRefused('expected a JSON object {"argv": [...]}')
    argv = request["argv"]
    if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        raise RequestRefused("argv must be a list of strings")
    return argv


def check_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed as ``callfs-mount``'s arguments, when the service may run ``callfs-mount`` with them.

    Raises:
        RequestRefused: ``argv`` does not parse with ``callfs-mount``'s parser (an unknown option, a missing
            argument, ``--help``, ``--via-service``), or asks for ``--foreground`` (the mount would hold the
            request until the timeout, then be killed).
    """
    try:
        args = build_parser(service_request=True).parse_args(list(argv))
    except ArgumentsRefused as exc:
        raise RequestRefused(f"not callfs-mount arguments: {exc}") from None
    if args.foreground:
        raise RequestRefused("--foreground is not accepted: the service runs daemonised mounts only")
    return args


def encode_reply(reply: MountReply) -> bytes:
    """The answer bytes for ``reply``."""
    return json.dumps({"exit_code": reply.exit_code, "stderr": reply.stderr}).encode()


def decode_reply(data: bytes) -> MountReply:
    """The reply the service sent.

    Raises:
        MountServiceError: empty (the service closed without answering) or not a reply object.
    """
    if not data:
        raise MountServiceError("the mount service closed the connection without answering")
    try:
        reply = json.loads(data)
        code, stderr = reply["exit_code"], reply["stderr"]
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError):
        raise MountServiceError("the mount service sent something that is not a reply") from None
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255 or not isinstance(stderr, str):
        raise MountServiceError("the mount service sent something that is not a reply")
    return MountReply(code, stderr)


def request_mount(socket_path: str, argv: Sequence[str], timeout: float = CLIENT_TIMEOUT) -> MountReply:
    """Ask the service listening on ``socket_path`` to run ``callfs-mount`` with ``argv``; blocks until it
    answers (the service answers once ``callfs-mount`` has exited), each socket operation waiting at most
    ``timeout`` seconds.

    Raises:
        MountServiceError: the socket cannot be reached, the exchange fails or times out, or the answer is not
            a reply.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        try:
            connection.connect(socket_path)
        except OSError as exc:
            raise MountServiceError(f"the mount service at {socket_path} is unreachable: {exc}") from None
        try:
            connection.sendall(encode_request(argv))
            connection.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
                if len(data) > MAX_REPLY_BYTES:
                    raise MountServiceError(f"the mount service sent more than {MAX_REPLY_BYTES} bytes")
        except TimeoutError:
            raise MountServiceError(f"no answer from the mount service at {socket_path} within {timeout:.0f}s") \
                from None
        except OSError as exc:
            raise MountServiceError(f"the mount service at {socket_path} failed: {exc}") from None
    return decode_reply(data)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while chunk := await reader.read(65536):
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise RequestRefused(f"the request is larger than {MAX_REQUEST_BYTES} bytes")
    return data


def _refuse(reason: str) -> MountReply:
    log.warning("refused a request: %s", reason)
    return MountReply(1, f"callfs-mount: the mount service refuses the request: {reason}\n")


class MountService:
    """Answers requests by running ``mount_command`` (``callfs-mount``) with their arguments, each for at
    most ``timeout`` seconds."""

    def __init__(self, mount_command: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.mount_command = list(mount_command)
        self.timeout = timeout

    async def answer(self, data: bytes) -> MountReply:
        """The reply to request bytes ``data``: a refusal, or how ``callfs-mount`` ended (exit code 1 and a
        reason when it was killed, by a signal or after the timeout). Logs one line."""
        try:
            argv = decode_request(data)
            args = check_arguments(argv)
        except RequestRefused as exc:
            return _refuse(str(exc))
        started = time.monotonic()
        result = await run_command([*self.mount_command, *argv], self.timeout)
        if result.code is None or result.code < 0:
            reason = (f"callfs-mount: killed by the mount service after {self.timeout:.0f}s" if result.code is None
                      else f"callfs-mount: killed by signal {-result.code}")
            earlier = result.stderr.rstrip("\n") + "\n" if result.stderr.strip() else ""
            reply = MountReply(1, f"{earlier}{reason}\n")
        else:
            reason = result.last_line()
            reply = MountReply(result.code, result.stderr)
        what = f"{args.server_url} {args.volume_path} at {args.mountpoint}"
        elapsed = time.monotonic() - started
        if reply.exit_code == 0:
            log.info("mounted %s (%.2fs)", what, elapsed)
        else:
            log.warning("mount of %s failed (exit %d, %.2fs): %s", what, reply.exit_code, elapsed, reason)
        return reply

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: read the request (bounded in size and time), answer it, close."""
        try:
            try:
                data = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT)
            except TimeoutError:
                reply = _refuse(f"no complete request within {READ_TIMEOUT:.0f}s")
            except RequestRefused as exc:
                reply = _refuse(str(exc))
            else:
                reply = await self.answer(data)
            writer.write(encode_reply(reply))
            await writer.drain()
        except OSError as exc:
            # The client is gone (the plugin's container restarted mid-request): the mount itself stands.
            log.warning("could not answer a client: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def serve(socket_path: str, service: MountService, stop: asyncio.Event) -> None:
    """Listen on the unix socket ``socket_path`` (mode 0600; a stale socket file is replaced) until ``stop`` is
    set; the socket file is removed then.

    Raises:
        OSError: the socket cannot be created (e.g. its directory is missing).
    """
    # SECURITY: whoever can connect has callfs-mount run as this service's user (root, with /dev/fuse and mount
    # propagation): the socket is born 0600, with no moment in which another user could connect.
    previous = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(service.handle, path=socket_path)
    finally:
        os.umask(previous)
    log.info("listening on %s (callfs-mount: %s)", socket_path, " ".join(service.mount_command))
    try:
        async with server:
            await stop.wait()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


def parser() -> argparse.ArgumentParser:
    """The command-line parser of ``callfs-mount-service``."""
    p = argparse.ArgumentParser(prog="callfs-mount-service",
                                description="Run callfs-mount for clients of a unix socket (callfs-mount "
                                "--via-service SOCKET), so that FUSE daemons live in this process's container.")
    p.add_argument("--socket", required=True, metavar="PATH", help="unix socket to listen on (created mode 0600)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds one callfs-mount may run before it is killed (default {DEFAULT_TIMEOUT:.0f})")
    p.add_argument("--log-level", type=str.lower, default="info", choices=LOG_LEVELS,
                   help="lowest level logged (default info)")
    p.add_argument("--log-format", default="console", choices=LOG_FORMATS,
                   help="json (one object per line) or console (default)")
    return p


async def _main(socket_path: str, service: MountService) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(socket_path, service, stop)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``callfs-mount-service`` console script (missing directories of ``--socket`` are made
    with mode 0700); exits 2 on bad options, 1 when the socket cannot be created."""
    p = parser()
    args = p.parse_args(argv)
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    configure_logging(args.log_level, args.log_format)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.socket)), mode=0o700, exist_ok=True)
        asyncio.run(_main(args.socket, MountService(default_mount_command(), args.timeout)))
    except OSError as exc:
        print(f"callfs-mount-service: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
