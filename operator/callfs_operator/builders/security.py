"""What every managed pod (storage nodes, PostgreSQL, Redis) runs with: the Pod Security ``restricted`` profile,
no ServiceAccount token, a writable ``/tmp`` on a read-only root, and resources.

The ``restricted`` profile (https://kubernetes.io/docs/concepts/security/pod-security-standards/) requires
``runAsNonRoot``, ``allowPrivilegeEscalation: false``, every capability dropped and the ``RuntimeDefault`` (or
``Localhost``) seccomp profile; the read-only root filesystem goes beyond it. Each image runs as the user it is
built for: the node image as 65532, the official ``postgres`` image as ``postgres`` (70 in its Alpine variant; the
image's entrypoint supports any uid), the official ``redis`` image as ``redis`` (999, group 1000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callfs_operator.spec import Resources

TMP_VOLUME = "tmp"


@dataclass(frozen=True)
class RunAs:
    """The uid/gid a container runs as; ``gid`` also owns the volumes (``fsGroup``)."""

    uid: int
    gid: int


NODE_USER = RunAs(65532, 65532)
POSTGRES_USER = RunAs(70, 70)
REDIS_USER = RunAs(999, 1000)


def pod_security_context(user: RunAs) -> dict[str, Any]:
    """The pod-level ``securityContext``: non-root ``user``, its group owning the volumes (changed only when the
    volume root does not match: ``OnRootMismatch`` spares a walk of every file at each start)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": user.uid,
        "runAsGroup": user.gid,
        "fsGroup": user.gid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """A container's ``securityContext``: no privilege escalation, no capability, read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def resources(spec: Resources, default: Resources) -> dict[str, Any]:
    """The container's ``resources``: the spec's when it sets any, else ``default`` (so no managed pod runs in
    the BestEffort QoS class, the first evicted under memory pressure)."""
    return spec.manifest() or default.manifest()


def harden(pod_spec: dict[str, Any], user: RunAs, writable: dict[str, str] | None = None) -> dict[str, Any]:
    """``pod_spec`` with the restricted security contexts on it and on each container, no ServiceAccount token,
    and an ``emptyDir`` for each of ``{volume name: path}`` (``/tmp`` always) mounted into every container."""
    dirs = {TMP_VOLUME: "/tmp", **(writable or {})}  # noqa: S108 - a private emptyDir, not the host's /tmp
    containers = []
    for container in pod_spec["containers"]:
        mounts = [*container.get("volumeMounts", []), *({"name": n, "mountPath": p} for n, p in dirs.items())]
        containers.append({**container, "securityContext": container_security_context(), "volumeMounts": mounts})
    volumes = [*pod_spec.get("volumes", []), *({"name": n, "emptyDir": {}} for n in dirs)]
    return {
        **pod_spec,
        "containers": containers,
        "volumes": volumes,
        "securityContext": pod_security_context(user),
        "automountServiceAccountToken": False,
    }
