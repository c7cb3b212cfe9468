"""Per-volume API keys: each volume is owned by a user of its own and opened with a key confined to its directory.

``CreateVolume`` gives volume ``<name>`` to the CallFS user :func:`volume_user` (``csi-<name>``) and registers the
key :func:`volume_key` for that user, confined to ``/volumes/<name>`` (``POST /v1/keys``); ``DeleteVolume``
revokes it (``DELETE /v1/keys/{user}``). A node staging the volume with that key reaches that directory and
nothing else (any other path answers 403), so a compromised node cannot read other volumes.

The key is derived, not stored: HMAC-SHA256 of the volume ID under the provisioning (root) key. A retried
``CreateVolume`` derives the same key (registering it again is no change), and whoever could derive it holds the
root key already. Rotating the root key therefore changes the keys of volumes provisioned afterwards only; a
volume keeps the key it was registered with until it is deleted.

How the key reaches the node is the CO's business: on Kubernetes the controller writes it into the Secret
:func:`secret_name` (``callfs-volume-<pv name>``), which the StorageClass names as the node-stage secret with
``${pv.name}`` (:mod:`callfs_csi.volume_secrets`); kubelet hands it to ``NodeStageVolume`` as ``secrets``.

Pure functions (no I/O).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from callfs.permissions import is_valid_name
from callfs_csi.errors import InvalidArgument
from callfs_csi.params import API_KEY_SECRET, CA_SECRET, SERVER_SECRET

__all__ = [
    "SECRET_PREFIX",
    "USER_PREFIX",
    "secret_data",
    "secret_name",
    "volume_key",
    "volume_user",
]

USER_PREFIX: Final = "csi-"
"""Prefix of the CallFS user that owns a volume."""
SECRET_PREFIX: Final = "callfs-volume-"  # noqa: S105 - the prefix of a Secret's name, not a secret
"""Prefix of the Kubernetes Secret holding a volume's key (the StorageClass names ``callfs-volume-${pv.name}``)."""
_MAX_USER: Final = 64
_KEY_CONTEXT: Final = b"callfs-csi volume key\0"
_DNS_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_MAX_SECRET_NAME: Final = 253


def volume_user(name: str) -> str:
    """The CallFS user that owns volume ``name``: ``csi-<name>`` when that is a valid user name of at most 64
    characters (Kubernetes' ``pvc-<uuid>`` gives 44), else ``csi-`` and the first 32 hex digits of the name's
    SHA-256 (distinct names, distinct users, barring a hash collision).

    >>> volume_user("pvc-1")
    'csi-pvc-1'
    """
    user = USER_PREFIX + name
    if len(user) <= _MAX_USER and is_valid_name(user):
        return user
    return USER_PREFIX + hashlib.sha256(name.encode()).hexdigest()[:32]


def volume_key(root_key: str, volume_id: str) -> str:
    """The API key of volume ``volume_id``: 64 hex digits, HMAC-SHA256 of the ID under ``root_key`` (the key the
    controller provisions with). The same inputs always give the same key (see the module docstring)."""
    return hmac.new(root_key.encode(), _KEY_CONTEXT + volume_id.encode(), hashlib.sha256).hexdigest()


def secret_name(name: str) -> str:
    """The Kubernetes Secret that carries volume ``name``'s key: ``callfs-volume-<name>``.

    Raises:
        InvalidArgument: the result is not a DNS-1123 subdomain (Kubernetes names its volumes ``pvc-<uuid>``,
            which always fit; another CO's names may not, and the StorageClass template could not name it).
    """
    secret = SECRET_PREFIX + name
    if len(secret) > _MAX_SECRET_NAME or not _DNS_SUBDOMAIN.match(secret):
        raise InvalidArgument(f"volume name {name!r} cannot name a Kubernetes Secret ({secret!r} is not a DNS-1123 "
                              "subdomain); per-volume key Secrets need Kubernetes volume names")
    return secret


def secret_data(server: str, key: str, ca_bundle: str | None = None) -> dict[str, str]:
    """The data of a volume's Secret: ``apiKey``, ``serverURL`` and, for a cluster with a private CA,
    ``caBundle`` (what ``NodeStageVolume`` reads from ``secrets``, :func:`callfs_csi.params.credentials`)."""
    data = {API_KEY_SECRET: key, SERVER_SECRET: server}
    if ca_bundle:
        data[CA_SECRET] = ca_bundle
    return data
