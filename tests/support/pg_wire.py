"""A counting relay in front of PostgreSQL: how many round trips and statements a client really sends.

:class:`PgWireCounter` listens on a free loopback port and relays every byte to the real server unchanged;
on the way it reads the frontend messages of the PostgreSQL protocol (v3) and counts them. A client waits for
the server after each ``Sync`` (extended protocol: bind/execute), each ``Flush`` (asyncpg prepares a statement
it has not cached with parse/describe/flush) and each simple ``Query``, so their sum is the number of round
trips; ``Execute`` messages plus simple queries are the statements. Prepared
statement names are followed from ``Parse`` to ``Bind``, so :attr:`PgWireCounter.statements` names the SQL of
each statement run, in order (for messages that explain a failed budget).

Connect through it without TLS (``sslmode=disable``): an encrypted stream cannot be read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from support.ports import free_port

_NEGOTIATION_CODES = {80877103, 80877104}  # SSLRequest, GSSENCRequest: more untyped messages follow
_STOP_TIMEOUT = 10.0


class PgWireCounter:
    """Relay ``127.0.0.1:port`` → ``target_host:target_port`` and count the client's protocol messages.

    :meth:`reset` starts a new measurement; :attr:`round_trips` and :attr:`statements` read it. Safe to read
    from another thread than the relay's own.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._round_trips = 0
        self._statements: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None

    # --- measurement -----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget what was counted so far."""
        with self._lock:
            self._round_trips = 0
            self._statements = []

    @property
    def round_trips(self) -> int:
        """``Sync``, ``Flush`` and simple ``Query`` messages since :meth:`reset`: times the client waited."""
        with self._lock:
            return self._round_trips

    @property
    def statements(self) -> list[str]:
        """The SQL of every statement executed since :meth:`reset`, in order (``Execute`` or ``Query``)."""
        with self._lock:
            return list(self._statements)

    # --- relay -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (on a thread with its own event loop) and return once connections are accepted."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", self.port))
                ready.set_result(None)
                loop.run_forever()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="pg-wire-counter", daemon=True)
        self._thread.start()
        ready.result(_STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop listening, cut the relayed connections and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in self._writers:
                writer.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(_STOP_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)
        self._loop = self._thread = None

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}
        tasks = [
            asyncio.create_task(self._frontend(client_reader, server_writer)),
            asyncio.create_task(_pipe(server_reader, client_writer)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for writer in (client_writer, server_writer):
                writer.close()
                self._writers.discard(writer)

    async def _frontend(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay the client's messages one by one, counting them."""
        prepared: dict[bytes, str] = {}
        # Untyped start-up messages (length, code) come first; typed ones (type byte, length) after.
        while True:
            header = await reader.readexactly(4)
            (length,) = struct.unpack("!i", header)
            body = await reader.readexactly(length - 4)
            writer.write(header + body)
            await writer.drain()
            if struct.unpack("!i", body[:4])[0] not in _NEGOTIATION_CODES:
                break
        while True:
            header = await reader.readexactly(5)
            kind = header[:1]
            (length,) = struct.unpack("!i", header[1:])
            body = await reader.readexactly(length - 4)
            writer.write(header + body)
            self._count(kind, body, prepared)
            if kind in (b"S", b"Q", b"H"):  # the client waits after these: pass them on now
                await writer.drain()

    def _count(self, kind: bytes, body: bytes, prepared: dict[bytes, str]) -> None:
        if kind == b"P":  # Parse: statement name, query
            name, query = body.split(b"\0", 2)[:2]
            prepared[name] = query.decode(errors="replace")
        elif kind == b"B":  # Bind: portal name, statement name
            statement = body.split(b"\0", 2)[1]
            prepared[b"\0portal"] = prepared.get(statement, "?")
        elif kind == b"E":
            with self._lock:
                self._statements.append(prepared.get(b"\0portal", "?"))
        elif kind == b"Q":
            with self._lock:
                self._round_trips += 1
                self._statements.append(body.rstrip(b"\0").decode(errors="replace"))
        elif kind in (b"S", b"H"):
            with self._lock:
                self._round_trips += 1


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(1 << 16):
        writer.write(chunk)
        await writer.drain()


@contextmanager
def pg_wire_counter(target_host: str, target_port: int) -> Iterator[PgWireCounter]:
    """A started :class:`PgWireCounter` for the block."""
    counter = PgWireCounter(target_host, target_port)
    counter.start()
    try:
        yield counter
    finally:
        counter.stop()
