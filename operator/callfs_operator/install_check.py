"""``python -m callfs_operator.install_check``: is an installed CallFS release up? (the chart's ``helm test``).

It reads the release's workloads from the Kubernetes API (in-cluster service account, or ``--kubeconfig``) and
waits until each Deployment (``--deployment``, repeatable: the operator, the CSI controller) reports
``Available=True`` and each DaemonSet (``--daemonset``: the CSI node plugin) has a ready pod on every node it
is scheduled to, for at most ``--timeout`` seconds. Exit status 0 when all are up; 1 with one line per
workload that is not (what it lacks), as ``kubectl rollout status`` would say it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes import client as kclient
from kubernetes import config as kconfig

POLL_SECONDS = 2.0


def deployment_problem(name: str, deployment: Any) -> str | None:
    """Why Deployment ``name`` (a ``V1Deployment``, ``None`` when absent) is not up, or ``None`` when it is:
    its ``Available`` condition is ``True`` (``minReadySeconds`` and ``maxUnavailable`` honoured by the
    Deployment controller)."""
    if deployment is None:
        return f"Deployment {name}: not found"
    for condition in (deployment.status and deployment.status.conditions) or []:
        if condition.type == "Available":
            if condition.status == "True":
                return None
            return f"Deployment {name}: not available ({condition.reason}: {condition.message})"
    return f"Deployment {name}: no Available condition yet"


def daemon_set_problem(name: str, daemon_set: Any) -> str | None:
    """Why DaemonSet ``name`` (a ``V1DaemonSet``, ``None`` when absent) is not up, or ``None`` when every node
    it is scheduled to runs a ready pod of it (and it is scheduled to at least one)."""
    if daemon_set is None:
        return f"DaemonSet {name}: not found"
    status = daemon_set.status
    desired = (status and status.desired_number_scheduled) or 0
    ready = (status and status.number_ready) or 0
    if desired == 0:
        return f"DaemonSet {name}: scheduled to no node (check its nodeSelector and tolerations)"
    if ready < desired:
        return f"DaemonSet {name}: {ready}/{desired} pods ready"
    return None


def _read(read: Callable[[str, str], Any], name: str, namespace: str) -> Any:
    try:
        return read(name, namespace)
    except kclient.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def problems(api: kclient.ApiClient, namespace: str, deployments: Sequence[str],
             daemon_sets: Sequence[str]) -> list[str]:
    """One line per workload of ``namespace`` that is not up (empty: all are). Raises
    ``kubernetes.client.ApiException`` on an API error other than not-found (403 included: a missing right is
    not a workload problem)."""
    apps = kclient.AppsV1Api(api)
    found = [deployment_problem(n, _read(apps.read_namespaced_deployment, n, namespace)) for n in deployments]
    found += [daemon_set_problem(n, _read(apps.read_namespaced_daemon_set, n, namespace)) for n in daemon_sets]
    return [p for p in found if p is not None]


def parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m callfs_operator.install_check", description=__doc__.split("\n")[0])
    p.add_argument("--namespace", required=True, help="the release namespace")
    p.add_argument("--deployment", action="append", default=[], help="a Deployment that must be Available")
    p.add_argument("--daemonset", action="append", default=[], help="a DaemonSet that must be ready on every node")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for all to be up")
    p.add_argument("--kubeconfig", help="default: the in-cluster service account")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; the exit status (0: up, 1: not up within ``--timeout``)."""
    args = parser().parse_args(argv)
    if args.kubeconfig:
        api = kconfig.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    else:
        kconfig.load_incluster_config()  # type: ignore[no-untyped-call]
        api = kclient.ApiClient()
    deadline = time.monotonic() + args.timeout
    with api:
        while True:
            found = problems(api, args.namespace, args.deployment, args.daemonset)
            if not found:
                print(f"up: {', '.join(args.deployment + args.daemonset)}")
                return 0
            if time.monotonic() >= deadline:
                print("\n".join(found), file=sys.stderr)
                return 1
            time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
