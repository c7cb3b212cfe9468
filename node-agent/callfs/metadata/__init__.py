"""Metadata stores: one :class:`~callfs.metadata.base.MetadataStore` protocol, SQLite and PostgreSQL."""

from callfs.metadata.base import MetadataStore, MetadataTxn

__all__ = ["MetadataStore", "MetadataTxn"]
