"""``proto/pluginregistration.proto`` is, byte for byte, the kubelet's plugin registration API of the Kubernetes
release the real-node lane runs (``k8s.io/kubelet/pkg/apis/pluginregistration/v1/api.proto`` of the module
``k8s.io/kubelet`` at ``v0.<minor>.<patch>`` of hack/tools.sh's ``KUBERNETES_VERSION``), fetched through the Go
module proxy and checked against its go.sum hash. After a Kubernetes bump: copy the new file, regenerate
(proto/generate.sh) and update the pin below."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.gomod import download

REPO = Path(__file__).resolve().parents[2]
VENDORED = REPO / "proto" / "pluginregistration.proto"
UPSTREAM_MODULE = "k8s.io/kubelet"
UPSTREAM_VERSION = "v0.36.3"
UPSTREAM_SUM = "h1:dRzEnhHk35Opy6wjWR4YBcN5RI9lB2npUY37TghFuPU="
UPSTREAM_PATH = "pkg/apis/pluginregistration/v1/api.proto"


def test_pinned_module_is_the_kubernetes_release_of_the_tools() -> None:
    match = re.search(r"^KUBERNETES_VERSION=v1\.(\d+\.\d+)$", (REPO / "hack" / "tools.sh").read_text(), re.MULTILINE)
    assert match, "KUBERNETES_VERSION is not pinned in hack/tools.sh"
    assert f"v0.{match.group(1)}" == UPSTREAM_VERSION


def test_vendored_proto_is_the_upstream_file(tmp_path: Path) -> None:
    module = download(UPSTREAM_MODULE, UPSTREAM_VERSION, UPSTREAM_SUM, tmp_path)
    upstream = (module / UPSTREAM_PATH).read_bytes()
    if VENDORED.read_bytes() != upstream:
        pytest.fail(f"proto/pluginregistration.proto differs from {UPSTREAM_MODULE}@{UPSTREAM_VERSION}/{UPSTREAM_PATH}")
