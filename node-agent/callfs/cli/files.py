"""The file subcommands of the ``callfs`` CLI: ``ls``, ``cp``, ``mv``, ``rm``, ``mkdir``, ``stat``, ``link``.

Each command is a thin shell over :class:`callfs.client.CallFSClient`. They share the connection options
(:func:`connection_options`: ``--server/-s``, ``--api-key/-k`` and TLS/timeout settings) and one error exit:
every failure prints ``callfs: <message>`` on stderr and exits with an :class:`ExitCode` that scripts can rely
on (:data:`EXIT_CODES_HELP` is the text for the group's help).

Remote paths: ``callfs:/dir/file`` or the short form ``:/dir/file``. In ``cp`` an argument without that prefix
is a local path (``-`` is stdin/stdout); every other command takes remote paths only, with or without the
prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import click

from callfs import paths
from callfs.client import CallFSClient, CallFSUnavailable, FileInfo, ProgressCallback, canonical
from callfs.errors import (
    AlreadyExists,
    AuthenticationFailed,
    BadGateway,
    BadRequest,
    CallFSError,
    Conflict,
    DirectoryNotEmpty,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RateLimitExceeded,
    ServiceUnavailable,
)

__all__ = [
    "EXIT_CODES_HELP",
    "FILE_COMMANDS",
    "REMOTE_PREFIXES",
    "Connection",
    "ExitCode",
    "Location",
    "connection_options",
    "exit_code_for",
    "mode_string",
    "parse_location",
    "remote_path",
]

T = TypeVar("T")

DEFAULT_SERVER: Final = "http://127.0.0.1:8443"
REMOTE_PREFIXES: Final = ("callfs:", ":")
PROGRESS_THRESHOLD: Final = 4 * 1024 * 1024
"""Bytes from which ``cp`` shows a progress bar on its own (when stderr is a terminal)."""


class ExitCode(IntEnum):
    """Exit statuses of the ``callfs`` file commands (documented in :data:`EXIT_CODES_HELP`)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    DENIED = 4
    CONFLICT = 5
    UNAVAILABLE = 6


EXIT_CODES_HELP: Final = """\b
Exit codes:
  0  success
  1  any other error (server-side failure, local I/O error)
  2  usage error: bad option or argument, invalid path, a directory where a file
     is needed or the reverse (HTTP 400)
  3  not found: the remote path (HTTP 404) or the local file does not exist
  4  authentication or permission failure: missing/wrong API key (401),
     not allowed (403), local permission denied
  5  already exists or conflict: target exists (409), directory not empty,
     precondition failed (412), local target exists with --no-clobber
  6  server unavailable: cannot connect, connection lost, timeout, peer node
     down (502), service unavailable (503), rate limited (429)
"""

