"""Which PersistentVolumes block the deletion of a CallFSCluster."""

from __future__ import annotations

from typing import Any

from callfs_operator.deletion import blocked_message, volumes_using


def pv(name: str, driver: str = "csi.callfs.io", attrs: dict[str, str] | None = None,
       storage_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"csi": {"driver": driver, "volumeHandle": name, "volumeAttributes": attrs or {}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


CLASSES = {"callfs-a": {"parameters": {"cluster": "ns1/a"}}, "callfs-b": {"parameters": {"cluster": "ns1/b"}},
           "plain": {}}


def test_volume_attribute_names_the_cluster() -> None:
    volumes = [pv("v1", attrs={"cluster": "ns1/a"}), pv("v2", attrs={"cluster": "ns1/b"}),
               pv("v0", attrs={"cluster": "ns1/a"})]
    assert volumes_using("ns1/a", volumes, {}) == ["v0", "v1"]


def test_storage_class_parameter_names_the_cluster() -> None:
    volumes = [pv("v1", storage_class="callfs-a"), pv("v2", storage_class="callfs-b"), pv("v3", storage_class="plain"),
               pv("v4", storage_class="deleted-class")]
    assert volumes_using("ns1/a", volumes, CLASSES) == ["v1"]


def test_volume_attribute_wins_over_the_storage_class() -> None:
    volumes = [pv("v1", attrs={"cluster": "ns1/b"}, storage_class="callfs-a")]
    assert volumes_using("ns1/a", volumes, CLASSES) == []
    assert volumes_using("ns1/b", volumes, CLASSES) == ["v1"]


def test_other_drivers_and_non_csi_volumes_never_block() -> None:
    volumes = [pv("v1", driver="other.csi.io", attrs={"cluster": "ns1/a"}),
               {"metadata": {"name": "host"}, "spec": {"hostPath": {"path": "/x"}, "storageClassName": "callfs-a"}},
               {"metadata": {"name": "bare"}, "spec": {}}]
    assert volumes_using("ns1/a", volumes, CLASSES) == []


def test_same_name_in_another_namespace_does_not_block() -> None:
    assert volumes_using("ns2/a", [pv("v1", attrs={"cluster": "ns1/a"})], {}) == []


def test_blocked_message_lists_a_few_volumes() -> None:
    message = blocked_message("ns1/a", [f"v{i}" for i in range(7)])
    assert message.startswith("deletion of ns1/a waits for 7 PersistentVolume(s) of csi.callfs.io")
    assert "(v0, v1, v2, v3, v4 and 2 more)" in message
    assert "delete those volumes first" in message
