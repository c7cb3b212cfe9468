"""The I/O shell: reads the cluster's children and references, applies the builders' manifests, deletes data.

Children are applied with server-side apply (field manager ``callfs-operator``, ``force``): the API server
merges our fields into the live object, so a user's edit of a field we set is reverted on the next apply while
fields we never set (added by other controllers) stay. An unchanged object is not rewritten.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as kclient

from callfs_operator import deletion, names
from callfs_operator.builders import secrets
from callfs_operator.spec import Cluster
from callfs_operator.status import Problem, Workload

log = logging.getLogger(__name__)

_PATHS = {
    ("v1", "Secret"): "/api/v1/namespaces/{namespace}/secrets/{name}",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{namespace}/configmaps/{name}",
    ("v1", "Service"): "/api/v1/namespaces/{namespace}/services/{name}",
    ("apps/v1", "StatefulSet"): "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}",
}
"""API path of each kind the builders produce."""


@dataclass
class Snapshot:
    """What :meth:`Children.observe` read: API dicts of the cluster's StatefulSets, pods, claims and the Events
    that may explain their faults."""

    statefulsets: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    claims: list[dict[str, Any]]
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class ApplyError(Exception):
    """The API server refused a child; the message names the object and the server's reason."""


def object_path(obj: Mapping[str, Any]) -> str:
    """The API path of ``obj`` (``apiVersion``/``kind``/``metadata.namespace``/``metadata.name``).

    Raises ``KeyError`` for a kind the operator does not manage.
    """
    meta = obj["metadata"]
    return _PATHS[(obj["apiVersion"], obj["kind"])].format(namespace=meta["namespace"], name=meta["name"])


