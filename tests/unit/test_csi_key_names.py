"""Per-volume users, keys and Secret names (pure functions of :mod:`callfs_csi.volume_keys`)."""

from __future__ import annotations

import pytest

from callfs.permissions import is_valid_name
from callfs_csi.errors import InvalidArgument
from callfs_csi.volume_keys import secret_data, secret_name, volume_key, volume_user
from callfs_csi.volume_secrets import VOLUME_LABEL, secret_manifest

PVC = "pvc-0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"


def test_a_kubernetes_volume_user_is_csi_and_its_name() -> None:
    assert volume_user(PVC) == "csi-" + PVC


@pytest.mark.parametrize("name", ["x" * 70, "vol with spaces", "ünïcode", "a+b"])
def test_names_that_cannot_be_user_names_get_a_hashed_user(name: str) -> None:
    user = volume_user(name)
    assert is_valid_name(user) and len(user) <= 64 and user.startswith("csi-")
    assert volume_user(name + "2") != user


def test_the_key_is_stable_per_volume_and_root_key_and_differs_otherwise() -> None:
    key = volume_key("root-key-0123456789", PVC)
    assert key == volume_key("root-key-0123456789", PVC)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != volume_key("root-key-0123456789", PVC + "x")
    assert key != volume_key("another-root-key-000", PVC)
    assert "root-key" not in key


def test_secret_name_is_the_prefix_and_the_pv_name() -> None:
    assert secret_name(PVC) == "callfs-volume-" + PVC


@pytest.mark.parametrize("name", ["Upper", "under_score", "x" * 250, "ends-"])
def test_a_name_no_secret_can_have_is_invalid_argument(name: str) -> None:
    with pytest.raises(InvalidArgument):
        secret_name(name)


def test_secret_data_is_what_node_stage_reads() -> None:
    assert secret_data("https://c.ns.svc:8443", "k" * 64) == {"apiKey": "k" * 64, "serverURL": "https://c.ns.svc:8443"}


def test_secret_manifest_labels_its_volume_when_it_can() -> None:
    secret = secret_manifest("callfs-volume-" + PVC, PVC, {"apiKey": "k"})
    assert secret.metadata.labels[VOLUME_LABEL] == PVC
    assert secret.string_data == {"apiKey": "k"} and secret.type == "Opaque"
    assert VOLUME_LABEL not in secret_manifest("s", "x" * 70, {}).metadata.labels
