"""Byte backends: one :class:`~callfs.backends.base.Backend` protocol; ``localfs`` for now."""

from callfs.backends.base import Backend, BackendUnavailable, BlobReader, BlobWriter

__all__ = ["Backend", "BackendUnavailable", "BlobReader", "BlobWriter"]
