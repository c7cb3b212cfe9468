"""CallFS storage node and client library.

The storage node serves the CallFS v1 REST API (see docs/rest-api.md) over pluggable byte backends,
with metadata in SQLite or PostgreSQL and locks in-process or in Redis.
"""

__version__ = "0.1.0"
