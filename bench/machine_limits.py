"""The machine's own limits, measured in the same run as the node, to put the node's figures in proportion.

* :func:`dd_write` — sequential write of a file to disk with ``dd bs=1M conv=fsync`` (the bytes reach the disk
  before dd exits, as an acknowledged PUT's do: the node fsyncs each blob), ``streams`` copies at once.
* :func:`sendfile_over_loopback` — the fastest a file can leave this machine's TCP stack: a tiny server thread
  ``sendfile(2)``s the file to a client that reads into one buffer and discards (what the node does for GET).
* :func:`sendfile_http_server` — the same sendfile behind a bare HTTP/1.1 answer, so that the benchmark's own
  aiohttp client can be measured against it: the most the client side can take in.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

READ_BUFFER_BYTES = 1024 * 1024
"""Client receive buffer for the loopback copy (bytes), the same chunk size the GET benchmark reads with."""


def dd_write(source: Path, targets: Sequence[Path]) -> float:
    """Copy ``source`` to every path in ``targets`` at once with ``dd bs=1M conv=fsync``; wall seconds.

    Raises ``RuntimeError`` with dd's stderr when any copy fails.
    """
    start = time.monotonic()
    processes = [
        subprocess.Popen(
            ["dd", f"if={source}", f"of={target}", "bs=1M", "conv=fsync", "status=none"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for target in targets
    ]
    failures = []
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            failures.append(stderr.decode(errors="replace"))
    elapsed = time.monotonic() - start
    if failures:
        raise RuntimeError("dd failed: " + "; ".join(failures))
    return elapsed


def _send_one(listener: socket.socket, path: Path, errors: list[BaseException]) -> None:
    try:
        connection, _ = listener.accept()
        with connection, path.open("rb") as source:
            size = os.fstat(source.fileno()).st_size
            offset = 0
            while offset < size:
                sent = os.sendfile(connection.fileno(), source.fileno(), offset, size - offset)
                if sent == 0:
                    raise ConnectionError("peer closed during sendfile")
                offset += sent
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def _receive_all(port: int, received: list[int], errors: list[BaseException]) -> None:
    buffer = bytearray(READ_BUFFER_BYTES)
    view = memoryview(buffer)
    total = 0
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            while True:
                n = client.recv_into(view)
                if n == 0:
                    break
                total += n
    except BaseException as exc:
        errors.append(exc)
    received.append(total)


def sendfile_over_loopback(paths: Sequence[Path]) -> float:
    """Send every file in ``paths`` at once over its own loopback TCP connection; wall seconds until all arrived.

    Raises ``RuntimeError`` when a transfer fails or delivers a different number of bytes than the file holds.
    """
    expected = sum(path.stat().st_size for path in paths)
    errors: list[BaseException] = []
    received: list[int] = []
    with socket.create_server(("127.0.0.1", 0), backlog=len(paths)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(60)
        senders = [threading.Thread(target=_send_one, args=(listener, path, errors)) for path in paths]
        receivers = [threading.Thread(target=_receive_all, args=(port, received, errors)) for _ in paths]
        start = time.monotonic()
        for thread in (*senders, *receivers):
            thread.start()
        for thread in (*senders, *receivers):
            thread.join()
        elapsed = time.monotonic() - start
    if errors:
        raise RuntimeError(f"loopback sendfile failed: {errors[0]!r}")
    if sum(received) != expected:
        raise RuntimeError(f"loopback sendfile delivered {sum(received)} bytes, expected {expected}")
    return elapsed


def _serve_http_once(connection: socket.socket, paths: Sequence[Path]) -> None:
    with connection:
        head = b""
        while b"\r\n\r\n" not in head:
            piece = connection.recv(4096)
            if not piece:
                return
            head += piece
        target = head.split(b" ", 2)[1].decode()
        index = int(target.rsplit("/", 1)[-1])
        with paths[index].open("rb") as source:
            size = os.fstat(source.fileno()).st_size
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                + f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
            )
            offset = 0
            while offset < size:
                sent = os.sendfile(connection.fileno(), source.fileno(), offset, size - offset)
                if sent == 0:
                    return
                offset += sent


@contextmanager
def sendfile_http_server(paths: Sequence[Path]) -> Iterator[str]:
    """A minimal HTTP/1.1 server on 127.0.0.1 answering ``GET /<i>`` with ``paths[i]`` by ``sendfile(2)``.

    Yields its base URL (``http://127.0.0.1:<port>``). It parses nothing but the request line and closes each
    connection after one answer: the least work an HTTP file server can do, so that an HTTP client reading
    from it shows the client's own ceiling. Stopped when the block ends.
    """
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    listener.settimeout(0.2)  # accept() wakes up to see ``stop``; closing alone would not wake it
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(None)
            threading.Thread(target=_serve_http_once, args=(connection, paths), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)
