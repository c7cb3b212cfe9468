"""The bytes of files stored in blocks: reading them, writing changed blocks, collecting unreferenced ones.

The engine decides *what* changes (permissions, locks, the metadata transaction); this module does the block
I/O around it. Durability rule for a block write (:meth:`BlockFiles.store_block`):

1. the block is named (SHA-256 of its plaintext) and encoded;
2. its row is **reserved** in the metadata store (created unreferenced, or its time refreshed), which keeps
   the garbage collector away from it for ``grace`` seconds; a block that already has references is stored
   and is not written again;
3. its bytes are written and made durable (local disk: temp file, ``fsync``, rename, directory ``fsync``;
   S3: the PUT returned);
4. the write's metadata transaction references it; that commit fails (nothing changes) if the block is no
   longer reserved or is being collected, so no committed file ever lists a block whose bytes may be gone.

On the local-disk backend with replication (:mod:`callfs.replication`), step 3 writes the block on this node
and on live peers, and returns only once as many nodes as ``backend.replicas`` asks for have made it durable
(else 503, nothing committed); reads take any copy, this node's first. A block of another node's location (a
write here to a file that node owns, which may be down) is written the same way, this node's copy kept among
those it holds for that node: any node writes any file in blocks.

Collection (:meth:`BlockFiles.collect`): a block unreferenced for ``grace`` seconds is *claimed* (from then on
it cannot be reserved or referenced), its bytes are deleted (every copy, when replicated), then its row. A
collection cut short by a crash, or by a node holding a copy being unreachable, is finished by the next one
(claimed rows are claimed again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from callfs.backends.base import Backend
from callfs.blocks import codec
from callfs.blocks.layout import BLOCK_SIZE, BlockPlan
from callfs.blocks.patch import build_blocks
from callfs.blocks.pipeline import Pipeline
from callfs.blocks.reader import BlockFileReader, BlockSource
from callfs.blocks.store import BlockStore
from callfs.errors import ServiceUnavailable
from callfs.metadata.base import MetadataStore
from callfs.metadata.rows import block_location
from callfs.metrics import Metrics
from callfs.models import FileBlock, Inode, Layout, utcnow

if TYPE_CHECKING:
    from callfs.replication import Replication

log = logging.getLogger(__name__)

DEFAULT_GRACE = 3600.0
"""Seconds an unreferenced block is kept before collection (default): covers a write between reserving its
blocks and committing, and a read between listing a file's blocks and fetching them."""

RESERVE_ATTEMPTS = 50
RESERVE_WAIT = 0.1
"""A block being collected is reserved again after the collection ends: tries, and seconds between them."""

COLLECT_BATCH = 500
"""Blocks claimed per round of a collection."""


