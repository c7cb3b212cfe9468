"""What keeps a cluster's pods from running, read from the objects Kubernetes reports it on (pure functions).

A StatefulSet's counts say *that* pods are missing or not ready, not *why*. The why is spread over other
objects, and an administrator should not have to hunt for it:

* a PersistentVolumeClaim stuck ``Pending``: its Warning Events (``ProvisioningFailed``, ``FailedBinding``);
* pods the StatefulSet controller cannot create (an admission webhook, Pod Security, a ResourceQuota): the
  StatefulSet's ``FailedCreate`` Warning Events, while it has fewer pods than replicas;
* a container that cannot start or keeps dying: its ``containerStatuses`` (``state.waiting.reason``
  ``CrashLoopBackOff``, ``ImagePullBackOff``...; ``lastState.terminated.reason`` ``OOMKilled``);
* a pod the scheduler cannot place: its ``PodScheduled=False`` condition with reason ``Unschedulable`` (a
  wait, like a claim still being provisioned: reported once the progress deadline passes).

Each finding is a :class:`~callfs_operator.status.Problem` whose reason is the Kubernetes reason and whose
message names the object (``namespace/name``) and the cause in Kubernetes' own words. Inputs are API dicts
(camelCase, as ``ApiClient.sanitize_for_serialization`` or ``kubectl get -o json`` give them).

The same objects give the cluster's capacity (the sum of its node claims' provisioned ``status.capacity``) and
the version the nodes run (the tag of their pods' ``callfs`` container image).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, cast

from kubernetes.utils import parse_quantity as _parse_quantity

from callfs_operator.status import Problem

WAITING_FAULTS = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
"""``state.waiting.reason`` values of a container that will not run without a human (kubelet's reasons)."""

TERMINATED_FAULTS = frozenset({"OOMKilled", "Error", "ContainerCannotRun", "DeadlineExceeded"})
"""``lastState.terminated.reason`` values reported when such a container is not ready again."""

CLAIM_WARNINGS = frozenset({"ProvisioningFailed", "FailedBinding", "ExternalProvisioning"})
"""Event reasons that explain why a claim is Pending (``ExternalProvisioning`` is Normal while it works)."""

FAULT_REASONS = WAITING_FAULTS | {"OOMKilled", "ClaimPending", "FailedCreate"}
"""Every reason a problem of this module may carry (all are Warnings)."""

NODE_CONTAINER = "callfs"
"""The container of a node pod whose image tag is the running version."""


def _ref(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _events_of(events: Iterable[Mapping[str, Any]], kind: str, name: str) -> list[Mapping[str, Any]]:
    """Events about object ``kind``/``name``, newest first (by ``lastTimestamp``, ``eventTime``)."""
    mine = [e for e in events if (e.get("involvedObject") or {}).get("kind") == kind
            and (e.get("involvedObject") or {}).get("name") == name]
    return sorted(mine, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)


def claim_problems(claims: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """One problem per ``Pending`` claim that has a Warning Event (its newest one), reason ``ClaimPending``.

    A claim Pending with no Warning is still being provisioned or waits for its pod to be scheduled
    (``WaitForFirstConsumer``): not a problem, but a wait (:func:`waits`).
    """
    events = list(events)
    out = []
    for claim in claims:
        if (claim.get("status") or {}).get("phase") != "Pending":
            continue
        name = str((claim.get("metadata") or {}).get("name"))
        warnings = [e for e in _events_of(events, "PersistentVolumeClaim", name) if e.get("type") == "Warning"]
        if warnings:
            event = warnings[0]
            out.append(Problem("ClaimPending", f"PersistentVolumeClaim {_ref(claim)} is Pending: "
                                               f"{event.get('reason')}: {event.get('message')}"))
    return out


def waits(claims: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]],
          events: Iterable[Mapping[str, Any]]) -> list[str]:
    """What pods are waiting for that may well resolve itself, each naming the object: a ``Pending`` claim
    without a Warning (its newest Event says why, e.g. ``ExternalProvisioning``), a pod the scheduler could not
    place yet (it may wait for its claims to bind). They explain ``Progressing``, and become a
    ``ProgressDeadlineExceeded`` message when they last too long."""
    events = list(events)
    out = []
    for claim in sorted(claims, key=lambda c: str((c.get("metadata") or {}).get("name"))):
        if (claim.get("status") or {}).get("phase") != "Pending":
            continue
        name = str((claim.get("metadata") or {}).get("name"))
        mine = _events_of(events, "PersistentVolumeClaim", name)
        if any(e.get("type") == "Warning" for e in mine):
            continue
        why = f": {mine[0].get('reason')}: {mine[0].get('message')}" if mine else ""
        out.append(f"PersistentVolumeClaim {_ref(claim)} is Pending{why}")
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                    and cond.get("reason") == "Unschedulable":
                out.append(f"pod {_ref(pod)} cannot be scheduled: {cond.get('message')}")
    return out


def create_problems(statefulsets: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """One ``FailedCreate`` problem per StatefulSet with fewer pods (``status.replicas``) than
    ``spec.replicas`` whose newest Event is a ``FailedCreate`` Warning (the API server's refusal, verbatim)."""
    events = list(events)
    out = []
    for sts in statefulsets:
        wanted = int((sts.get("spec") or {}).get("replicas", 1))
        have = int((sts.get("status") or {}).get("replicas") or 0)
        if have >= wanted:
            continue
        name = str((sts.get("metadata") or {}).get("name"))
        latest = _events_of(events, "StatefulSet", name)
        if latest and latest[0].get("reason") == "FailedCreate" and latest[0].get("type") == "Warning":
            out.append(Problem("FailedCreate",
                               f"StatefulSet {_ref(sts)} cannot create pods: {latest[0].get('message')}"))
    return out


def pod_problems(pods: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Problems of pods that will not become ready by themselves, in pod order, one per pod: a container
    waiting for a reason of :data:`WAITING_FAULTS` (``OOMKilled`` instead of ``CrashLoopBackOff`` when that is
    how it last died). A pod that cannot be scheduled yet is a wait (:func:`waits`)."""
    out = []
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        found = _container_problem(pod, [*(status.get("initContainerStatuses") or []),
                                         *(status.get("containerStatuses") or [])])
        if found is not None:
            out.append(found)
    return out


def _container_problem(pod: Mapping[str, Any], statuses: Sequence[Mapping[str, Any]]) -> Problem | None:
    for cs in statuses:
        if cs.get("ready"):
            continue
        waiting = (cs.get("state") or {}).get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        reason = waiting.get("reason")
        if reason not in WAITING_FAULTS:
            continue
        where = f"pod {_ref(pod)} container {cs.get('name')}"
        if last.get("reason") in TERMINATED_FAULTS and reason == "CrashLoopBackOff":
            code = last.get("exitCode")
            return Problem(str(last["reason"]) if last["reason"] == "OOMKilled" else "CrashLoopBackOff",
                           f"{where}: {reason}, restarted {cs.get('restartCount', 0)} times, last exit "
                           f"{last['reason']} (code {code})" + (f": {last['message']}" if last.get("message") else ""))
        detail = f": {waiting['message']}" if waiting.get("message") else ""
        return Problem(str(reason), f"{where}: {reason}{detail}")
    return None


def capacity(claims: Iterable[Mapping[str, Any]]) -> str | None:
    """The sum of the provisioned ``status.capacity.storage`` of the bound ``claims`` as a binary quantity
    (``30Gi``; bytes when not a whole number of KiB); ``None`` when none is bound."""
    total = Decimal(0)
    bound = False
    for claim in claims:
        status = claim.get("status") or {}
        size = (status.get("capacity") or {}).get("storage")
        if status.get("phase") == "Bound" and size:
            total += quantity_bytes(size)
            bound = True
    return format_quantity(int(total)) if bound else None


def quantity_bytes(quantity: str) -> Decimal:
    """A Kubernetes quantity (``10Gi``, ``500M``, ``1.5Gi``) as a number of bytes. Raises ``ValueError``."""
    return cast(Decimal, _parse_quantity(quantity))  # type: ignore[no-untyped-call]


def format_quantity(size: int) -> str:
    """``size`` bytes in the largest binary suffix that divides it (``10737418240`` → ``10Gi``)."""
    for suffix, factor in (("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def image_version(image: str) -> str:
    """The version an image reference names: its tag (``...:0.2.0`` → ``0.2.0``), else its short digest, else
    ``latest`` (the registry's default tag)."""
    if "@" in image:
        return image.rsplit("@", 1)[1].removeprefix("sha256:")[:12]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def running_version(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The version (:func:`image_version`) the ready node ``pods`` run; several joined with ``, `` (sorted)
    while a rolling upgrade is under way; ``None`` when no node pod is ready."""
    versions = set()
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        ready = any(cs.get("name") == NODE_CONTAINER and cs.get("ready") for cs in statuses)
        if not ready:
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            if container.get("name") == NODE_CONTAINER and container.get("image"):
                versions.add(image_version(str(container["image"])))
    return ", ".join(sorted(versions)) or None
