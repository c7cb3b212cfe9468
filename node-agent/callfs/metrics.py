"""Prometheus metrics of one storage node, in a registry of its own (one per application).

Every metric declared here is recorded somewhere: HTTP middleware (requests, latency, bytes, in-flight),
the engine (backend and metadata latency, lock waits), and the link handlers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The node's metrics. All durations are seconds, all sizes bytes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "callfs_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "callfs_http_request_duration_seconds", "HTTP request latency", ["route", "method"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("callfs_http_requests_in_flight", "HTTP requests being served", registry=r)
        self.bytes_received = Counter("callfs_http_received_bytes", "Request body bytes received", registry=r)
        self.bytes_sent = Counter("callfs_http_sent_bytes", "File bytes sent in responses", registry=r)
        self.backend_seconds = Histogram(
            "callfs_backend_operation_duration_seconds", "Byte backend operation latency",
            ["backend", "operation"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.metadata_seconds = Histogram(
            "callfs_metadata_operation_duration_seconds", "Metadata store operation latency",
            ["operation"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.lock_wait_seconds = Histogram(
            "callfs_lock_wait_seconds", "Time spent waiting to acquire a path lock", ["result"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.links_generated = Counter("callfs_links_generated", "Single-use links generated", registry=r)
        self.links_consumed = Counter(
            "callfs_links_consumed", "Single-use link download attempts", ["result"], registry=r
        )
        self.orphans_swept = Counter(
            "callfs_orphan_blobs_swept", "Unreferenced blobs and temp files removed", ["backend"], registry=r
        )

    @contextmanager
    def time_backend(self, backend: str, operation: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.backend_seconds.labels(backend, operation).observe(time.perf_counter() - start)

    @contextmanager
    def time_metadata(self, operation: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.metadata_seconds.labels(operation).observe(time.perf_counter() - start)

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4)."""
        return generate_latest(self.registry)
