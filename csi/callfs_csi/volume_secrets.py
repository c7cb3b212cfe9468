"""Delivering per-volume keys to Kubernetes nodes: one Secret per volume, written and deleted by the controller.

The StorageClass names ``callfs-volume-${pv.name}`` in the controller's namespace as the node-stage secret
(``csi.storage.k8s.io/node-stage-secret-name``/``-namespace``); external-provisioner records that reference on
the PersistentVolume, and kubelet reads the Secret (the node authorizer lets it read only Secrets of volumes its
pods use) and passes its data to ``NodeStageVolume``. So nodes never hold the root key.

The controller needs ``create``, ``patch`` and ``delete`` on Secrets of its namespace, and no ``get``/``list``:
it cannot read the Secrets it writes, nor any other. The Kubernetes client is synchronous; its calls run in a
worker thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Final, Protocol

from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from callfs_csi.errors import Internal, Unavailable

__all__ = ["KubernetesVolumeSecrets", "VolumeSecrets", "secret_manifest"]

MANAGED_BY: Final = "callfs-csi"
VOLUME_LABEL: Final = "csi.callfs.io/volume"
_LABEL_VALUE: Final = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class VolumeSecrets(Protocol):
    """Where the controller puts each volume's credentials for the nodes."""

    async def put(self, name: str, volume: str, data: Mapping[str, str]) -> None:
        """Create or overwrite Secret ``name`` of volume ``volume`` with ``data``."""

    async def delete(self, name: str) -> None:
        """Delete Secret ``name``; one already gone is no error."""


def secret_manifest(name: str, volume: str, data: Mapping[str, str]) -> kclient.V1Secret:
    """The Secret object (``type: Opaque``, ``stringData``), labelled with ``managed-by`` and, when the volume
    name can be a label value, its volume."""
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY}
    if _LABEL_VALUE.match(volume):
        labels[VOLUME_LABEL] = volume
    return kclient.V1Secret(api_version="v1", kind="Secret", type="Opaque",
                            metadata=kclient.V1ObjectMeta(name=name, labels=labels), string_data=dict(data))


class KubernetesVolumeSecrets:
    """:class:`VolumeSecrets` as Secrets in ``namespace`` through the Kubernetes API.

    ``api``: a configured client; ``None`` loads the in-cluster configuration (the pod's ServiceAccount), else
    ``KUBECONFIG``/``~/.kube/config``.

    Raises (from the constructor):
        Internal: no Kubernetes configuration can be loaded.
    """

    def __init__(self, namespace: str, api: kclient.ApiClient | None = None) -> None:
        self.namespace = namespace
        if api is None:
            try:
                kconfig.load_incluster_config()  # type: ignore[no-untyped-call]
            except ConfigException:
                try:
                    kconfig.load_kube_config()  # type: ignore[no-untyped-call]
                except (ConfigException, OSError) as exc:
                    raise Internal(f"no Kubernetes configuration for volume Secrets: {exc}") from exc
            api = kclient.ApiClient()
        self.core = kclient.CoreV1Api(api)

    async def put(self, name: str, volume: str, data: Mapping[str, str]) -> None:
        """Create Secret ``name``, or patch it when it exists (a retried ``CreateVolume``).

        Raises:
            Unavailable: the API server refused or could not be reached (the CO retries).
        """
        await asyncio.to_thread(self._put, name, secret_manifest(name, volume, data))

    def _put(self, name: str, body: kclient.V1Secret) -> None:
        try:
            self.core.create_namespaced_secret(self.namespace, body)
        except kclient.ApiException as exc:
            if exc.status != 409:
                raise _unavailable("create", name, exc) from exc
        except HTTPError as exc:
            raise _unavailable("create", name, exc) from exc
        else:
            return
        try:
            self.core.patch_namespaced_secret(name, self.namespace, body)
        except (kclient.ApiException, HTTPError) as exc:
            raise _unavailable("patch", name, exc) from exc

    async def delete(self, name: str) -> None:
        """Delete Secret ``name`` (404 is success).

        Raises:
            Unavailable: the API server refused or could not be reached (the CO retries).
        """
        await asyncio.to_thread(self._delete, name)

    def _delete(self, name: str) -> None:
        try:
            self.core.delete_namespaced_secret(name, self.namespace)
        except kclient.ApiException as exc:
            if exc.status != 404:
                raise _unavailable("delete", name, exc) from exc
        except HTTPError as exc:
            raise _unavailable("delete", name, exc) from exc


def _unavailable(verb: str, name: str, exc: Exception) -> Unavailable:
    if isinstance(exc, kclient.ApiException):
        return Unavailable(f"cannot {verb} Secret {name}: HTTP {exc.status} {exc.reason}")
    return Unavailable(f"cannot {verb} Secret {name}: {exc}")
