"""Prometheus metrics of the operator (a registry of its own, served by ``callfs-operator --metrics-port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class OperatorMetrics:
    """``callfs_operator_reconciles_total{result}`` (ok, degraded, invalid) and
    ``callfs_operator_reconcile_seconds`` (wall time of one reconcile, seconds)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter("callfs_operator_reconciles", "Reconciles of CallFSClusters by result",
                                  ["result"], registry=self.registry)
        self.duration = Histogram("callfs_operator_reconcile_seconds", "Wall time of one reconcile (seconds)",
                                  registry=self.registry)

    def reconciled(self, result: str, seconds: float) -> None:
        """Record one reconcile that ended with ``result`` after ``seconds``."""
        self.reconciles.labels(result=result).inc()
        self.duration.observe(seconds)
