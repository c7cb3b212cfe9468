"""kopf handlers: thin. Parse the spec, build the children, apply them, compute the status, emit Events.

Level-based (an operator that only reacts to events misses what happened while it
was down): ``on.create``, ``on.update`` and ``on.resume`` and a resync timer all run the same
:func:`Reconciler.reconcile`, which converges on the spec whatever the children's state (a deleted or edited
child is restored). Deletion goes through ``on.delete`` (kopf adds the finalizer) and waits while
PersistentVolumes of the CSI driver still use the cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client as kclient

from callfs_operator import builders, names, scaling, status
from callfs_operator.apply import ApplyError, Children
from callfs_operator.deletion import blocked_message
from callfs_operator.metrics import OperatorMetrics
from callfs_operator.node_report import PROBE_TIMEOUT, NodeReporter
from callfs_operator.spec import Cluster, SpecError, parse_cluster

FINALIZER = "callfs.io/finalizer"
ANNOTATION_PREFIX = "callfs.io"
WARNING_REASONS = {"DeletionBlocked", "InvalidSpec", "ApplyFailed", "SecretNotFound", "SecretKeyMissing",
                   "StorageClassNotFound", "ScaleDownBlocked", "NodesDown"}


class Reconciler:
    """Reconciles one ``CallFSCluster`` at a time through :class:`~callfs_operator.apply.Children`.

    ``node_probe`` and ``node_probe_timeout`` (seconds) configure the
    :class:`~callfs_operator.node_report.NodeReporter` that reads the nodes' own view of a cluster.
    """

    def __init__(self, api: kclient.ApiClient, metrics: OperatorMetrics, *, node_probe: bool = True,
                 node_probe_timeout: float = PROBE_TIMEOUT) -> None:
        self.children = Children(api)
        self.custom = kclient.CustomObjectsApi(api)
        self.metrics = metrics
        self.reporter = NodeReporter(self.children, timeout=node_probe_timeout, enabled=node_probe)

    def reconcile(self, body: kopf.Body, patch: kopf.Patch, logger: logging.Logger | kopf.Logger) -> None:
        """Apply every child of the cluster in ``body`` and write its status into ``patch``.

        Never raises for a bad spec or a refused child (that is a status, an Event and a log line, not a
        crash loop); API errors of other kinds propagate and kopf retries.
        """
        started = time.monotonic()
        meta, current = body.meta, body.status
        if meta.get("deletionTimestamp"):
            return
        previous = list(current.get("conditions") or [])
        generation = int(meta.get("generation") or 0)
        try:
            cluster = parse_cluster(meta["name"], meta["namespace"], body.spec)
        except SpecError as exc:
            self._invalid(body, patch, previous, generation, str(exc))
            self.metrics.reconciled("invalid", time.monotonic() - started)
            return
        live_nodes = self.children.workload(cluster.namespace, names.nodes_statefulset(cluster))
        replicas = scaling.plan(cluster, live_nodes.replicas if live_nodes else None,
                                scaling.drained_nodes(dict(meta.annotations)))
        objs = builders.children(cluster, self.children.owned_secret_data(cluster), node_replicas=replicas.replicas)
        kopf.adopt(objs, owner=body)
        problems = [replicas.problem] if replicas.problem else []
        for obj in objs:
            try:
                self.children.apply(obj)
            except ApplyError as exc:
                logger.error("cannot apply %s", exc)
                problems.append(status.Problem("ApplyFailed", str(exc)))
        observed = self._observe(cluster, problems)
        new = status.compute(cluster, generation, observed, previous)
        self._write(body, patch, previous, new)
        self.metrics.reconciled("degraded" if observed.problems else "ok", time.monotonic() - started)

    def refresh(self, namespace: str, name: str) -> None:
        """Recompute the status of cluster ``namespace/name`` from its children, without applying them: called
        when a child StatefulSet changes, so ``Ready`` follows the pods without waiting for the resync timer.
        A cluster that is gone, being deleted, has an invalid spec or whose latest generation has not been
        reconciled yet (``status.observedGeneration`` behind) is left to the main handlers."""
        try:
            body = cast(dict[str, Any], self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name))
        except kclient.ApiException as exc:
            if exc.status == 404:
                return
            raise
        meta = body.get("metadata", {})
        current = body.get("status") or {}
        if meta.get("deletionTimestamp"):
            return
        if current.get("observedGeneration") != meta.get("generation"):
            # The reconcile of this generation has not finished applying the children: reporting on them
            # now would claim the new spec is observed (and maybe Ready) before it is even applied.
            return
        try:
            cluster = parse_cluster(name, namespace, body.get("spec"))
        except SpecError:
            return
        live_nodes = self.children.workload(namespace, names.nodes_statefulset(cluster))
        held = scaling.plan(cluster, live_nodes.replicas if live_nodes else None,
                            scaling.drained_nodes(meta.get("annotations")))
        previous = list(current.get("conditions") or [])
        observed = self._observe(cluster, [held.problem] if held.problem else [])
        new = status.compute(cluster, int(meta.get("generation") or 0), observed, previous)
        if {k: v for k, v in current.items() if k in new} == new:
            return
        self.custom.patch_namespaced_custom_object_status(names.GROUP, names.VERSION, namespace, names.PLURAL, name,
                                                          {"status": new})
        self._events(kopf.Body(cast(kopf.RawBody, body)), previous, new)

    def _observe(self, cluster: Cluster, problems: list[status.Problem]) -> status.Observed:
        """The children's state plus ``problems`` and the reference problems of :meth:`Children.problems`, and
        the nodes' own report once some node pod is ready."""
        nodes = self.children.workload(cluster.namespace, names.nodes_statefulset(cluster))
        return status.Observed(
            nodes=nodes,
            metadata=self.children.workload(cluster.namespace, names.postgres(cluster))
            if cluster.spec.metadata.managed else None,
            locks=self.children.workload(cluster.namespace, names.redis(cluster))
            if cluster.spec.locks.managed else None,
            problems=tuple(problems + self.children.problems(cluster)),
            reported=self.reporter(cluster) if nodes is not None and nodes.ready > 0 else None,
        )

    def finalize(self, body: kopf.Body, patch: kopf.Patch, logger: logging.Logger | kopf.Logger,
                 retry_delay: float) -> None:
        """Let the cluster go once no PersistentVolume uses it; then delete its data PVCs under
        ``deletionPolicy: Delete``. Raises ``kopf.TemporaryError`` (retried after ``retry_delay`` seconds)
        while deletion is blocked."""
        cluster = _cluster_for_deletion(body)
        volumes = self.children.volumes_using(cluster)
        if volumes:
            message = blocked_message(names.cluster_ref(cluster), volumes)
            previous = list(body.status.get("conditions") or [])
            observed = status.Observed(nodes=None, metadata=None, locks=None, deletion_blocked=message)
            generation = int(body.meta.get("generation") or 0)
            new = status.compute(cluster, generation, observed, previous)
            new.pop("readyNodes")
            new.pop("nodes")
            new["conditions"] = [c for c in new["conditions"] if c["type"] == status.PROGRESSING] + [
                c for c in previous if c.get("type") != status.PROGRESSING]
            self._write(body, patch, previous, new)
            raise kopf.TemporaryError(message, delay=retry_delay)
        if cluster.spec.deletion_policy == "Delete":
            deleted = self.children.delete_data_claims(cluster)
            if deleted:
                kopf.event(body, type="Normal", reason="DataDeleted",
                           message=f"deletionPolicy Delete: deleted PersistentVolumeClaims {', '.join(deleted)}")
        logger.info("cluster %s released", names.cluster_ref(cluster))

    def _invalid(self, body: kopf.Body, patch: kopf.Patch, previous: list[Any], generation: int,
                 message: str) -> None:
        conditions = [
            {"type": status.READY, "status": "False", "reason": "InvalidSpec", "message": message},
            {"type": status.PROGRESSING, "status": "False", "reason": "InvalidSpec", "message": message},
            {"type": status.DEGRADED, "status": "True", "reason": "InvalidSpec", "message": message},
        ]
        stamped = status.stamp(conditions, previous, generation, _now())
        kept = [c for c in previous if c.get("type") not in {c["type"] for c in stamped}]
        self._write(body, patch, previous, {"observedGeneration": generation, "phase": "Degraded",
                                            "conditions": stamped + kept})

    def _write(self, body: kopf.Body, patch: kopf.Patch, previous: list[Any], new: Mapping[str, Any]) -> None:
        for key, value in new.items():
            patch.status[key] = value
        self._events(body, previous, new)

    @staticmethod
    def _events(body: kopf.Body, previous: list[Any], new: Mapping[str, Any]) -> None:
        """One Event on the cluster per condition whose status or reason changed."""
        for change in status.transitions(previous, new["conditions"]):
            bad = change["reason"] in WARNING_REASONS or (change["type"] == status.DEGRADED
                                                          and change["status"] == "True")
            kopf.event(body, type="Warning" if bad else "Normal", reason=change["reason"],
                       message=f"{change['type']}={change['status']}: {change['message']}")