_EXIT_BY_CLASS: Final[tuple[tuple[type[BaseException], ExitCode], ...]] = (
    (NotFound, ExitCode.NOT_FOUND),
    (FileNotFoundError, ExitCode.NOT_FOUND),
    (AuthenticationFailed, ExitCode.DENIED),
    (PermissionDenied, ExitCode.DENIED),
    (PermissionError, ExitCode.DENIED),
    (AlreadyExists, ExitCode.CONFLICT),
    (DirectoryNotEmpty, ExitCode.CONFLICT),
    (Conflict, ExitCode.CONFLICT),
    (PreconditionFailed, ExitCode.CONFLICT),
    (FileExistsError, ExitCode.CONFLICT),
    (BadRequest, ExitCode.USAGE),
    (NotADirectory, ExitCode.USAGE),
    (IsADirectory, ExitCode.USAGE),
    (IsADirectoryError, ExitCode.USAGE),
    (NotADirectoryError, ExitCode.USAGE),
    (click.UsageError, ExitCode.USAGE),
    (CallFSUnavailable, ExitCode.UNAVAILABLE),
    (BadGateway, ExitCode.UNAVAILABLE),
    (ServiceUnavailable, ExitCode.UNAVAILABLE),
    (RateLimitExceeded, ExitCode.UNAVAILABLE),
)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit status for an error (first matching class of the table above; anything else → ``ERROR``)."""
    for cls, code in _EXIT_BY_CLASS:
        if isinstance(exc, cls):
            return code
    return ExitCode.ERROR


# --------------------------------------------------------------------------------------------------------
# Pure parts: locations and formatting
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Location:
    """A ``cp`` operand: ``remote`` with a canonical ``path``, or a local ``path`` (``-``: stdin/stdout).

    ``dir_hint`` is true when the operand ended in ``/`` (the user means "into this directory").
    """

    remote: bool
    path: str
    dir_hint: bool = False


def parse_location(arg: str) -> Location:
    """Parse a ``cp`` operand: ``callfs:/p`` or ``:/p`` is remote, anything else local.

    Raises:
        BadRequest: an invalid remote path.
    """
    for prefix in REMOTE_PREFIXES:
        if arg.startswith(prefix):
            raw = arg[len(prefix) :]
            return Location(True, canonical(raw), raw.endswith("/") or canonical(raw) == paths.ROOT)
    return Location(False, arg, arg.endswith("/"))


def remote_path(arg: str) -> str:
    """A remote-only operand: the optional ``callfs:``/``:`` prefix removed, canonicalised.

    Raises:
        BadRequest: an invalid path.
    """
    for prefix in REMOTE_PREFIXES:
        if arg.startswith(prefix):
            return canonical(arg[len(prefix) :])
    return canonical(arg)


def mode_string(kind: str, mode: int) -> str:
    """``ls -l`` permissions: ``drwxr-xr-x``, ``-rw-r--r--``; the sticky bit shows as ``t``/``T``.

    >>> mode_string("directory", 0o1777)
    'drwxrwxrwt'
    """
    chars = ["d" if kind == "directory" else "-"]
    for shift in (6, 3, 0):
        bits = (mode >> shift) & 0o7
        chars += ["r" if bits & 4 else "-", "w" if bits & 2 else "-", "x" if bits & 1 else "-"]
    if mode & 0o1000:
        chars[9] = "t" if chars[9] == "x" else "T"
    return "".join(chars)


def _relative(path: str, top: str) -> str:
    if top == paths.ROOT:
        return path[1:]
    return path[len(top) + 1 :] if path.startswith(top + "/") else path


def long_lines(infos: list[FileInfo], names: list[str]) -> list[str]:
    """``ls -l`` lines: mode, owner, size (bytes), mtime (UTC, seconds), name — columns aligned."""
    if not infos:
        return []
    owner_width = max(len(i.owner) for i in infos)
    size_width = max(len(str(i.size)) for i in infos)
    return [
        f"{mode_string(i.type, i.mode)}  {i.owner:<{owner_width}}  {i.size:>{size_width}}  "
        f"{i.mtime.strftime('%Y-%m-%d %H:%M:%S')}  {name}"
        for i, name in zip(infos, names, strict=True)
    ]


def stat_lines(info: FileInfo) -> list[str]:
    """``stat`` output, one ``Field: value`` per line."""
    return [
        f"Path:  {info.path}",
        f"Type:  {info.type}",
        f"Size:  {info.size}",
        f"Mode:  {info.mode:04o} ({mode_string(info.type, info.mode)})",
        f"Owner: {info.owner}",
        f"MTime: {info.mtime.isoformat()}",
        f"ETag:  {info.etag or '-'}",
    ]


# --------------------------------------------------------------------------------------------------------
# Connection options and the error exit
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how to reach the server, from the shared options."""

    server: str
    api_key: str
    cacert: str | None = None
    insecure: bool = False
    timeout: float = 30.0

    def client(self) -> CallFSClient:
        """A new (not yet entered) client for these settings."""
        context: ssl.SSLContext | bool | None = None
        if self.insecure:
            context = False
        elif self.cacert:
            context = ssl.create_default_context(cafile=self.cacert)
        return CallFSClient(self.server, self.api_key, timeout=self.timeout, ssl=context)


