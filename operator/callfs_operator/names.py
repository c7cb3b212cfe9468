"""Names, labels and DNS names of a cluster's children: the one place that decides them.

Builders, the apply layer, status and the deletion finalizer all look children up through these functions,
so a rename cannot leave one of them looking for the old name.
"""

from __future__ import annotations

from callfs_operator.spec import Cluster

GROUP = "callfs.io"
VERSION = "v1alpha1"
PLURAL = "callfsclusters"
KIND = "CallFSCluster"
CSI_DRIVER = "csi.callfs.io"
"""The CSI driver whose PersistentVolumes (attribute/parameter ``cluster: <namespace>/<name>``) block deletion."""

MANAGER = "callfs-operator"
NODE = "node"
POSTGRES = "postgres"
REDIS = "redis"

CONFIG_FILE = "config.yaml"
CONFIG_DIR = "/etc/callfs"
TLS_DIR = "/etc/callfs/tls"
DATA_DIR = "/var/lib/callfs"
POSTGRES_PORT = 5432
REDIS_PORT = 6379
POSTGRES_USER = "callfs"
POSTGRES_DB = "callfs"

API_KEY = "api-key"
SERVER_URL = "serverURL"
"""Key of the API-key Secret holding the advertised endpoint (the CSI driver's ``serverURL`` secret)."""
CA_CRT = "ca.crt"
"""Key of the API-key Secret holding a TLS cluster's CA (the CSI driver trusts it)."""
"""Key of the API-key Secret holding the superuser (``root``) key."""
# Secret keys, not secrets:
INTERNAL_PROXY_SECRET = "internal-proxy-secret"  # noqa: S105
LINK_SECRET = "single-use-link-secret"  # noqa: S105
S3_ROOT_ACCESS_KEY_ID = "root"
"""The S3 access key id of the ``root`` user in clusters the operator builds."""
S3_ROOT_SECRET = "s3-root-secret-access-key"  # noqa: S105
"""Key of the internal Secret holding the S3 secret access key of the ``root`` user."""
PASSWORD = "password"  # noqa: S105
DSN = "dsn"
ADDRESS = "address"
CONFIG_HASH_ANNOTATION = "callfs.io/config-hash"


def labels(cluster: Cluster, component: str | None = None) -> dict[str, str]:
    """The labels every child carries; with ``component``, also the selector labels of that component."""
    out = {
        "app.kubernetes.io/name": "callfs",
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/managed-by": MANAGER,
    }
    if component is not None:
        out["app.kubernetes.io/component"] = component
    return out


def selector(cluster: Cluster, component: str) -> dict[str, str]:
    """The pod selector of ``component`` (immutable on a StatefulSet: never add labels here)."""
    return {
        "app.kubernetes.io/name": "callfs",
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/component": component,
    }


def cluster_ref(cluster: Cluster) -> str:
    """``<namespace>/<name>``: how PersistentVolumes and StorageClasses of the CSI driver name the cluster."""
    return f"{cluster.namespace}/{cluster.name}"


def nodes_statefulset(cluster: Cluster) -> str:
    return f"{cluster.name}-node"


def headless_service(cluster: Cluster) -> str:
    return f"{cluster.name}-nodes"


def client_service(cluster: Cluster) -> str:
    return cluster.name


def config_map(cluster: Cluster) -> str:
    return f"{cluster.name}-config"


def api_key_secret(cluster: Cluster) -> str:
    """The Secret holding the root API key: the user's ``auth.apiKeysSecret`` or the generated one."""
    return cluster.spec.auth.api_keys_secret or f"{cluster.name}-api-key"


def internal_secret(cluster: Cluster) -> str:
    return f"{cluster.name}-internal"


def postgres(cluster: Cluster) -> str:
    """Name of the managed PostgreSQL StatefulSet, its Service and its Secret (password + DSN)."""
    return f"{cluster.name}-postgres"


def redis(cluster: Cluster) -> str:
    """Name of the managed Redis StatefulSet, its Service and its Secret (password + address)."""
    return f"{cluster.name}-redis"


def pdb(cluster: Cluster) -> str:
    return f"{cluster.name}-node"


def service_fqdn(cluster: Cluster, service: str) -> str:
    """``<service>.<namespace>.svc.<clusterDomain>``."""
    return f"{service}.{cluster.namespace}.svc.{cluster.spec.cluster_domain}"


def endpoint(cluster: Cluster) -> str:
    """The URL clients and the CSI driver use: the client Service."""
    return f"{cluster.spec.scheme}://{service_fqdn(cluster, client_service(cluster))}:{cluster.spec.port}"


def node_pod_names(cluster: Cluster, replicas: int | None = None) -> list[str]:
    """Pod names of the storage nodes (``<sts>-0`` ..), for ``replicas`` (default: the spec's)."""
    count = cluster.spec.replicas if replicas is None else replicas
    return [f"{nodes_statefulset(cluster)}-{i}" for i in range(count)]