class Children:
    """Access to one cluster's namespace through a ``kubernetes.client.ApiClient`` (synchronous)."""

    def __init__(self, api: kclient.ApiClient) -> None:
        self.api = api
        self.core = kclient.CoreV1Api(api)
        self.apps = kclient.AppsV1Api(api)
        self.storage = kclient.StorageV1Api(api)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj``; returns the live object. Raises :class:`ApplyError` when refused."""
        method, url, headers, body, post = self.api.param_serialize(
            method="PATCH", resource_path=object_path(obj),
            query_params=[("fieldManager", names.MANAGER), ("force", "true")],
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            body=dict(obj), auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, header_params=headers, body=body, post_params=post)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:
            raise ApplyError(f"{obj['kind']} {obj['metadata']['name']}: {_message(data, response.status)}")
        return json.loads(data)  # type: ignore[no-any-return]

    def _plain(self, model: Any) -> Any:
        """A kubernetes model (or list of them) as plain API dicts (camelCase keys)."""
        return self.api.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The plain (decoded) data of Secret ``name``, ``None`` when it does not exist."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except kclient.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw = secret.data or {}
        return secrets.decode({k: v.decode() if isinstance(v, bytes) else v for k, v in raw.items()})

    def owned_secret_data(self, cluster: Cluster) -> dict[str, dict[str, str]]:
        """Current data of the Secrets the operator generates for ``cluster``, and of its TLS Secret (whose CA the
        API-key Secret carries); absent ones left out."""
        out = {}
        tls = [cluster.spec.tls.secret_name] if cluster.spec.tls is not None else []
        for name in (names.api_key_secret(cluster), names.internal_secret(cluster), names.postgres(cluster),
                     names.redis(cluster), *tls):
            data = self.secret_data(cluster.namespace, name)
            if data is not None:
                out[name] = data
        return out

    def workload(self, namespace: str, name: str) -> Workload | None:
        """The state of StatefulSet ``name``; ``None`` when it does not exist."""
        try:
            sts = self.apps.read_namespaced_stateful_set(name, namespace)
        except kclient.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return Workload.from_statefulset(self._plain(sts))

    def problems(self, cluster: Cluster) -> list[Problem]:
        """Spec problems the CRD schema cannot see: missing referenced Secrets or keys, unknown StorageClasses.

        Each message names the spec field (``spec.auth.apiKeysSecret``...).
        """
        spec = cluster.spec
        wanted: list[tuple[str, str, list[str]]] = []
        if spec.auth.api_keys_secret is not None:
            wanted.append(("spec.auth.apiKeysSecret", spec.auth.api_keys_secret, [names.API_KEY]))
        if spec.metadata.external_secret is not None:
            ref = spec.metadata.external_secret
            wanted.append(("spec.metadata.externalSecret", ref.name, [ref.key]))
        if spec.locks.external_secret is not None:
            wanted.append(("spec.locks.externalSecret", spec.locks.external_secret.name,
                           [spec.locks.external_secret.address_key]))
        if spec.backend.credentials_secret is not None:
            wanted.append(("spec.backend.credentialsSecret", spec.backend.credentials_secret,
                           ["accessKey", "secretKey"]))
        if spec.tls is not None:
            wanted.append(("spec.tls.secretName", spec.tls.secret_name, ["tls.crt", "tls.key"]))
        out = []
        for field, name, keys in wanted:
            data = self.secret_data(cluster.namespace, name)
            if data is None:
                out.append(Problem("SecretNotFound", f"{field}: Secret {cluster.namespace}/{name} does not exist",
                                   field=field))
                continue
            missing = [k for k in keys if not data.get(k)]
            if missing:
                out.append(Problem("SecretKeyMissing",
                                   f"{field}: Secret {cluster.namespace}/{name} has no key {', '.join(missing)}",
                                   field=field))
        classes = [("spec.storage.storageClassName", spec.storage.storage_class_name)]
        if spec.metadata.managed:
            classes.append(("spec.metadata.storage.storageClassName",
                            spec.metadata.effective_storage.storage_class_name))
        if spec.locks.managed:
            classes.append(("spec.locks.storage.storageClassName", spec.locks.effective_storage.storage_class_name))
        for field, class_name in classes:
            if class_name is None:
                continue
            try:
                self.storage.read_storage_class(class_name)
            except kclient.ApiException as exc:
                if exc.status != 404:
                    raise
                out.append(Problem("StorageClassNotFound", f"{field}: StorageClass {class_name} does not exist",
                                   field=field))
        return out

    def observe(self, cluster: Cluster) -> Snapshot:
        """The cluster's StatefulSets, pods and claims (API dicts), plus the Events of those that may explain a
        fault (Pending claims, StatefulSets short of pods); see :mod:`callfs_operator.diagnosis`."""
        selector = _cluster_selector(cluster)
        ns = cluster.namespace
        snap = Snapshot(
            statefulsets=self._plain(self.apps.list_namespaced_stateful_set(ns, label_selector=selector).items),
            pods=self._plain(self.core.list_namespaced_pod(ns, label_selector=selector).items),
            claims=self._plain(self.core.list_namespaced_persistent_volume_claim(ns, label_selector=selector).items),
        )
        kinds = []
        if any((c.get("status") or {}).get("phase") == "Pending" for c in snap.claims):
            kinds.append("PersistentVolumeClaim")
        if any(int((s.get("status") or {}).get("replicas") or 0) < int(s["spec"].get("replicas", 1))
               for s in snap.statefulsets):
            kinds.append("StatefulSet")
        for kind in kinds:
            snap.events += self._plain(self.core.list_namespaced_event(
                ns, field_selector=f"involvedObject.kind={kind}").items)
        return snap

    def live_children(self, cluster: Cluster) -> list[tuple[str, dict[str, Any]]]:
        """``(kind, API dict)`` of every object of :data:`.pruning.PRUNABLE_KINDS` labelled as this cluster's
        child by the operator."""
        selector = f"{_cluster_selector(cluster)},app.kubernetes.io/managed-by={names.MANAGER}"
        ns = cluster.namespace
        policy = kclient.PolicyV1Api(self.api)
        lists = (
            ("StatefulSet", self.apps.list_namespaced_stateful_set),
            ("Service", self.core.list_namespaced_service),
            ("ConfigMap", self.core.list_namespaced_config_map),
            ("Secret", self.core.list_namespaced_secret),
            ("PodDisruptionBudget", policy.list_namespaced_pod_disruption_budget),
        )
        return [(kind, item) for kind, list_fn in lists
                for item in self._plain(list_fn(ns, label_selector=selector).items)]

    def delete(self, namespace: str, kind: str, name: str) -> bool:
        """Delete child ``kind``/``name`` (a kind of :data:`.pruning.PRUNABLE_KINDS`); ``False`` when it was
        already gone."""
        policy = kclient.PolicyV1Api(self.api)
        delete = {
            "StatefulSet": self.apps.delete_namespaced_stateful_set,
            "Service": self.core.delete_namespaced_service,
            "ConfigMap": self.core.delete_namespaced_config_map,
            "Secret": self.core.delete_namespaced_secret,
            "PodDisruptionBudget": policy.delete_namespaced_pod_disruption_budget,
        }[kind]
        try:
            delete(name, namespace)
        except kclient.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def expand_claim(self, namespace: str, name: str, size: str) -> None:
        """Set the storage request of claim ``name`` to ``size``. Raises :class:`ApplyError` with the API
        server's reason when refused (e.g. its StorageClass does not allow volume expansion)."""
        try:
            self.core.patch_namespaced_persistent_volume_claim(
                name, namespace, {"spec": {"resources": {"requests": {"storage": size}}}})
        except kclient.ApiException as exc:
            if exc.status in (403, 404) or exc.status is None or exc.status >= 500:
                raise
            raise ApplyError(f"PersistentVolumeClaim {name}: {_message(exc.body or b'', exc.status)}") from exc

    def volumes_using(self, cluster: Cluster) -> list[str]:
        """PersistentVolumes of the CSI driver that still use ``cluster`` (see :mod:`.deletion`)."""
        volumes = self._plain(self.core.list_persistent_volume().items)
        classes = {sc["metadata"]["name"]: sc for sc in self._plain(self.storage.list_storage_class().items)}
        return deletion.volumes_using(names.cluster_ref(cluster), volumes, classes)

    def delete_data_claims(self, cluster: Cluster) -> list[str]:
        """Delete every PVC of the cluster's StatefulSets (nodes, PostgreSQL, Redis); returns their names."""
        selector = _cluster_selector(cluster)
        claims = self.core.list_namespaced_persistent_volume_claim(cluster.namespace, label_selector=selector).items
        deleted: list[str] = []
        for claim in self._plain(claims):
            name = str(claim["metadata"]["name"])
            try:
                self.core.delete_namespaced_persistent_volume_claim(name, cluster.namespace)
                deleted.append(name)
            except kclient.ApiException as exc:
                if exc.status != 404:
                    raise
        return sorted(deleted)


def _cluster_selector(cluster: Cluster) -> str:
    return f"app.kubernetes.io/name=callfs,app.kubernetes.io/instance={cluster.name}"


def _message(data: bytes | str, code: int) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, else the HTTP status code."""
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        body = {}
    return str(body.get("message") if isinstance(body, dict) and body.get("message") else f"HTTP {code}")
