"""Content-addressed blocks: how a file's bytes are cut, named, compressed and stored.

* :mod:`callfs.blocks.layout`: the fixed block grid (pure arithmetic: which blocks a byte range touches);
* :mod:`callfs.blocks.codec`: the stored form of a block (zstd when it saves space) and its SHA-256 name;
* :mod:`callfs.blocks.store`: blocks on a byte backend (write once, verified on every read);
* :mod:`callfs.blocks.reader`: a file read back from its block list, range by range.

Which blocks make which file, and their reference counts, live in the metadata store
(:mod:`callfs.metadata.rows`); the engine decides when blocks are written and freed.
"""