_CONNECTION_OPTIONS: Final = (
    click.option(
        "--server",
        "-s",
        envvar="CALLFS_URL",
        default=DEFAULT_SERVER,
        show_default=True,
        show_envvar=True,
        help="Base URL of a CallFS node.",
    ),
    click.option(
        "--api-key",
        "-k",
        envvar="CALLFS_API_KEY",
        required=True,
        show_envvar=True,
        help="API key (sent as 'Authorization: Bearer <key>').",
    ),
    click.option(
        "--cacert",
        envvar="CALLFS_CACERT",
        type=click.Path(exists=True, dir_okay=False),
        help="PEM file of the CA that signed the server certificate.",
    ),
    click.option("--insecure", is_flag=True, help="Do not verify the server's TLS certificate."),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=30.0,
        show_default=True,
        help="Seconds to connect and between reads (not for a whole transfer).",
    ),
)


def connection_options(command: Callable[..., T]) -> Callable[..., T]:
    """Add the shared connection options; the command receives them as one ``conn: Connection`` argument."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        server: str,
        api_key: str,
        cacert: str | None,
        insecure: bool,
        timeout: float,
        **kwargs: Any,
    ) -> T:
        conn = Connection(server=server, api_key=api_key, cacert=cacert, insecure=insecure, timeout=timeout)
        return command(*args, conn=conn, **kwargs)

    decorated: Callable[..., T] = wrapper
    for option in reversed(_CONNECTION_OPTIONS):
        decorated = option(decorated)
    return decorated


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CallFSError):
        return f"{exc.message} ({exc.code})"
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def run(conn: Connection, action: Callable[[CallFSClient], Awaitable[T]]) -> T:
    """Run ``action`` with a connected client; failures print ``callfs: <message>`` and exit per ExitCode."""

    async def main() -> T:
        async with conn.client() as fs:
            return await action(fs)

    try:
        return asyncio.run(main())
    except (CallFSError, OSError, ValueError) as exc:
        click.echo(f"callfs: {_describe(exc)}", err=True)
        raise click.exceptions.Exit(int(exit_code_for(exc))) from exc


# --------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------


@click.command("ls")
@connection_options
@click.argument("path", default="/")
@click.option("-l", "long_format", is_flag=True, help="Long format: mode, owner, size, mtime, name.")
@click.option("-R", "--recursive", is_flag=True, help="List subdirectories recursively.")
@click.option("--max-depth", type=click.IntRange(0, 1000), help="With -R: levels below the children.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of entries.")
def ls_command(
    conn: Connection, path: str, long_format: bool, recursive: bool, max_depth: int | None, as_json: bool
) -> None:
    """List a remote directory (or show one file). PATH defaults to /.

    With -R, names are paths relative to PATH. --json prints objects with name, path, type, size (bytes),
    mode ("0644"), owner, mtime (ISO 8601) and etag.
    """
    target = remote_path(path)

    async def action(fs: CallFSClient) -> list[FileInfo]:
        info = await fs.stat(target)
        if not info.is_dir:
            return [info]
        return await fs.list_dir(target, recursive=recursive, max_depth=max_depth)

    infos = run(conn, action)
    if as_json:
        click.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    names = [i.name if len(infos) == 1 and i.path == target else _relative(i.path, target) for i in infos]
    lines = long_lines(infos, names) if long_format else names
    for line in lines:
        click.echo(line)


@contextlib.contextmanager
def _progress(enabled: bool | None, size: int | None, label: str) -> Iterator[ProgressCallback | None]:
    show = enabled if enabled is not None else (sys.stderr.isatty() and (size or 0) >= PROGRESS_THRESHOLD)
    if not show:
        yield None
        return
    bar: click._termui_impl.ProgressBar[int]
    with click.progressbar(length=size, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update


async def _remote_target(fs: CallFSClient, dst: Location, name: str) -> str:
    """The remote file a copy to ``dst`` writes: ``dst/name`` when it is (or is meant as) a directory."""
    if dst.dir_hint:
        return paths.join(dst.path, name)
    try:
        info = await fs.stat(dst.path)
    except NotFound:
        return dst.path
    return paths.join(dst.path, name) if info.is_dir else dst.path


@click.command("cp")
@connection_options
@click.argument("src")
@click.argument("dst")
@click.option(
    "-n", "--no-clobber", is_flag=True, help="Fail (exit 5) instead of overwriting an existing DST."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help=f"Show a progress bar (default: when stderr is a terminal and the file is >= "
    f"{PROGRESS_THRESHOLD // (1024 * 1024)} MiB).",
)
@click.option(
    "--websocket", is_flag=True, help="Transfer the bytes over a WebSocket (GET /v1/files/ws/...) instead of HTTP."
)
def cp_command(
    conn: Connection, src: str, dst: str, no_clobber: bool, progress: bool | None, websocket: bool
) -> None:
    """Copy one file: local → remote, remote → local or remote → remote.

    \b
    Remote paths are written callfs:/dir/file or :/dir/file; anything else is a
    local path, and - means stdin (as SRC) or stdout (as DST).
    If DST is a directory (or ends with /), the file keeps its name inside it.
    Examples:
      callfs cp ./big.iso :/images/          upload
      callfs cp callfs:/images/big.iso .     download
      callfs cp :/a/report.pdf :/b/          copy on the server side
      callfs cp --websocket ./big.iso :/images/   upload over a WebSocket
    """
    source = parse_location(src)
    dest = parse_location(dst)
    if not source.remote and not dest.remote:
        raise click.UsageError("one of SRC and DST must be remote (callfs:/path or :/path)")

    # Local checks happen here, before the event loop starts (no blocking calls inside it).
    local_src = Path(source.path)
    local_size = 0
    if not source.remote and source.path == "-" and dest.dir_hint:
        raise click.UsageError("copying from stdin needs a remote file name, not a directory")
    if not source.remote and source.path != "-":
        if local_src.is_dir():
            raise click.UsageError(f"{source.path} is a directory (copy files one by one)")
        try:
            local_size = local_src.stat().st_size
        except OSError as exc:
            click.echo(f"callfs: {_describe(exc)}", err=True)
            raise click.exceptions.Exit(int(exit_code_for(exc))) from exc
    local_dst = Path(dest.path)
    local_dst_is_dir = not dest.remote and dest.path != "-" and (dest.dir_hint or local_dst.is_dir())

    async def upload(fs: CallFSClient) -> None:
        send = fs.upload_websocket if websocket else fs.upload
        if source.path == "-":
            await send(await _remote_target(fs, dest, "stdin"), sys.stdin.buffer, overwrite=not no_clobber)
            return
        local = local_src
        size = local_size
        target = await _remote_target(fs, dest, local.name)
        with _progress(progress, size, local.name) as callback:
            await send(target, local, overwrite=not no_clobber, progress=callback)

    async def download(fs: CallFSClient) -> None:
        info = await fs.stat(source.path)
        if info.is_dir:
            raise IsADirectory(f"{info.path} is a directory (copy files one by one)")
        if dest.path == "-":
            out: IO[bytes] = sys.stdout.buffer
            async for chunk in fs.iter_read_websocket(source.path) if websocket else fs.iter_read(source.path):
                out.write(chunk)
            out.flush()
            return
        local = local_dst / info.name if local_dst_is_dir else local_dst
        if no_clobber and await asyncio.to_thread(local.exists):
            raise FileExistsError(17, "exists (--no-clobber)", str(local))
        with _progress(progress, info.size, info.name) as callback:
            fetch = fs.download_websocket if websocket else fs.download
            await fetch(source.path, local, progress=callback)

    async def remote_copy(fs: CallFSClient) -> None:
        info = await fs.stat(source.path)
        if info.is_dir:
            raise IsADirectory(f"{info.path} is a directory (copy files one by one)")
        target = await _remote_target(fs, dest, info.name)
        if target == info.path:
            raise BadRequest(f"{target}: source and destination are the same file")
        with _progress(progress, info.size, info.name) as callback:
            chunks = fs.iter_read_websocket(source.path) if websocket else fs.iter_read(source.path)
            send = fs.upload_websocket if websocket else fs.upload
            await send(target, chunks, overwrite=not no_clobber, size=info.size, progress=callback)

    if source.remote and dest.remote:
        run(conn, remote_copy)
    elif source.remote:
        run(conn, download)
    else:
        run(conn, upload)


@click.command("mv")
@connection_options
@click.argument("src")
@click.argument("dst")
@click.option("--overwrite", is_flag=True, help="Replace an existing DST file instead of failing (exit 5).")
@click.option("-p", "--parents", is_flag=True, help="Create DST's missing parent directories.")
def mv_command(conn: Connection, src: str, dst: str, overwrite: bool, parents: bool) -> None:
    """Move or rename a remote file or directory (a directory moves with its subtree, atomically).

    If DST is an existing directory (or ends with /), SRC moves into it.
    """
    source = remote_path(src)
    dest = parse_location(dst if dst.startswith(REMOTE_PREFIXES) else ":" + dst)

    async def action(fs: CallFSClient) -> str:
        target = await _remote_target(fs, dest, paths.name_of(source))
        return await fs.move(source, target, overwrite=overwrite, create_parents=parents)

    run(conn, action)


@click.command("rm")
@connection_options
@click.argument("targets", metavar="PATH...", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Remove directories and their contents.")
@click.option("-f", "--force", is_flag=True, help="Ignore paths that do not exist.")
def rm_command(conn: Connection, targets: tuple[str, ...], recursive: bool, force: bool) -> None:
    """Remove remote files (and, with -r, directories). Empty directories go without -r."""
    canon = [remote_path(t) for t in targets]

    async def action(fs: CallFSClient) -> None:
        for path in canon:
            try:
                await fs.delete(path, recursive=recursive)
            except NotFound:
                if not force:
                    raise

    run(conn, action)


@click.command("mkdir")
@connection_options
@click.argument("targets", metavar="PATH...", nargs=-1, required=True)
@click.option("-p", "--parents", is_flag=True, help="Create missing parents; no error if PATH exists.")
def mkdir_command(conn: Connection, targets: tuple[str, ...], parents: bool) -> None:
    """Create remote directories."""
    canon = [remote_path(t) for t in targets]

    async def action(fs: CallFSClient) -> None:
        for path in canon:
            await fs.mkdir(path, exist_ok=parents, parents=parents)

    run(conn, action)


@click.command("stat")
@connection_options
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stat_command(conn: Connection, path: str, as_json: bool) -> None:
    """Show a remote path's type, size (bytes), mode, owner, mtime and ETag."""
    target = remote_path(path)

    async def action(fs: CallFSClient) -> FileInfo:
        return await fs.stat(target)

    info = run(conn, action)
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
        return
    for line in stat_lines(info):
        click.echo(line)


@click.command("link")
@connection_options
@click.argument("path")
@click.option(
    "--expiry",
    "-e",
    type=click.IntRange(1, 86400),
    default=3600,
    show_default=True,
    help="Seconds the link stays valid (1..86400).",
)
@click.option("--json", "as_json", is_flag=True, help="Print {url, token, expires} as JSON.")
def link_command(conn: Connection, path: str, expiry: int, as_json: bool) -> None:
    """Create a single-use download link for a remote file and print its URL (no key needed to use it)."""
    target = remote_path(path)

    async def action(fs: CallFSClient) -> dict[str, Any]:
        return await fs.create_link(target, expiry)

    link = run(conn, action)
    click.echo(json.dumps(link, indent=2) if as_json else str(link["url"]))


FILE_COMMANDS: Final[list[click.Command]] = [
    ls_command,
    cp_command,
    mv_command,
    rm_command,
    mkdir_command,
    stat_command,
    link_command,
]
"""The file subcommands, for ``main.add_command`` in ``callfs.cli.main``."""
