"""kopf handlers: thin. Parse the spec, build the children, apply them, compute the status, emit Events.

Level-based (an operator that only reacts to events misses what happened while it
was down): ``on.create``, ``on.update`` and ``on.resume`` and a resync timer all run the same
:func:`Reconciler.reconcile`, which converges on the spec whatever the children's state (a deleted or edited
child is restored). Deletion goes through ``on.delete`` (kopf adds the finalizer) and waits while
PersistentVolumes of the CSI driver still use the cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
from kubernetes import client as kclient

from callfs_operator import builders, diagnosis, expansion, names, pruning, rollout, scaling, status
from callfs_operator.apply import ApplyError, Children, Snapshot
from callfs_operator.deletion import blocked_message
from callfs_operator.metrics import OperatorMetrics
from callfs_operator.node_report import PROBE_TIMEOUT, NodeReporter
from callfs_operator.spec import DEFAULT_NODE_IMAGE, Cluster, SpecError, parse_cluster

FINALIZER = "callfs.io/finalizer"
ANNOTATION_PREFIX = "callfs.io"
WARNING_REASONS = {"DeletionBlocked", "InvalidSpec", "ApplyFailed", "SecretNotFound", "SecretKeyMissing",
                   "StorageClassNotFound", "ScaleDownBlocked", "NodesDown", "ProgressDeadlineExceeded",
                   "ExpansionFailed", "StorageShrinkRejected", *diagnosis.FAULT_REASONS}


class Reconciler:
    """Reconciles one ``CallFSCluster`` at a time through :class:`~callfs_operator.apply.Children`.

    ``node_probe`` and ``node_probe_timeout`` (seconds) configure the
    :class:`~callfs_operator.node_report.NodeReporter` that reads the nodes' own view of a cluster;
    ``default_node_image`` is the node image of clusters whose spec pins none.

    The reconcile, the resync timer and the refresh on a child's change may run at once in kopf's worker
    threads: each takes the cluster's lock, and writes the status (and emits the Events of its transitions)
    against the status it has just read from the API server, never against the possibly stale body kopf
    handed over, so a transition is reported once.
    """

    def __init__(self, api: kclient.ApiClient, metrics: OperatorMetrics, *, node_probe: bool = True,
                 node_probe_timeout: float = PROBE_TIMEOUT, default_node_image: str = DEFAULT_NODE_IMAGE) -> None:
        self.children = Children(api)
        self.custom = kclient.CustomObjectsApi(api)
        self.metrics = metrics
        self.reporter = NodeReporter(self.children, timeout=node_probe_timeout, enabled=node_probe)
        self.default_node_image = default_node_image
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def _parse(self, name: str, namespace: str, spec: Mapping[str, Any] | None) -> Cluster:
        return parse_cluster(name, namespace, spec, default_node_image=self.default_node_image)

    def reconcile(self, body: kopf.Body, patch: kopf.Patch, logger: logging.Logger | kopf.Logger) -> None:
        """Apply every child of the cluster in ``body``, prune the ones the spec no longer wants, grow claims,
        and write its status.

        Never raises for a bad spec or a refused child (that is a status, an Event and a log line, not a
        crash loop); API errors of other kinds propagate and kopf retries.
        """
        meta = body.meta
        with self._lock(meta["namespace"], meta["name"]):
            self._reconcile(body, logger)

    def _reconcile(self, body: kopf.Body, logger: logging.Logger | kopf.Logger) -> None:
        started = time.monotonic()
        meta = body.meta
        if meta.get("deletionTimestamp"):
            return
        generation = int(meta.get("generation") or 0)
        try:
            cluster = self._parse(meta["name"], meta["namespace"], body.spec)
        except SpecError as exc:
            reason = str(exc)
            self._publish(meta["namespace"], meta["name"], lambda previous: _invalid(previous, generation, reason))
            self.metrics.reconciled("invalid", time.monotonic() - started)
            return
        replicas = self._replica_plan(cluster, dict(meta.annotations))
        snapshot = self.children.observe(cluster)
        built = builders.children(cluster, self.children.owned_secret_data(cluster), node_replicas=replicas.replicas)
        objs = expansion.keep_claim_templates(built, {
            sts["metadata"]["name"]: sts["spec"].get("volumeClaimTemplates") or [] for sts in snapshot.statefulsets})
        objs = self._gate_rollout(cluster, objs, snapshot)
        # Under deletionPolicy Retain the Secrets outlive the cluster with the data they open: not owned, so
        # the garbage collector leaves them, and a re-created cluster of the same name finds them.
        retain = cluster.spec.deletion_policy == "Retain"
        kopf.adopt([o for o in objs if not (retain and o["kind"] == "Secret")], owner=body)
        problems = [replicas.problem] if replicas.problem else []
        for obj in objs:
            try:
                self.children.apply(obj)
            except ApplyError as exc:
                logger.error("cannot apply %s", exc)
                problems.append(status.Problem("ApplyFailed", str(exc)))
        self._prune(body, cluster, objs, logger)
        for item in expansion.plan(cluster, snapshot.claims)[0]:
            try:
                self.children.expand_claim(cluster.namespace, item.claim, item.size)
                kopf.event(body, type="Normal", reason="ClaimExpanding",
                           message=f"PersistentVolumeClaim {item.claim}: storage request {item.current} -> {item.size}")
            except ApplyError as exc:
                logger.error("cannot expand %s", exc)
                problems.append(status.Problem("ExpansionFailed", str(exc)))
        observed = self._observe(cluster, problems, replicas.replicas, replicas.draining)
        self._publish(cluster.namespace, cluster.name,
                      lambda previous: status.compute(cluster, generation, observed, previous))
        self.metrics.reconciled("degraded" if observed.problems or observed.faults else "ok",
                                time.monotonic() - started)

    def _replica_plan(self, cluster: Cluster, annotations: Mapping[str, str] | None) -> scaling.ReplicaPlan:
        """The node count to apply (:func:`.scaling.plan`), after asking the nodes to drain the pods a
        scale-down removes and to cancel the drains of the pods that stay (asked only while some node pod is
        ready, or a scale-down waits)."""
        live = self.children.workload(cluster.namespace, names.nodes_statefulset(cluster))
        current = live.replicas if live is not None else None
        vouched = scaling.drained_nodes(annotations)
        wanted = scaling.requests(cluster, current, vouched)
        drains = None
        if live is not None and (wanted.drain or live.ready > 0):
            drains = self.reporter.drain(cluster, wanted.drain, wanted.keep)
        return scaling.plan(cluster, current, vouched, drains)

    def _gate_rollout(self, cluster: Cluster, objs: list[dict[str, Any]], snapshot: Snapshot) -> list[dict[str, Any]]:
        """The node StatefulSet in ``objs`` with the partition of :mod:`.rollout` (the nodes' own report is
        asked only while a rollout waits on it)."""
        name = names.nodes_statefulset(cluster)
        live = next((s for s in snapshot.statefulsets if s["metadata"]["name"] == name), None)
        pods = [p for p in snapshot.pods if _has_labels(p, {"app.kubernetes.io/component": names.NODE})]
        out = []
        for obj in objs:
            if obj["kind"] == "StatefulSet" and obj["metadata"]["name"] == name:
                value = rollout.partition(obj, live, pods, None)
                if value != rollout.partition(obj, live, pods, {}):
                    # The pods are ready: the next step waits on the nodes' own word that they are up.
                    value = rollout.partition(obj, live, pods, self.reporter(cluster))
                obj = rollout.gated(obj, value)
            out.append(obj)
        return out

    def _prune(self, body: kopf.Body, cluster: Cluster, objs: list[dict[str, Any]],
               logger: logging.Logger | kopf.Logger) -> None:
        """Delete the children the spec no longer wants (see :mod:`.pruning`), with one Event saying what."""
        found = pruning.unwanted(cluster, objs, self.children.live_children(cluster))
        gone = [u for u in found if u.kept is None and self.children.delete(cluster.namespace, u.kind, u.name)]
        if gone:
            message = pruning.message(cluster, gone + [u for u in found if u.kept is not None])
            logger.info("pruned: %s", message)
            kopf.event(body, type="Normal", reason="Pruned", message=message)

    def refresh(self, namespace: str, name: str) -> None:
        """Recompute the status of cluster ``namespace/name`` from its children, without applying them: called
        when a child StatefulSet changes, so ``Ready`` follows the pods without waiting for the resync timer.
        A cluster that is gone, being deleted, has an invalid spec or whose latest generation has not been
        reconciled yet (``status.observedGeneration`` behind) is left to the main handlers."""
        with self._lock(namespace, name):
            body = self._get(namespace, name)
            if body is None:
                return
            meta = body.get("metadata", {})
            current = body.get("status") or {}
            if meta.get("deletionTimestamp"):
                return
            if current.get("observedGeneration") != meta.get("generation"):
                # The reconcile of this generation has not finished applying the children: reporting on them
                # now would claim the new spec is observed (and maybe Ready) before it is even applied.
                return
            try:
                cluster = self._parse(name, namespace, body.get("spec"))
            except SpecError:
                return
            held = self._replica_plan(cluster, meta.get("annotations"))
            observed = self._observe(cluster, [held.problem] if held.problem else [], held.replicas, held.draining)
            generation = int(meta.get("generation") or 0)
            self._publish(namespace, name, lambda previous: status.compute(cluster, generation, observed, previous),
                          body)

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name))
        except kclient.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _publish(self, namespace: str, name: str, make: Callable[[list[Any]], dict[str, Any]],
                 body: dict[str, Any] | None = None) -> None:
        """Write the status ``make(current conditions)`` computes, reading the current status first (or using
        ``body`` just read), and emit one Event per condition that changed status or reason."""
        body = body if body is not None else self._get(namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return
        current = body.get("status") or {}
        previous = list(current.get("conditions") or [])
        new = make(previous)
        update = {key: new.get(key) for key in STATUS_FIELDS if new.get(key) != current.get(key)}
        if not update:
            return
        self.custom.patch_namespaced_custom_object_status(names.GROUP, names.VERSION, namespace, names.PLURAL, name,
                                                          {"status": update})
        _events(body, previous, new["conditions"])

    def _observe(self, cluster: Cluster, problems: list[status.Problem], target: int,
                 draining: str | None = None) -> status.Observed:
        """The children's state plus ``problems``, ``draining`` (the progress of the drains a scale-down waits
        on), the reference problems of :meth:`Children.problems`, claims the spec would shrink, the faults of
        :mod:`.diagnosis`, and the nodes' own report once some node pod is ready."""
        snapshot = self.children.observe(cluster)
        problems = problems + expansion.plan(cluster, snapshot.claims)[1]
        by_name = {s["metadata"]["name"]: status.Workload.from_statefulset(s) for s in snapshot.statefulsets}
        nodes = by_name.get(names.nodes_statefulset(cluster))
        faults = (diagnosis.claim_problems(snapshot.claims, snapshot.events)
                  + diagnosis.create_problems(snapshot.statefulsets, snapshot.events)
                  + diagnosis.pod_problems(snapshot.pods))
        node_label = {"app.kubernetes.io/component": names.NODE}
        node_pods = [p for p in snapshot.pods if _has_labels(p, node_label)]
        reported = self.reporter(cluster) if nodes is not None and nodes.ready > 0 else None
        return status.Observed(
            nodes=nodes,
            metadata=by_name.get(names.postgres(cluster)) if cluster.spec.metadata.managed else None,
            locks=by_name.get(names.redis(cluster)) if cluster.spec.locks.managed else None,
            problems=tuple(problems + self.children.problems(cluster)),
            reported=reported,
            replication=self.reporter.replication(cluster) if reported is not None else None,
            faults=tuple(faults),
            waits=tuple(diagnosis.waits(snapshot.claims, snapshot.pods, snapshot.events)),
            target_nodes=target,
            draining=draining,
            capacity=diagnosis.capacity(c for c in snapshot.claims if _has_labels(c, node_label)),
            version=diagnosis.running_version(node_pods),
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
            with self._lock(cluster.namespace, cluster.name):
                current = self._get(cluster.namespace, cluster.name) or {}
                previous = list((current.get("status") or {}).get("conditions") or [])
                observed = status.Observed(nodes=None, metadata=None, locks=None, deletion_blocked=message)
                generation = int(body.meta.get("generation") or 0)
                new = status.compute(cluster, generation, observed, previous)
                conditions = [c for c in new["conditions"] if c["type"] == status.PROGRESSING] + [
                    c for c in previous if c.get("type") != status.PROGRESSING]
                patch.status["phase"] = new["phase"]
                patch.status["message"] = new["message"]
                patch.status["conditions"] = conditions
                _events(current or body, previous, conditions)
            raise kopf.TemporaryError(message, delay=retry_delay)
        if cluster.spec.deletion_policy == "Delete":
            deleted = self.children.delete_data_claims(cluster)
            if deleted:
                kopf.event(body, type="Normal", reason="DataDeleted",
                           message=f"deletionPolicy Delete: deleted PersistentVolumeClaims {', '.join(deleted)}")
        logger.info("cluster %s released", names.cluster_ref(cluster))


STATUS_FIELDS = ("observedGeneration", "phase", "message", "readyNodes", "nodes", "endpoint", "capacity", "version",
                 "conditions")
"""The status fields the operator owns (a field the new status lacks is removed)."""


def _has_labels(obj: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _invalid(previous: list[Any], generation: int, message: str) -> dict[str, Any]:
    conditions = [
        {"type": status.READY, "status": "False", "reason": "InvalidSpec", "message": message},
        {"type": status.PROGRESSING, "status": "False", "reason": "InvalidSpec", "message": message},
        {"type": status.DEGRADED, "status": "True", "reason": "InvalidSpec", "message": message},
    ]
    stamped = status.stamp(conditions, previous, generation, _now())
    kept = [c for c in previous if c.get("type") not in {c["type"] for c in stamped}]
    return {"observedGeneration": generation, "phase": "Degraded", "message": message, "conditions": stamped + kept}


def _events(body: Mapping[str, Any], previous: list[Any], new: list[dict[str, Any]]) -> None:
    """One Event on the cluster per condition whose status or reason changed; its reason is the condition's
    reason, Warning when that names a problem."""
    for change in status.transitions(previous, new):
        bad = change["reason"] in WARNING_REASONS or (change["type"] == status.DEGRADED
                                                      and change["status"] == "True")
        kopf.event(cast(kopf.Body, body), type="Warning" if bad else "Normal", reason=change["reason"],
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
        settings.posting.reporting_component = names.MANAGER
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
