"""Pure builders: a parsed :class:`~callfs_operator.spec.Cluster` → the manifests (dicts) of its children.

One module per child kind; :func:`children` lists them all in the order they should be applied (Secrets and
the ConfigMap before the pods that reference them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callfs_operator import names
from callfs_operator.builders import configmap, pdb, postgres, redis, secrets, services, statefulset
from callfs_operator.spec import Cluster


def children(
    cluster: Cluster,
    existing_secrets: Mapping[str, Mapping[str, str]],
    token: secrets.Token = secrets.new_token,
    node_replicas: int | None = None,
) -> list[dict[str, Any]]:
    """Every child manifest of ``cluster``.

    ``existing_secrets`` maps the name of each Secret the operator owns to its current plain data, so that
    generated values are kept (see :func:`.secrets.complete`); ``token`` makes new ones. ``node_replicas``
    overrides ``spec.replicas`` for the node StatefulSet (a held-back scale-down, see ``scaling``).
    """
    out = secrets.owned_secrets(cluster, existing_secrets, token)
    out.append(configmap.configmap(cluster))
    if cluster.spec.metadata.managed:
        out += [postgres.postgres_service(cluster), postgres.postgres_statefulset(cluster),
                pdb.dependency_pdb(cluster, names.POSTGRES, names.postgres(cluster))]
    if cluster.spec.locks.managed:
        out += [redis.redis_service(cluster), redis.redis_statefulset(cluster),
                pdb.dependency_pdb(cluster, names.REDIS, names.redis(cluster))]
    out += [
        services.headless_service(cluster),
        services.client_service(cluster),
        statefulset.nodes_statefulset(cluster, configmap.config_hash(cluster), node_replicas),
        pdb.pod_disruption_budget(cluster),
    ]
    return out
