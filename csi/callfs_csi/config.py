"""The driver's start-up settings, shared by its services (``callfs-csi`` command-line options)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from importlib import metadata
from typing import Final

from callfs_csi.params import Credentials

__all__ = ["DRIVER_NAME", "DriverConfig", "Mode", "driver_version"]

DRIVER_NAME: Final = "csi.callfs.io"


class Mode(enum.StrEnum):
    """Which services one ``callfs-csi`` process serves (Identity always)."""

    CONTROLLER = "controller"
    NODE = "node"
    ALL = "all"

    @property
    def controller(self) -> bool:
        return self in (Mode.CONTROLLER, Mode.ALL)

    @property
    def node(self) -> bool:
        return self in (Mode.NODE, Mode.ALL)


def driver_version() -> str:
    """The installed ``callfs`` distribution's version (the plugin's ``vendor_version``)."""
    try:
        return metadata.version("callfs")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """Settings of one plugin process.

    ``default`` is the cluster used when a request names none (and its key, which must be a ``root`` key for the
    controller: quotas are root-only); ``None`` makes StorageClass parameters/secrets mandatory (and
    ``ListVolumes``/``GetCapacity``, which carry no secrets, unavailable). ``state_dir`` holds the node state;
    ``max_volumes_per_node`` 0 means no limit. ``default_capacity`` is in bytes.
    """

    node_id: str
    mode: Mode
    state_dir: str
    default: Credentials | None = None
    name: str = DRIVER_NAME
    default_capacity: int = 1 << 30
    max_volumes_per_node: int = 0
    request_timeout: float = 30.0
    """Seconds a CallFS request may take (connect and between reads) before the RPC fails ``UNAVAILABLE``."""
    repair_interval: float = 30.0
    """Seconds between two checks of the node's mounts for stale ones (0: only the pass at start-up)."""
    volume_secret_namespace: str | None = None
    """Kubernetes namespace where the controller writes each volume's key Secret (``None``: it writes none)."""
