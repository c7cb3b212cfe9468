"""Prometheus metrics of one storage node, in a registry of its own (one per application).

A node served by several worker processes (``server.workers``) runs prometheus-client in its multiprocess mode:
the supervisor gives every worker the same per-node directory in ``PROMETHEUS_MULTIPROC_DIR``, each worker's
values live in memory-mapped files there, and :meth:`Metrics.render` sums them over the workers (counters and
histograms over every worker that ever ran, gauges over the live ones), so ``/metrics`` of any worker shows the
node's totals.

Every metric declared here is recorded somewhere: HTTP middleware (requests, latency, bytes, in-flight, errors),
the engine (file operations, backend and metadata latency, locks), and the link handlers.

The node also exports the metric names of CallFS v1 (``callfs_backend_ops_total``,
``callfs_backend_op_duration_seconds``, ``callfs_metadata_db_queries_total``,
``callfs_metadata_db_query_duration_seconds``, ``callfs_single_use_link_generations_total``,
``callfs_single_use_link_consumptions_total``, ``callfs_lock_operations_total``,
``callfs_lock_operation_duration_seconds``, ``callfs_active_locks``, ``callfs_file_operations_total``,
``callfs_errors_total``; ``callfs_http_requests_total`` and ``callfs_http_request_duration_seconds`` carry its
label names), so dashboards written for it keep working. Each is recorded by the same helper that records the
node's own series for the same event.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from callfs.errors import CallFSError

V1_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""The buckets of the CallFS v1 histograms (Prometheus' defaults), seconds."""