class BlockFiles:
    """Block I/O of the files of one node. ``grace`` in seconds (see the module docstring)."""

    def __init__(self, store: MetadataStore, metrics: Metrics, *, grace: float = DEFAULT_GRACE,
                 compress: bool = True, replication: Replication | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.grace = grace
        self.compress = compress
        self.replication = replication
        """Copies on several nodes of the local-disk backend's blocks (``None``: one copy, on the owner)."""
        self._stores: dict[str, BlockStore] = {}

    def replicated(self, backend: Backend) -> Replication | None:
        """The replication of ``backend``'s blocks: set for the node-local backend of a node replicating."""
        return self.replication if backend.node_local else None

    def blocks_of(self, backend: Backend) -> BlockStore:
        """The :class:`BlockStore` on ``backend``."""
        found = self._stores.get(backend.name)
        if found is None or found.backend is not backend:
            found = self._stores[backend.name] = BlockStore(backend, self.metrics, compress=self.compress)
        return found

    async def open(self, backend: Backend, inode: Inode) -> BlockFileReader:
        """A reader of the block-layout file ``inode`` (its block list as committed now)."""
        assert inode.layout is Layout.BLOCKS
        replication = self.replicated(backend)
        source: BlockSource = self.blocks_of(backend)
        if replication is not None:
            source = replication.source(backend, block_location(inode.instance_id))
        return BlockFileReader(source, await self.store.file_blocks(inode.ino), inode.size)

    async def store_block(self, backend: Backend, location: str, plaintext: bytes) -> tuple[str, int]:
        """Reserve and durably store one block (steps 1-3 of the module's rule); ``(hash, size)``.

        Raises ``ServiceUnavailable`` when the block stays claimed by a collection or cannot get all its copies,
        and what the backend raises (``InsufficientStorage``...).
        """
        blocks = self.blocks_of(backend)
        encoded = await asyncio.to_thread(codec.encode, plaintext, compress=self.compress)
        for _ in range(RESERVE_ATTEMPTS):
            refs = await self.store.reserve_block(backend.name, location, encoded.hash, encoded.size,
                                                  len(encoded.stored))
            if refs is not None:
                break
            await asyncio.sleep(RESERVE_WAIT)
        else:
            raise ServiceUnavailable(f"block {encoded.hash} is being collected; retry")
        replication = self.replicated(backend)
        if replication is None:
            if refs == 0:
                await blocks.write(encoded)
        elif refs == 0:
            await replication.place(backend, location, encoded)
        else:  # stored already: its copies may be fewer than replicas now asks for
            await replication.top_up(backend, location, encoded)
        return encoded.hash, encoded.size

    async def write_plan(
        self, backend: Backend, current: Inode, plan: BlockPlan, body: AsyncIterator[bytes] | None,
        *, pace: Callable[[int], Awaitable[None]] | None = None,
    ) -> list[FileBlock]:
        """Store the blocks ``plan`` rewrites in the file ``current`` (either layout) on ``backend``; the new
        block list entries. Old bytes come from the current blocks, or from the blob of a file being converted;
        ``pace`` is awaited with the byte count of each block read from a blob (a conversion's rate limit).
        Raises ``BadRequest`` (body length), ``DataCorrupted`` (an old block fails its check)."""
        location = block_location(current.instance_id if backend.node_local else None)
        if current.layout is Layout.BLOCKS:
            reader = await self.open(backend, current)

            async def old_block(index: int) -> bytes:
                return await reader.block(index)

            return await build_blocks(plan, old_block, body, lambda data: self.store_block(backend, location, data))
        assert current.blob_id is not None
        blob = await backend.open(current.blob_id)
        try:
            async def old_blob_block(index: int) -> bytes:
                start = index * BLOCK_SIZE
                length = max(0, min(BLOCK_SIZE, blob.size - start))
                data = b"".join([c async for c in blob.iter_range(start, length, BLOCK_SIZE)])
                if pace is not None:
                    await pace(len(data))
                return data

            return await build_blocks(plan, old_blob_block, body,
                                      lambda data: self.store_block(backend, location, data))
        finally:
            await blob.close()

    async def write_stream(
        self, backend: Backend, location: str, body: AsyncIterator[bytes]
    ) -> tuple[list[FileBlock], int]:
        """Store ``body`` (a whole file) as consecutive blocks of :data:`BLOCK_SIZE` bytes on ``backend``, each
        reserved and stored by :meth:`store_block`, :data:`~callfs.blocks.pipeline.STORE_AHEAD` at once while
        the next is read (memory: that many blocks plus one); its block list and size in bytes. Raises what
        ``body`` and :meth:`store_block` raise; the blocks stored before are left unreferenced."""
        buffer = bytearray()
        async with Pipeline[tuple[str, int]]() as pipeline:
            async for chunk in body:
                view = memoryview(chunk)
                while view:
                    take = min(len(view), BLOCK_SIZE - len(buffer))
                    buffer += view[:take]
                    view = view[take:]
                    if len(buffer) == BLOCK_SIZE:
                        await pipeline.submit(self.store_block(backend, location, bytes(buffer)))
                        buffer.clear()
            if buffer:
                await pipeline.submit(self.store_block(backend, location, bytes(buffer)))
            stored = await pipeline.results()
        blocks = [FileBlock(index, block_hash, length) for index, (block_hash, length) in enumerate(stored)]
        return blocks, sum(length for _, length in stored)

    async def collect(self, backend: Backend, location: str) -> int:
        """Delete the blocks of ``backend``/``location`` unreferenced for ``grace`` seconds; how many."""
        blocks = self.blocks_of(backend)
        replication = self.replicated(backend)
        departed = await replication.departed() if replication is not None else set()
        freed = 0
        while True:
            claimed = await self.store.claim_blocks(backend.name, location, utcnow() - timedelta(seconds=self.grace),
                                                    COLLECT_BATCH)
            stuck = 0
            for block_hash in claimed:
                if replication is not None:
                    if not await replication.free(backend, location, block_hash, departed):
                        stuck += 1  # a copy could not be deleted: the block stays claimed, the next round retries
                        continue
                else:
                    await blocks.delete(block_hash)
                await self.store.forget_block(backend.name, location, block_hash)
            freed += len(claimed) - stuck
            self.metrics.blocks_freed.labels(backend.name).inc(len(claimed) - stuck)
            if len(claimed) < COLLECT_BATCH or stuck:
                return freed
