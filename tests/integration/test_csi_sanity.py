"""CSI conformance: ``hack/csi-sanity.sh`` (csi-sanity, full suite) against callfs-csi with real FUSE mounts.

The script is what CI runs; this test runs it on both metadata stores and reads its JUnit report: every spec
must pass, and the only skipped specs may be those csi-sanity skips for optional capabilities the driver does
not advertise (ControllerPublish, the v1.13 health and snapshot topology RPCs) — never a spec of a capability it
claims (the GroupController's specs included).
"""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from support.kube import REPO, bin_dir
from support.machine import require

SCRIPT = REPO / "hack" / "csi-sanity.sh"
RUN_TIMEOUT = 900  # seconds; the suite itself takes about ten on this machine

UNSUPPORTED_CAPABILITIES = re.compile(
    r"^(ControllerPublishVolume|Controller Publish, UnpublishVolume|ControllerUnpublishVolume|"
    r"ControllerGetVolumeHealth|ControllerListVolumeHealth|NodeGetVolumeHealth|"
    r"NodeGetStorageHealth|SNAPSHOT_ACCESSIBILITY_CONSTRAINTS) not supported$"
)
"""Skip reasons for capabilities callfs-csi does not advertise: ControllerPublish (a shared filesystem needs no
attach step) and the health and snapshot-topology RPCs of CSI v1.13 (the driver speaks v1.12).
Any other skip fails the test."""

MUST_PASS = (
    "Node Service should work",
    "Node Service should be idempotent",
    "Node Service NodeUnpublishVolume should remove target path",
    "Node Service NodeGetVolumeStats should fail when volume does not exist on the specified path",
    "Node Service NodeExpandVolume should work if node-expand is called after node-publish",
    "with single node multi writer capability should fail when volume with single node single writer access mode "
    "is already mounted at a different target path",
    "CreateVolume should fail when requesting to create a volume with already existing name and different capacity",
    "CreateVolume should not fail when creating volume with maximum-length name",
    "ListVolumes should fail when an invalid starting_token is passed",
    "ListVolumes check the presence of new volumes and absence of deleted ones in the volume list",
    "ExpandVolume [Controller Server] should work",
    "GetCapacity should return capacity (no optional values added)",
    "ModifyVolume [Controller Server] should modify a volume created with a volume attribute class",
    "ModifyVolume [Controller Server] should fail if specified mutable parameters are not supported by the volume",
    "CreateVolume should not create volume with an invalid volume attribute class",
    "CreateVolume should create volume from an existing source volume",
    "CreateVolume should fail when the volume source volume is not found",
    "CreateVolume should create volume from an existing source snapshot",
    "CreateVolume should fail when the volume source snapshot is not found",
    "ListSnapshots [Controller Server] should return next token when a limited number of entries are requested",
    "ListSnapshots [Controller Server] should return snapshots that match the specified source volume id",
    "CreateSnapshot [Controller Server] should fail when requesting to create a snapshot with already existing name "
    "and different source volume ID",
    "GetSnapshot [Controller Server] should return snapshot that match the specified snapshot id",
    "DeleteSnapshot [Controller Server] should return appropriate values (no optional values added)",
    "GroupControllerGetCapabilities should return appropriate capabilities",
    "CreateVolumeGroupSnapshot should fail when no name is provided",
    "GetVolumeGroupSnapshot should fail when no volume id is provided",
    "GetVolumeGroupSnapshot should fail when an invalid volume id is used",
    "DeleteVolumeGroupSnapshot should fail when no volume id is provided",
    "DeleteVolumeGroupSnapshot should succeed when an invalid volume id is used",
)
"""Specs that exercise what the driver claims (substrings of the JUnit test case names)."""


def _sanity_available() -> None:
    sanity = bin_dir() / "csi-sanity"
    require(sanity.exists(), f"{sanity} is not built (run `bash hack/tools.sh install csi-sanity`)")


def _cases(junit: Path) -> list[tuple[str, str, str]]:
    """``(name, outcome, message)`` of every spec: outcome ``passed``/``failed``/``skipped``."""
    cases = []
    for case in ET.parse(junit).iter("testcase"):  # noqa: S314 - our own csi-sanity run wrote it
        name = case.get("name", "")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            cases.append((name, "failed", failure.get("message", "")))
        elif skipped is not None:
            cases.append((name, "skipped", skipped.get("message", "").removeprefix("skipped - ").strip()))
        else:
            cases.append((name, "passed", ""))
    return cases


@pytest.mark.parametrize(
    "store", [pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.redis]), "sqlite"]
)
def test_csi_sanity_full_suite_passes(store: str, tmp_path: Path) -> None:
    _sanity_available()
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "CSI_SANITY_STORE": store, "CSI_SANITY_JUNIT": str(junit)}
    env.pop("CSI_SANITY_KEEP", None)
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT)
    output = proc.stdout[-6000:] + "\n" + proc.stderr[-4000:]
    assert proc.returncode == 0, f"hack/csi-sanity.sh failed ({proc.returncode}):\n{output}"

    cases = _cases(junit)
    failed = [(name, message) for name, outcome, message in cases if outcome == "failed"]
    assert not failed, failed
    passed = [name for name, outcome, _ in cases if outcome == "passed"]
    unexpected_skips = [
        (name, message) for name, outcome, message in cases
        if outcome == "skipped" and message != "pending" and not UNSUPPORTED_CAPABILITIES.match(message)
    ]
    assert not unexpected_skips, unexpected_skips
    for spec in MUST_PASS:
        assert any(spec in name for name in passed), f"{spec!r} did not pass; passed: {passed}"
    assert len(passed) >= 45, f"only {len(passed)} specs passed"
