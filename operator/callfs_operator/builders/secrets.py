"""Secrets of a cluster: the root API key (unless the user brings one), the internal proxy and single-use-link
secrets, and the managed PostgreSQL/Redis credentials.

Values are generated once and then kept: :func:`complete` takes what the live Secret already holds and only
fills keys that are missing, so a reconcile never rotates a secret by accident (a new
value would invalidate outstanding links and break forwarding between nodes and access to the databases).
"""

from __future__ import annotations

import base64
import secrets as _secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from callfs_operator import names
from callfs_operator.spec import Cluster

TOKEN_BYTES = 32
"""Random bytes per generated secret (URL-safe base64: 43 characters, safe inside DSNs and YAML)."""

Token = Callable[[], str]


def new_token() -> str:
    """A fresh random secret (``TOKEN_BYTES`` bytes, URL-safe base64)."""
    return _secrets.token_urlsafe(TOKEN_BYTES)


def decode(data: Mapping[str, str] | None) -> dict[str, str]:
    """A Secret's ``data`` (base64 values) as plain strings; ``None`` → ``{}``."""
    return {k: base64.b64decode(v).decode() for k, v in (data or {}).items()}


def complete(existing: Mapping[str, str] | None, keys: Sequence[str], token: Token = new_token) -> dict[str, str]:
    """``existing`` (plain values) with every key of ``keys`` that is missing or empty filled by ``token()``.

    Keys of ``existing`` outside ``keys`` are dropped (they are not ours to keep).
    """
    have = dict(existing or {})
    return {key: have[key] if have.get(key) else token() for key in keys}


def _secret(cluster: Cluster, name: str, component: str | None, values: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": cluster.namespace, "labels": names.labels(cluster, component)},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }


def api_key_secret(
    cluster: Cluster, existing: Mapping[str, str] | None, token: Token = new_token,
    tls: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The generated ``<name>-api-key`` Secret: ``api-key`` (the ``root`` user's API key), ``serverURL`` (the
    cluster's advertised endpoint, ``status.endpoint``) and, for a TLS cluster, ``ca.crt``: the CA of its TLS
    Secret ``tls`` (its ``ca.crt``, else ``tls.crt`` of a self-signed certificate). A StorageClass that names this
    Secret so gives the CSI driver the endpoint and the CA to trust (csi/callfs_csi/params.py).

    Only built when ``spec.auth.apiKeysSecret`` is absent; raises ``ValueError`` otherwise (that Secret is the
    user's).
    """
    if cluster.spec.auth.api_keys_secret is not None:
        raise ValueError("spec.auth.apiKeysSecret names the user's Secret; the operator does not build it")
    values = complete(existing, [names.API_KEY], token) | {names.SERVER_URL: names.endpoint(cluster)}
    ca = (tls or {}).get("ca.crt") or (tls or {}).get("tls.crt") if cluster.spec.tls is not None else None
    if ca:
        values[names.CA_CRT] = ca
    return _secret(cluster, names.api_key_secret(cluster), None, values)


def internal_secret(cluster: Cluster, existing: Mapping[str, str] | None, token: Token = new_token) -> dict[str, Any]:
    """``<name>-internal``: the secret nodes sign forwarded requests with, the single-use-link secret, and the
    ``root`` user's S3 secret access key."""
    keys = [names.INTERNAL_PROXY_SECRET, names.LINK_SECRET, names.S3_ROOT_SECRET]
    values = complete(existing, keys, token)
    return _secret(cluster, names.internal_secret(cluster), None, values)


def postgres_secret(cluster: Cluster, existing: Mapping[str, str] | None, token: Token = new_token) -> dict[str, Any]:
    """``<name>-postgres``: the managed database's ``password`` and the ``dsn`` nodes connect with."""
    password = complete(existing, [names.PASSWORD], token)[names.PASSWORD]
    host = names.service_fqdn(cluster, names.postgres(cluster))
    dsn = f"postgresql://{names.POSTGRES_USER}:{password}@{host}:{names.POSTGRES_PORT}/{names.POSTGRES_DB}"
    return _secret(cluster, names.postgres(cluster), names.POSTGRES, {names.PASSWORD: password, names.DSN: dsn})


def redis_secret(cluster: Cluster, existing: Mapping[str, str] | None, token: Token = new_token) -> dict[str, Any]:
    """``<name>-redis``: the managed Redis ``password`` and its ``address`` (``host:port``)."""
    password = complete(existing, [names.PASSWORD], token)[names.PASSWORD]
    address = f"{names.service_fqdn(cluster, names.redis(cluster))}:{names.REDIS_PORT}"
    return _secret(cluster, names.redis(cluster), names.REDIS, {names.PASSWORD: password, names.ADDRESS: address})


def owned_secrets(
    cluster: Cluster, existing: Mapping[str, Mapping[str, str]], token: Token = new_token
) -> list[dict[str, Any]]:
    """Every Secret the operator owns for ``cluster``; ``existing`` maps Secret name → its current plain data (and
    holds the TLS Secret's, whose CA the API-key Secret carries)."""
    out = []
    if cluster.spec.auth.api_keys_secret is None:
        tls = existing.get(cluster.spec.tls.secret_name) if cluster.spec.tls is not None else None
        out.append(api_key_secret(cluster, existing.get(names.api_key_secret(cluster)), token, tls))
    out.append(internal_secret(cluster, existing.get(names.internal_secret(cluster)), token))
    if cluster.spec.metadata.managed:
        out.append(postgres_secret(cluster, existing.get(names.postgres(cluster)), token))
    if cluster.spec.locks.managed:
        out.append(redis_secret(cluster, existing.get(names.redis(cluster)), token))
    return out
