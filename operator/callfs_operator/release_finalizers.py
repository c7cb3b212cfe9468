"""``python -m callfs_operator.release_finalizers``: take the operator's finalizer off CallFSClusters, for an
operator that is gone for good.

Deleting a CallFSCluster waits for the operator to run its deletion handler (``callfs.io/finalizer``: it checks
that no CSI volume still uses the cluster and, under ``deletionPolicy: Delete``, deletes the data claims). With
the operator uninstalled that never happens, and the CallFSCluster, and a namespace being deleted around it,
stay ``Terminating`` for ever. This command removes the finalizer (nothing else: the other finalizers on the
object are kept) from every CallFSCluster of ``--namespace`` (repeatable) or of every namespace
(``--all-namespaces``); Kubernetes then deletes those already being deleted, and their children with them
(owner references), keeping the data claims (the StatefulSets' claim retention policy). The chart runs it as a
``pre-delete`` hook of ``helm uninstall`` when ``uninstall.releaseFinalizers`` is set.

Prints one line per CallFSCluster released; exit status 0, or 1 after an API error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from kubernetes import client as kclient
from kubernetes import config as kconfig

from callfs_operator import names
from callfs_operator.handlers import FINALIZER


def _clusters(api: kclient.ApiClient, namespaces: Sequence[str]) -> Iterator[dict[str, Any]]:
    custom = kclient.CustomObjectsApi(api)
    if not namespaces:
        found: Any = custom.list_cluster_custom_object(names.GROUP, names.VERSION, names.PLURAL)
        yield from found["items"]
        return
    for namespace in namespaces:
        found = custom.list_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL)
        yield from found["items"]


def release(api: kclient.ApiClient, namespaces: Sequence[str]) -> list[str]:
    """Remove :data:`~callfs_operator.handlers.FINALIZER` from every CallFSCluster of ``namespaces`` (all when
    empty); return their ``<namespace>/<name>``. The patch is a JSON patch that tests the finalizer list first,
    so a list changed meanwhile fails (409/422 ``ApiException``) instead of being overwritten."""
    custom = kclient.CustomObjectsApi(api)
    released = []
    for obj in _clusters(api, namespaces):
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        if FINALIZER not in finalizers:
            continue
        patch = [{"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                 {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in finalizers if f != FINALIZER]}]
        custom.patch_namespaced_custom_object(names.GROUP, names.VERSION, meta["namespace"], names.PLURAL,
                                              meta["name"], patch, _content_type="application/json-patch+json")
        released.append(f"{meta['namespace']}/{meta['name']}")
    return released


def parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m callfs_operator.release_finalizers",
                                description=(__doc__ or "").split("\n")[0])
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--namespace", action="append", help="a namespace whose CallFSClusters to release")
    scope.add_argument("--all-namespaces", action="store_true")
    p.add_argument("--kubeconfig", help="default: the in-cluster service account")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its exit status."""
    args = parser().parse_args(argv)
    if args.kubeconfig:
        api = kconfig.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    else:
        kconfig.load_incluster_config()  # type: ignore[no-untyped-call]
        api = kclient.ApiClient()
    with api:
        try:
            released = release(api, [] if args.all_namespaces else args.namespace)
        except kclient.ApiException as exc:
            print(f"callfs: {exc.status} {exc.reason}: {exc.body}", file=sys.stderr)
            return 1
    for ref in released:
        print(f"released {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
