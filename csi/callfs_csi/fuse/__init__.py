"""The FUSE client of CallFS (``callfs-mount``): a POSIX view of one volume directory over the REST API.

Modules, one concern each:

* :mod:`.errors` — CallFS errors → ``errno`` (pure).
* :mod:`.options` — mount settings and ``--option KEY=VALUE`` parsing (pure).
* :mod:`.attrs` — :class:`callfs.client.FileInfo` / quota → ``stat`` / ``statvfs`` dicts (pure).
* :mod:`.cache` — attribute cache with a TTL (pure, injectable clock).
* :mod:`.retry` — backoff schedule and deadlines for requests (pure).
* :mod:`.readahead` — 1 MiB block planning and sequential read-ahead per open handle.
* :mod:`.spool` — write buffering in a local temporary file per open file.
* :mod:`.dirty` — the byte ranges an open file changed, and what ``flush`` uploads for them (pure).
* :mod:`.kernel` — capabilities and request sizes asked of the kernel at ``init``; the mount's read-ahead.
* :mod:`.bridge` — one asyncio loop in its own thread driving :class:`callfs.client.CallFSClient`.
* :mod:`.locking` — the mount's lock session (heartbeat) and its ``flock``/``fcntl`` locks on the server.
* :mod:`.fs` — the mfusepy ``Operations`` class mapping POSIX calls onto the API.
* :mod:`.daemon` — daemonisation (own session, double fork) and the readiness pipe.
"""