LINK_STATUSES = ("success", "expired", "invalid", "not_found")
"""Values of ``status`` on ``callfs_single_use_link_consumptions_total``."""

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that switches prometheus-client to its multiprocess mode (read when it is imported)."""

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The node's metrics. All durations are seconds, all sizes bytes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "callfs_http_requests", "HTTP requests answered", ["method", "path", "status_code"], registry=r
        )
        self.request_seconds = Histogram(
            "callfs_http_request_duration_seconds", "HTTP request latency", ["method", "path"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        # Gauges of a multi-worker node are the sum over its live workers.
        self.in_flight = Gauge("callfs_http_requests_in_flight", "HTTP requests being served", registry=r,
                               multiprocess_mode="livesum")
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
        # The names and labels of CallFS v1.
        self.backend_ops = Counter(
            "callfs_backend_ops", "Backend operations", ["backend_type", "operation"], registry=r
        )
        self.backend_op_seconds = Histogram(
            "callfs_backend_op_duration_seconds", "Backend operation duration in seconds",
            ["backend_type", "operation"], buckets=V1_BUCKETS, registry=r,
        )
        self.metadata_queries = Counter(
            "callfs_metadata_db_queries", "Metadata database queries", ["operation"], registry=r
        )
        self.metadata_query_seconds = Histogram(
            "callfs_metadata_db_query_duration_seconds", "Metadata database query duration in seconds",
            ["operation"], buckets=V1_BUCKETS, registry=r,
        )
        self.link_generations = Counter(
            "callfs_single_use_link_generations", "Single-use links generated", registry=r
        )
        self.link_consumptions = Counter(
            "callfs_single_use_link_consumptions", "Single-use link consumption attempts", ["status"], registry=r
        )
        self.lock_operations = Counter(
            "callfs_lock_operations", "Lock operations", ["operation", "status"], registry=r
        )
        self.lock_operation_seconds = Histogram(
            "callfs_lock_operation_duration_seconds", "Lock operation duration in seconds", ["operation"],
            buckets=V1_BUCKETS, registry=r,
        )
        self.active_locks = Gauge("callfs_active_locks", "Path locks held by this node", registry=r,
                                  multiprocess_mode="livesum")
        self.file_operations = Counter(
            "callfs_file_operations", "File and directory operations", ["operation", "backend_type"], registry=r
        )
        self.errors = Counter("callfs_errors", "Errors by component", ["component", "error_type"], registry=r)
        # Blocks: callfs_block_stored_bytes / callfs_block_plain_bytes is the compression ratio.
        self.block_plain_bytes = Counter(
            "callfs_block_plain_bytes", "Plaintext bytes of the blocks written", ["backend"], registry=r
        )
        self.block_stored_bytes = Counter(
            "callfs_block_stored_bytes", "Bytes stored for the blocks written (after compression)", ["backend"],
            registry=r,
        )
        self.blocks_written = Counter(
            "callfs_blocks_written", "Blocks written, by stored codec", ["backend", "codec"], registry=r
        )
        self.block_read_errors = Counter(
            "callfs_block_read_errors", "Block reads refused: missing, undecodable or failing their SHA-256 check",
            ["backend"], registry=r,
        )
        self.blocks_freed = Counter(
            "callfs_blocks_freed", "Blocks deleted because no file references them", ["backend"], registry=r
        )
        # Replicas of the local-disk backend's blocks (callfs.replication, callfs.repair).
        self.blocks_under_replicated = Gauge(
            "callfs_blocks_under_replicated",
            "Blocks this node repairs that have fewer live copies than backend.replicas (last repair pass)",
            ["backend"], registry=r, multiprocess_mode="livesum",
        )
        self.block_repair_backlog = Gauge(
            "callfs_block_repair_backlog",
            "Under-replicated blocks left after the last repair pass (node down within the grace, or no target)",
            ["backend"], registry=r, multiprocess_mode="livesum",
        )
        self.blocks_repaired = Counter(
            "callfs_blocks_repaired", "Block copies made by the repair job", ["backend"], registry=r
        )
        self.block_repaired_bytes = Counter(
            "callfs_block_repaired_bytes", "Stored bytes copied by the repair job", ["backend"], registry=r
        )
        self.block_scrubbed_bytes = Counter(
            "callfs_block_scrubbed_bytes", "Stored bytes of local block copies re-hashed by the scrub", ["backend"],
            registry=r,
        )
        self.block_scrub_errors = Counter(
            "callfs_block_scrub_errors", "Local block copies the scrub found corrupt", ["backend"], registry=r
        )
        self.block_scrub_repairs = Counter(
            "callfs_block_scrub_repairs", "Corrupt local block copies replaced from a good copy", ["backend"],
            registry=r,
        )
        # Conversion of files stored as one blob to blocks (callfs.convert).
        self.blob_files_converted = Counter(
            "callfs_blob_files_converted", "Files converted from one blob to blocks", ["backend"], registry=r
        )
        self.blob_bytes_converted = Counter(
            "callfs_blob_bytes_converted", "Bytes of files converted from one blob to blocks", ["backend"],
            registry=r,
        )
        self.blob_conversion_failures = Counter(
            "callfs_blob_conversion_failures",
            "Conversions of a blob file that failed (tried again next pass); a file changed meanwhile is not one",
            ["backend"], registry=r,
        )
        self.blob_conversion_throttled_seconds = Counter(
            "callfs_blob_conversion_throttled_seconds",
            "Seconds the conversion paused to keep to backend.convert_bytes_per_second", registry=r,
        )
        self.blob_files_unconverted = Gauge(
            "callfs_blob_files_unconverted",
            "Files still stored as one blob that this node converts (counted when a pass ends)",
            ["backend"], registry=r, multiprocess_mode="mostrecent",
        )
        self.blob_bytes_unconverted = Gauge(
            "callfs_blob_bytes_unconverted",
            "Bytes of the files still stored as one blob that this node converts (counted when a pass ends)",
            ["backend"], registry=r, multiprocess_mode="mostrecent",
        )
        self.background_jobs = Gauge(
            "callfs_background_jobs", "Background jobs running on this node (1 each: they run in one worker)",
            ["job"], registry=r, multiprocess_mode="livesum",
        )

    @contextmanager
    def time_backend(self, backend: str, operation: str) -> Iterator[None]:
        """Time the body as one ``operation`` of the byte backend ``backend`` (``localfs``, ``s3``); an
        exception out of the body also counts as a ``backend`` error named by its type."""
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self.error("backend", type(exc).__name__)
            raise
        finally:
            elapsed = time.perf_counter() - start
            self.backend_seconds.labels(backend, operation).observe(elapsed)
            self.backend_ops.labels(backend, operation).inc()
            self.backend_op_seconds.labels(backend, operation).observe(elapsed)

    @contextmanager
    def time_metadata(self, operation: str) -> Iterator[None]:
        """Time the body as one metadata store ``operation``; an exception out of the body other than a
        deliberate :class:`~callfs.errors.CallFSError` also counts as a ``metadata`` error."""
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            if not isinstance(exc, CallFSError):
                self.error("metadata", type(exc).__name__)
            raise
        finally:
            elapsed = time.perf_counter() - start
            self.metadata_seconds.labels(operation).observe(elapsed)
            self.metadata_queries.labels(operation).inc()
            self.metadata_query_seconds.labels(operation).observe(elapsed)

    def lock_acquired(self, seconds: float) -> None:
        """A path lock was acquired after waiting ``seconds``; it is now held."""
        self.lock_wait_seconds.labels("acquired").observe(seconds)
        self.lock_operations.labels("acquire", "success").inc()
        self.lock_operation_seconds.labels("acquire").observe(seconds)
        self.active_locks.inc()

    def lock_failed(self, seconds: float, *, timeout: bool) -> None:
        """Acquiring a path lock failed after ``seconds`` (``timeout``: it stayed held by another holder)."""
        if timeout:
            self.lock_wait_seconds.labels("timeout").observe(seconds)
        self.lock_operations.labels("acquire", "failure").inc()
        self.lock_operation_seconds.labels("acquire").observe(seconds)

    def lock_released(self, seconds: float, *, ok: bool) -> None:
        """A held path lock was released in ``seconds`` (``ok`` false: releasing it failed)."""
        self.lock_operations.labels("release", "success" if ok else "failure").inc()
        self.lock_operation_seconds.labels("release").observe(seconds)
        self.active_locks.dec()

    def file_operation(self, operation: str, backend: str) -> None:
        """One file-system operation (``create``, ``read``, ``update``, ``delete``, ``move``, ``copy``, ``list``)
        on an entry stored with ``backend``."""
        self.file_operations.labels(operation, backend).inc()

    def link_generated(self) -> None:
        """A single-use link was minted."""
        self.links_generated.inc()
        self.link_generations.inc()

    def link_consumed(self, result: str, status: str) -> None:
        """A single-use link download attempt: ``result`` as the node names it (``ok``, ``NotFound``,
        ``LinkExpired``, ``LinkContentChanged``), ``status`` one of :data:`LINK_STATUSES`."""
        self.links_consumed.labels(result).inc()
        self.link_consumptions.labels(status).inc()

    def error(self, component: str, error_type: str) -> None:
        """An error in ``component`` (``http``, ``backend``, ``metadata``) of kind ``error_type``."""
        self.errors.labels(component, error_type).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4): this registry's values, or in multiprocess mode the
        node's totals over its workers (read from the files in ``PROMETHEUS_MULTIPROC_DIR``)."""
        directory = os.environ.get(MULTIPROC_DIR_ENV)
        if not directory:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