def _cluster_for_deletion(body: kopf.Body) -> Cluster:
    """The cluster being deleted; its spec may be invalid, then only the name and deletion policy count."""
    meta = body.meta
    try:
        return parse_cluster(meta["name"], meta["namespace"], body.spec)
    except SpecError:
        policy = body.spec.get("deletionPolicy")
        fallback = {"deletionPolicy": policy} if policy in ("Retain", "Delete") else {}
        return parse_cluster(meta["name"], meta["namespace"], fallback)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler, connection: kopf.ConnectionInfo,
             resync_interval: float) -> None:
    """Register the operator's handlers in ``registry``.

    ``connection`` is how kopf reaches the API server (the same credentials as the reconciler's client);
    ``resync_interval`` (seconds) is the drift timer's period and the retry delay of a blocked deletion.
    """
    resource = (names.GROUP, names.VERSION, names.PLURAL)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # Our CRD's status schema is strict: keep kopf's bookkeeping in annotations, not in status.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
        # Events are ours (one per condition transition and error), not a copy of every log line.
        settings.posting.level = logging.ERROR
        settings.execution.max_workers = 8

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, registry=registry)
    def on_change(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        reconciler.reconcile(body, patch, logger)

    @kopf.timer(*resource, interval=resync_interval, registry=registry)
    def resync(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        reconciler.reconcile(body, patch, logger)

    @kopf.on.event("apps", "v1", "statefulsets", labels={"app.kubernetes.io/managed-by": names.MANAGER},
                   registry=registry)
    def on_child_change(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
        owner = labels.get("app.kubernetes.io/instance")
        if owner and namespace:
            reconciler.refresh(namespace, owner)

    @kopf.on.delete(*resource, registry=registry)
    def on_delete(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        reconciler.finalize(body, patch, logger, resync_interval)
